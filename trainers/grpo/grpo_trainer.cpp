// The GRPO step (grpo_trainer.h has the outline, common/policy_loss.h the loss and its
// normalisation, common/policy_gradient.h the row layout).
#include "trainers/grpo/grpo_trainer.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <limits>

#include "common/error.h"
#include "common/log.h"
#include "kernels/ops.h"
#include "model/lora.h"
#include "model/transformer.h"
#include "rollout/engine.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "train/metrics.h"
#include "trainers/common/evaluation.h"
#include "trainers/common/policy_loss.h"

namespace scorch::trainers {

void validate_grpo_config(const Config& c, int64_t context_length) {
  const auto& g = c.grpo;
  if (g.num_generations < 2) {
    throw UserError("grpo.num_generations = " + std::to_string(g.num_generations) +
                    ": group advantages need at least 2 completions per prompt; set it to 2 or more (TRL: 8)");
  }
  if (c.rewards.empty()) throw UserError("GRPO needs at least one reward: add a `rewards:` list (e.g. - name: math_answer)");
  if (c.generation.max_prompt_length + c.generation.max_completion_length > context_length) {
    throw UserError("generation.max_prompt_length + generation.max_completion_length = " +
                    std::to_string(c.generation.max_prompt_length + c.generation.max_completion_length) +
                    " exceeds the model's context length " + std::to_string(context_length) + "; lower one of them");
  }
  if (!(g.top_entropy_quantile > 0.0 && g.top_entropy_quantile <= 1.0)) {
    throw UserError("grpo.top_entropy_quantile must be in (0, 1] (1 = train on every token)");
  }
  if (g.num_iterations < 1) throw UserError("grpo.num_iterations must be >= 1");
  if (g.importance_sampling_level == ImportanceSamplingLevel::kSequence && g.loss_type != GrpoLossType::kGrpo) {
    log::warn("grpo.importance_sampling_level = sequence (GSPO) is meant for loss_type grpo; running with ",
              option_name(g.loss_type));
  }
}

GrpoTask::GrpoTask(const Config& config, ModelSession& session, std::vector<data::PromptRecord> train,
                   std::vector<data::PromptRecord> eval_prompts, std::string run_dir)
    : RlTask(config, session, std::move(train), std::move(eval_prompts), std::move(run_dir), "GRPO") {
  if (config.grpo.beta > 0) make_reference();
}

void GrpoTask::generate_batch(int64_t step, StepMetrics& m) {
  const int64_t G = config_.grpo.num_generations;
  const int64_t mbs = config_.train.micro_batch_size;
  const Tokenizer& tok = *session_.tokenizer;

  const StepPrompts drawn = draw_step_prompts();
  const auto& records = drawn.records;
  const auto& prompts = drawn.ids;
  const int64_t cut_prompts = drawn.truncated;

  // 1. Rollouts.
  Stopwatch clock;
  const SamplingParams sp = rollout_params(config_, *session_.renderer, step, G);
  std::vector<Sample> samples;
  GenerationStats gen_stats;
  {
    at::NoGradGuard no_grad;
    GenerationEngine engine(*session_.model, &tok, rollout_engine_options(config_));
    samples = engine.generate(prompts, sp);
    gen_stats = engine.last_stats();
  }
  if (session_.model->has_lora()) m["rollout/adapter_checksum"] = adapter_checksum(*session_.model);
  const double gen_seconds = clock.seconds();

  // 2. Rewards.
  clock.restart();
  rewards::RewardBatch rb;
  for (const Sample& s : samples) {
    const auto p = static_cast<size_t>(s.prompt_index);
    rewards::RewardSample r = reward_sample(*records[p], prompts[p], s.prompt_index, step);
    r.completion = tok.decode(s.completion_ids);
    r.completion_ids = s.completion_ids;
    r.truncated = s.finish_reason == FinishReason::kLength;
    rb.samples.push_back(std::move(r));
  }
  rb.index_groups();
  const rewards::RewardSetOutput scored = rewards_.score(rb);
  const double reward_seconds = clock.seconds();

  // 3. Advantages: group-relative, then the rewards' offsets (RESTRAIN).
  const int64_t N = static_cast<int64_t>(samples.size());
  const at::Tensor totals = at::tensor(scored.total, at::kDouble).to(at::kFloat);  // [N]
  auto [adv, group_mean, group_std, zero_std] =
      group_advantages(totals, G, option_name(config_.grpo.advantage), 1e-4, option_name(config_.grpo.scale_rewards));
  if (!scored.advantage_offsets.empty()) adv = adv + at::tensor(scored.advantage_offsets, at::kDouble).to(at::kFloat);
  adv = adv.contiguous();

  // 4. Micro-batches of mbs prompts × G rows.
  const int64_t rows = mbs * G;
  const float* adv_data = adv.data_ptr<float>();  // [N], CPU
  batches_.clear();
  for (int64_t r0 = 0; r0 < N; r0 += rows) {
    std::vector<PolicyRow> packed;
    for (int64_t r = r0; r < std::min(N, r0 + rows); ++r) {
      const Sample& s = samples[static_cast<size_t>(r)];
      const bool drop = config_.grpo.mask_truncated_completions && s.finish_reason == FinishReason::kLength;
      PolicyRow row;
      row.prompt = &prompts[static_cast<size_t>(s.prompt_index)];
      row.completion = s.completion_ids;
      row.train.assign(s.completion_ids.size(), drop ? 0 : 1);
      row.logprobs = s.logprobs;
      row.advantages = {adv_data[r]};
      packed.push_back(std::move(row));
    }
    PolicyBatch b = pack_policy_batch(packed, pad_id_, session_.device);
    b.units = policy_loss_units(b.completion_mask, config_.grpo.loss_type);
    {
      at::NoGradGuard no_grad;
      if (config_.grpo.num_iterations > 1) b.old_logp = completion_logprobs(*session_.model, b, temperature_, false).first;
      if (reference_) b.ref_logp = completion_logprobs(*reference_, b, temperature_, false).first;
    }
    batches_.push_back(std::move(b));
  }
  batch_step_ = step;

  // 5. Metrics (TRL's names where TRL has them).
  for (const auto& [k, v] : scored.metrics) m[k] = v;
  add_padding_metrics(batches_, m);
  m["reward_std"] = group_std.to(at::kDouble).nanmean().item<double>();
  m["frac_reward_zero_std"] = zero_std.to(at::kDouble).mean().item<double>();
  CompletionLengths lengths;
  for (const Sample& s : samples) {
    lengths.add(static_cast<double>(s.completion_ids.size()), s.finish_reason == FinishReason::kLength);
  }
  m["completions/mean_length"] = lengths.mean();
  m["completions/min_length"] = N > 0 ? lengths.min : 0.0;
  m["completions/max_length"] = lengths.max;
  m["completions/clipped_ratio"] = lengths.truncated / std::max(1.0, lengths.count);  // truncation rate
  if (lengths.count > lengths.truncated) {
    m["completions/mean_terminated_length"] = lengths.terminated_sum / (lengths.count - lengths.truncated);
  }
  const at::Tensor a64 = adv.to(at::kDouble);
  m["advantages/mean"] = a64.mean().item<double>();
  m["advantages/std"] = N > 1 ? a64.std().item<double>() : 0.0;
  m["advantages/abs_mean"] = a64.abs().mean().item<double>();
  m["advantages/min"] = a64.min().item<double>();
  m["advantages/max"] = a64.max().item<double>();
  if (cut_prompts) m["prompts/truncated"] = static_cast<double>(cut_prompts);
  m["time/generation"] = gen_seconds;
  m["time/reward"] = reward_seconds;
  m["tokens_per_second/generation"] = static_cast<double>(gen_stats.generated_tokens) / std::max(1e-9, gen_seconds);

  // log.samples decoded rollouts (the first prompts' groups) on log steps.
  if (logs_samples(step)) {
    for (int64_t i = 0; i < std::min<int64_t>(N, config_.log.samples); ++i) {
      const auto& s = samples[static_cast<size_t>(i)];
      const auto& r = rb.samples[static_cast<size_t>(i)];
      nlohmann::json j = {{"prompt", r.prompt}, {"completion", r.completion},
                          {"reward", scored.total[static_cast<size_t>(i)]},
                          {"advantage", adv[i].item<double>()}, {"finish_reason", finish_reason_name(s.finish_reason)},
                          {"length", s.completion_ids.size()}};
      const std::string gold = rb.gold(static_cast<size_t>(i));
      if (!gold.empty()) j["answer"] = gold;
      log_sample(step, j);
    }
  }
}

std::vector<int64_t> GrpoTask::prepare_step(int64_t step, StepMetrics& m) {
  const int64_t mu = config_.grpo.num_iterations;
  const bool cycle_start = (step - 1) % mu == 0;
  if (cycle_start || batches_.empty()) {
    if (!cycle_start) {
      log::warn("GRPO resumed in the middle of a num_iterations cycle: step ", step,
                " regenerates its batch from the current policy (not bitwise identical to an uninterrupted run)");
    }
    const StepMetrics before = m;
    generate_batch(step, m);
    // What generation added describes the batch; steps that reuse it (μ > 1) log it again, as
    // TRL does, so a log step always shows the rewards being trained on. Timings are not repeated.
    batch_metrics_.clear();
    for (const auto& [key, value] : m) {
      if (!before.count(key) && key.rfind("time/", 0) != 0 && key.rfind("tokens_per_second/", 0) != 0) {
        batch_metrics_[key] = value;
      }
    }
  } else {
    for (const auto& [key, value] : batch_metrics_) m.emplace(key, value);
  }
  current_step_ = step;
  std::vector<int64_t> units;
  for (const auto& b : batches_) units.push_back(b.units);
  return units;
}

double GrpoTask::forward_backward(size_t index, double denominator, StepMetrics& m) {
  Stopwatch clock;
  // The engine's log-probs describe the policy only before its first update on this batch (μ > 1 reuses it).
  const double numerator = policy_gradient_step(*session_.model, batches_[index], temperature_, policy_loss_options(config_),
                                                denominator, batches_.size(), batch_step_ == current_step_, m).first;
  m["time/training"] += clock.seconds();
  return numerator;
}

// micro_batch_size prompts × G completions, each row at most prompt + completion tokens long.
MicroBatchShape GrpoTask::largest_micro_batch() const {
  MicroBatchShape shape;
  shape.rows = config_.train.micro_batch_size * config_.grpo.num_generations;
  shape.tokens = config_.generation.max_prompt_length + config_.generation.max_completion_length;
  shape.length_setting = "generation.max_prompt_length / max_completion_length (now " +
                         std::to_string(config_.generation.max_prompt_length) + " / " +
                         std::to_string(config_.generation.max_completion_length) + ")";
  return shape;
}

void GrpoTask::evaluate(int64_t, StepMetrics& m) {
  add_eval_metrics(config_, *session_.model, *session_.renderer, eval_prompts_, m);
}

void run_grpo(const Config& config, const RunDir& run_dir, const RunOptions& options) {
  rewards::validate_reward_specs(config.rewards);  // before the (slow) model load
  ModelSession session = open_model_session(config);
  validate_grpo_config(config, session.model->config().max_position_embeddings);
  data::DatasetOptions dataset_options;
  dataset_options.skip_malformed = config.data.skip_malformed;
  auto train = data::load_prompt_dataset(config.data.train, dataset_options).records;
  std::vector<data::PromptRecord> eval_prompts = load_eval_prompts(config);
  log::info("GRPO: ", train.size(), " prompts, G = ", config.grpo.num_generations, ", loss_type ",
            option_name(config.grpo.loss_type), ", beta ", config.grpo.beta, ", ", eval_prompts.size(), " eval prompts");
  GrpoTask task(config, session, std::move(train), std::move(eval_prompts), run_dir.path);
  run_training(config, run_dir, session, task, options.resume_from);
}

}  // namespace scorch::trainers

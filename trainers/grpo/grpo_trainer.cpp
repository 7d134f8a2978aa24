// The GRPO step (grpo_trainer.h has the outline; grpo_loss.h the loss and its normalisation).
// Sequences are laid out per row as prompt ‖ completion ‖ pad (right padding), so the causal mask
// of a plain forward is exact and positions are 0..len−1 as in the rollout; only the hidden states
// that predict completion tokens go through the LM head.
#include "trainers/grpo/grpo_trainer.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "common/error.h"
#include "common/log.h"
#include "dist/dist.h"
#include "kernels/ops.h"
#include "model/lora.h"
#include "model/transformer.h"
#include "rewards/model_judge.h"
#include "rollout/engine.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "train/evaluation.h"
#include "trainers/common/rl_step.h"
#include "trainers/grpo/grpo_loss.h"

namespace scorch::trainers {

GrpoMicroBatch pack_micro_batch(const std::vector<PolicyRow>& rows, int64_t pad_id, c10::Device device) {
  const int64_t B = static_cast<int64_t>(rows.size());
  int64_t S = 1, C = 1;
  bool per_token = false;
  for (const PolicyRow& r : rows) {
    const int64_t P = static_cast<int64_t>(r.prompt->size()), L = static_cast<int64_t>(r.completion.size());
    S = std::max(S, P + L), C = std::max(C, L);
    per_token |= r.advantages.size() != 1;
  }
  std::vector<int64_t> ids(static_cast<size_t>(B * S), pad_id), plen(static_cast<size_t>(B)),
      cids(static_cast<size_t>(B * C), -100);
  std::vector<uint8_t> mask(static_cast<size_t>(B * C), 0);
  std::vector<float> rlp(static_cast<size_t>(B * C), 0.0f), adv(static_cast<size_t>(per_token ? B * C : B), 0.0f),
      kl(static_cast<size_t>(B * C), 0.0f);
  bool any_kl = false;
  for (int64_t i = 0; i < B; ++i) {
    const PolicyRow& r = rows[static_cast<size_t>(i)];
    const auto& p = *r.prompt;
    const size_t L = r.completion.size();
    auto check_size = [&](size_t n, bool may_be_empty, const char* what) {
      if (n != L && !(may_be_empty && n == 0)) throw std::invalid_argument(std::string("pack_micro_batch: ") + what + " size");
    };
    check_size(r.generated.size(), true, "generated");
    check_size(r.train.size(), true, "train");
    check_size(r.logprobs.size(), false, "logprobs");
    check_size(r.kl_coef.size(), true, "kl_coef");
    if (r.advantages.size() != 1) check_size(r.advantages.size(), false, "advantages");
    std::copy(p.begin(), p.end(), ids.begin() + i * S);
    std::copy(r.completion.begin(), r.completion.end(), ids.begin() + i * S + static_cast<int64_t>(p.size()));
    plen[static_cast<size_t>(i)] = static_cast<int64_t>(p.size());
    any_kl |= !r.kl_coef.empty();
    if (!per_token) adv[static_cast<size_t>(i)] = r.advantages[0];
    for (size_t j = 0; j < L; ++j) {
      const size_t at = static_cast<size_t>(i * C) + j;
      const bool generated = r.generated.empty() || r.generated[j];
      if (generated) cids[at] = r.completion[j];
      mask[at] = generated && (r.train.empty() || r.train[j]);
      rlp[at] = r.logprobs[j];
      if (per_token) adv[at] = r.advantages.size() == 1 ? r.advantages[0] : r.advantages[j];
      if (!r.kl_coef.empty()) kl[at] = r.kl_coef[j];
    }
  }
  GrpoMicroBatch b;
  auto lng = at::TensorOptions().dtype(at::kLong);
  b.input_ids = at::from_blob(ids.data(), {B, S}, lng).clone().to(device);
  b.prompt_lengths = at::from_blob(plen.data(), {B}, lng).clone().to(device);
  b.completion_ids = at::from_blob(cids.data(), {B, C}, lng).clone().to(device);
  b.completion_mask = at::from_blob(mask.data(), {B, C}, at::kByte).clone().to(device).to(at::kBool);
  b.rollout_logp = at::from_blob(rlp.data(), {B, C}, at::kFloat).clone().to(device);
  b.advantages = (per_token ? at::from_blob(adv.data(), {B, C}, at::kFloat) : at::from_blob(adv.data(), {B}, at::kFloat))
                     .clone()
                     .to(device);
  if (any_kl) b.kl_coef = at::from_blob(kl.data(), {B, C}, at::kFloat).clone().to(device);
  return b;
}

std::pair<at::Tensor, at::Tensor> completion_logprobs(const Transformer& model, const GrpoMicroBatch& b,
                                                      double temperature, bool with_entropy) {
  const int64_t B = b.input_ids.size(0), S = b.input_ids.size(1), C = b.completion_ids.size(1);
  const auto long_opts = at::TensorOptions().dtype(at::kLong).device(b.input_ids.device());
  const at::Tensor positions = at::arange(S, long_opts).unsqueeze(0).expand({B, S});
  const at::Tensor hidden = model.forward(b.input_ids, positions);                      // [B, S, H]
  // Completion token j of row b is predicted by the hidden state at P_b − 1 + j.
  const at::Tensor where = (b.prompt_lengths.unsqueeze(1) - 1 + at::arange(C, long_opts).unsqueeze(0))
                               .clamp_max(S - 1);                                       // [B, C]
  const at::Tensor h = hidden.gather(1, where.unsqueeze(-1).expand({B, C, hidden.size(-1)}));  // [B, C, H]
  return model.token_logprobs(h, b.completion_ids, temperature, with_entropy);         // [B, C] each
}

GrpoLossOptions grpo_loss_options(const Config& c) {
  const auto& g = c.grpo;
  GrpoLossOptions o;
  o.loss_type = g.loss_type;
  o.epsilon_low = g.epsilon;
  o.epsilon_high = g.epsilon_high > 0 ? g.epsilon_high : g.epsilon;
  o.delta = g.delta;
  o.beta = g.beta;
  o.importance_sampling_level = g.importance_sampling_level;
  o.top_entropy_quantile = g.top_entropy_quantile;
  o.entropy_coef = g.entropy_coef;
  o.max_completion_length = c.generation.max_completion_length;
  return o;
}

std::pair<double, at::Tensor> policy_gradient_step(const Transformer& model, const GrpoMicroBatch& b, double temperature,
                                                   const GrpoLossOptions& options, double denominator,
                                                   size_t num_batches, bool compare_rollout, StepMetrics& m) {
  auto [logp, entropy] = completion_logprobs(model, b, temperature, true);
  GrpoLossInputs in;
  in.logp = logp;
  in.old_logp = b.old_logp;
  in.ref_logp = b.ref_logp;
  in.kl_coef = b.kl_coef;
  in.entropy = options.entropy_coef != 0.0 ? entropy : entropy.detach();
  in.advantages = b.advantages;
  in.mask = b.completion_mask;
  GrpoLossOutput out = grpo_loss(in, options, denominator);
  out.loss.backward();

  // Means over the step's micro-batches (each micro-batch's value is TRL's masked batch mean).
  const double n = static_cast<double>(num_batches);
  for (const auto& [k, v] : out.metrics) m[k] += v / n;
  if (compare_rollout) {
    // Rollout vs policy log-probs on the same tokens: kernels, precision and sampler must agree.
    at::NoGradGuard no_grad;
    const at::Tensor valid = b.completion_ids.ge(0);
    const at::Tensor d = (logp.detach() - b.rollout_logp).abs().masked_select(valid).to(at::kDouble);
    if (d.numel() > 0) {
      m["rollout/logprob_diff_mean"] += d.mean().item<double>() / n;
      m["rollout/logprob_diff_max"] = std::max(m["rollout/logprob_diff_max"], d.max().item<double>());
    }
  }
  return {out.numerator.item<double>(), logp.detach()};
}

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
  auto one_of = [](const std::string& key, const std::string& v, std::initializer_list<const char*> ok) {
    for (const char* o : ok) if (v == o) return;
    std::string list;
    for (const char* o : ok) list += (list.empty() ? "" : " | ") + std::string(o);
    throw UserError(key + " = '" + v + "' is not one of " + list);
  };
  one_of("grpo.loss_type", g.loss_type, {"grpo", "bnpo", "dr_grpo", "dapo"});
  one_of("grpo.scale_rewards", g.scale_rewards, {"group", "batch", "none"});
  one_of("grpo.advantage", g.advantage, {"grpo", "rloo", "reinforce_pp"});
  one_of("grpo.importance_sampling_level", g.importance_sampling_level, {"token", "sequence"});
  if (!(g.top_entropy_quantile > 0.0 && g.top_entropy_quantile <= 1.0)) {
    throw UserError("grpo.top_entropy_quantile must be in (0, 1] (1 = train on every token)");
  }
  if (g.num_iterations < 1) throw UserError("grpo.num_iterations must be >= 1");
  if (g.importance_sampling_level == "sequence" && g.loss_type != "grpo") {
    log::warn("grpo.importance_sampling_level = sequence (GSPO) is meant for loss_type grpo; running with ",
              g.loss_type);
  }
}

GrpoTask::GrpoTask(const Config& config, ModelSession& session, std::vector<data::PromptRecord> train,
                   std::vector<data::PromptRecord> eval_prompts, std::string run_dir)
    : config_(config),
      session_(session),
      train_(std::move(train)),
      eval_prompts_(std::move(eval_prompts)),
      run_dir_(std::move(run_dir)),
      // Prompts are sharded by rank (a prompt's whole group stays on its rank: data/cursor.h).
      cursor_(static_cast<int64_t>(train_.size()), config.seed, config.data.shuffle, dist::rank(), dist::world_size()),
      // Self-judging rewards (self_verify, self_rubric) are judged by the policy itself.
      rewards_(config.rewards, rewards::RewardContext{std::make_shared<rewards::ModelJudge>(*session.model, *session.renderer)},
               "config") {
  if (train_.empty()) throw UserError("data.train holds no prompts: GRPO needs a prompt dataset");
  pad_id_ = session.pad_id();
  const int64_t per_step = config.train.micro_batch_size * config.train.gradient_accumulation_steps;
  steps_per_epoch_ = std::max<int64_t>(1, cursor_.samples_per_epoch() / per_step);
  total_ = config.train.max_steps > 0 ? config.train.max_steps : steps_per_epoch_ * config.train.epochs;
  temperature_ = config.generation.temperature > 0 ? config.generation.temperature : 1.0;
  if (config.grpo.beta > 0) {
    // The frozen reference: the policy as it is now, or with LoRA the base with the adapter disabled
    // (model/lora.h; on resume the loop loads the checkpoint into the policy after this, so the
    // reference stays the initial model).
    reference_ = std::make_unique<Transformer>(frozen_reference(*session.model));
  }
}

GrpoTask::~GrpoTask() = default;

void GrpoTask::generate_batch(int64_t step, StepMetrics& m) {
  const int64_t G = config_.grpo.num_generations;
  const int64_t mbs = config_.train.micro_batch_size;
  const int64_t n_prompts = mbs * config_.train.gradient_accumulation_steps;
  const Tokenizer& tok = *session_.tokenizer;

  const StepPrompts drawn = draw_prompts(cursor_, train_, *session_.renderer, n_prompts, config_.generation.max_prompt_length);
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
      group_advantages(totals, G, config_.grpo.advantage, 1e-4, config_.grpo.scale_rewards);
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
    GrpoMicroBatch b = pack_micro_batch(packed, pad_id_, session_.device);
    b.units = grpo_loss_units(b.completion_mask, config_.grpo.loss_type);
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
  m["reward_std"] = group_std.to(at::kDouble).nanmean().item<double>();
  m["frac_reward_zero_std"] = zero_std.to(at::kDouble).mean().item<double>();
  double len_sum = 0, len_min = std::numeric_limits<double>::infinity(), len_max = 0, truncated = 0, term_sum = 0;
  for (const Sample& s : samples) {
    const double L = static_cast<double>(s.completion_ids.size());
    len_sum += L, len_min = std::min(len_min, L), len_max = std::max(len_max, L);
    if (s.finish_reason == FinishReason::kLength) ++truncated; else term_sum += L;
  }
  const double n = static_cast<double>(std::max<int64_t>(1, N));
  m["completions/mean_length"] = len_sum / n;
  m["completions/min_length"] = N > 0 ? len_min : 0.0;
  m["completions/max_length"] = len_max;
  m["completions/clipped_ratio"] = truncated / n;  // truncation rate
  if (N > truncated) m["completions/mean_terminated_length"] = term_sum / (static_cast<double>(N) - truncated);
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
  if (!samples_) samples_ = std::make_unique<SamplesLogger>(run_dir_, dist::rank(), step - 1);  // rank 0 writes
  if (config_.log.samples > 0 && (step == 1 || step % std::max<int64_t>(1, config_.log.every) == 0)) {
    for (int64_t i = 0; i < std::min<int64_t>(N, config_.log.samples); ++i) {
      const auto& s = samples[static_cast<size_t>(i)];
      const auto& r = rb.samples[static_cast<size_t>(i)];
      nlohmann::json j = {{"prompt", r.prompt}, {"completion", r.completion},
                          {"reward", scored.total[static_cast<size_t>(i)]},
                          {"advantage", adv[i].item<double>()}, {"finish_reason", finish_reason_name(s.finish_reason)},
                          {"length", s.completion_ids.size()}};
      const std::string gold = rb.gold(static_cast<size_t>(i));
      if (!gold.empty()) j["answer"] = gold;
      // Completions may end inside a multi-byte character (or be any bytes): replace invalid UTF-8.
      samples_->log(step, nlohmann::json::parse(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)));
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
  const double numerator = policy_gradient_step(*session_.model, batches_[index], temperature_, grpo_loss_options(config_),
                                                denominator, batches_.size(), batch_step_ == current_step_, m).first;
  m["time/training"] += clock.seconds();
  return numerator;
}

double GrpoTask::epoch() const {
  return cursor_.epoch() + static_cast<double>(cursor_.index()) / std::max<int64_t>(1, cursor_.samples_per_epoch());
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
            config.grpo.loss_type, ", beta ", config.grpo.beta, ", ", eval_prompts.size(), " eval prompts");
  GrpoTask task(config, session, std::move(train), std::move(eval_prompts), run_dir.path);
  run_training(config, run_dir, session, task, options.resume_from);
}

}  // namespace scorch::trainers

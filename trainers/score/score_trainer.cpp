// The SCoRe step (score_trainer.h has the outline, score_rewards.h the per-turn returns, policy_loss.h
// the loss). Each episode is one row: prompt ‖ turn 1 ‖ continuation ‖ turn 2, exactly the tokens
// run_episodes produced (never re-tokenized); only the tokens the turns generated train.
#include "trainers/score/score_trainer.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <cmath>

#include "common/error.h"
#include "common/log.h"
#include "common/strings.h"
#include "model/lora.h"
#include "model/transformer.h"
#include "rollout/engine.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "train/metrics.h"
#include "trainers/common/evaluation.h"
#include "trainers/common/policy_loss.h"
#include "trainers/score/score_rewards.h"

namespace scorch::trainers {

void validate_score_config(const Config& c, int64_t context_length, int64_t continuation_tokens) {
  const auto& s = c.score;
  if (s.num_attempts != 2) {
    throw NotImplemented("score.num_attempts = " + std::to_string(s.num_attempts) +
                         " (more than 2 attempts, CoCoS's accumulated reward; use 2)");
  }
  if (c.rewards.empty()) throw UserError("SCoRe needs a reward for each attempt: add a `rewards:` list (e.g. - name: math_answer)");
  if (s.policy_gradient == ScorePolicyGradient::kGroup && s.num_generations < 2) {
    throw UserError("score.policy_gradient = group needs score.num_generations >= 2 (samples per prompt for the "
                    "group baseline); set it to 2 or more, or use policy_gradient: reinforce");
  }
  const int64_t s1 = s.stage == ScoreStage::kStage2 ? 0 : s.stage1_steps, s2 = s.stage == ScoreStage::kStage1 ? 0 : s.stage2_steps;
  if (s1 + s2 <= 0) throw UserError("score: the selected stages have 0 steps; set score.stage1_steps / score.stage2_steps");
  if (c.train.max_steps > 0 && c.train.max_steps != s1 + s2) {
    throw UserError("train.max_steps = " + std::to_string(c.train.max_steps) + " but SCoRe runs score.stage1_steps + "
                    "score.stage2_steps = " + std::to_string(s1 + s2) + " steps for score.stage = " + option_name(s.stage) +
                    "; remove train.max_steps (the stage step counts set the length)");
  }
  const int64_t need = c.generation.max_prompt_length + 2 * c.generation.max_completion_length + continuation_tokens;
  if (need > context_length) {
    throw UserError("generation.max_prompt_length + 2 × max_completion_length + the correction turn (" +
                    std::to_string(continuation_tokens) + " tokens) = " + std::to_string(need) +
                    " exceeds the model's context length " + std::to_string(context_length) +
                    "; lower max_prompt_length or max_completion_length, or shorten score.correction_instruction");
  }
  if (c.grpo.num_iterations != 1) {
    throw NotImplemented("SCoRe with grpo.num_iterations > 1 (one update per batch; use 1)");
  }
}

ScoreTask::ScoreTask(const Config& config, ModelSession& session, std::vector<data::PromptRecord> train,
                     std::vector<data::PromptRecord> eval_prompts, std::string run_dir)
    // Prompts sharded by rank (a prompt's episodes stay on its rank: data/cursor.h).
    : RlTask(config, session, std::move(train), std::move(eval_prompts), std::move(run_dir), "SCoRe") {
  const auto& s = config.score;
  first_stage_ = s.stage == ScoreStage::kStage2 ? 2 : 1;
  stage1_steps_ = s.stage == ScoreStage::kStage2 ? 0 : s.stage1_steps;
  total_ = stage1_steps_ + (s.stage == ScoreStage::kStage1 ? 0 : s.stage2_steps);
  // The KL reference: score.reference_model, else the starting policy (with LoRA the base with the
  // adapter disabled).
  if (s.beta1 > 0 || s.beta2 > 0) make_reference(s.reference_model);
}

int ScoreTask::stage_of(int64_t step) const {
  if (first_stage_ == 2) return 2;
  return step <= stage1_steps_ ? 1 : 2;
}

bool ScoreTask::checkpoint_after(int64_t step) const {
  return first_stage_ == 1 && step == stage1_steps_ && step < total_;  // the Stage I → II boundary
}

nlohmann::json ScoreTask::data_cursor() const {
  return {{"cursor", cursor_.to_json()}, {"stage", option_name(config_.score.stage)}, {"stage1_steps", stage1_steps_}};
}

void ScoreTask::restore_data_cursor(const nlohmann::json& j) {
  if (!j.is_object() || !j.contains("cursor")) throw UserError("the checkpoint was not written by the SCoRe trainer");
  if (j.value("stage", std::string()) != option_name(config_.score.stage) || j.value("stage1_steps", int64_t{-1}) != stage1_steps_) {
    throw UserError("the checkpoint was written with score.stage = " + j.value("stage", std::string("?")) +
                    " and " + std::to_string(j.value("stage1_steps", int64_t{-1})) + " Stage I steps, the config says " +
                    option_name(config_.score.stage) + " and " + std::to_string(stage1_steps_) +
                    "; resume with the same score settings or start a new run_dir");
  }
  cursor_.restore(j["cursor"]);
}

std::vector<int64_t> ScoreTask::prepare_step(int64_t step, StepMetrics& m) {
  const auto& sc = config_.score;
  const int stage = stage_of(step);
  if (step == stage1_steps_ + 1 && first_stage_ == 1 && stage == 2) log::info("SCoRe: Stage II from step ", step);
  const int64_t G = sc.num_generations;
  const int64_t mbs = config_.train.micro_batch_size;
  const Tokenizer& tok = *session_.tokenizer;

  const StepPrompts drawn = draw_step_prompts();
  const auto& records = drawn.records;
  const auto& prompts = drawn.ids;

  // 1. Episodes: attempt 1, the correction instruction, attempt 2.
  Stopwatch clock;
  const SamplingParams sp = rollout_params(config_, *session_.renderer, step, G);
  const std::string instruction = sc.correction_instruction;
  Environment env = [&](const FinishedTurn&) { return EnvironmentReply::user(instruction); };
  EpisodeOptions eo;
  eo.max_turns = sc.num_attempts;
  {
    at::NoGradGuard no_grad;
    GenerationEngine engine(*session_.model, &tok, rollout_engine_options(config_));
    episodes_ = run_episodes(engine, *session_.renderer, prompts, sp, env, eo);
  }
  if (session_.model->has_lora()) m["rollout/adapter_checksum"] = adapter_checksum(*session_.model);
  const double gen_seconds = clock.seconds();

  // 2. A reward for each attempt (turns that never ran — no room left in the context — score "").
  clock.restart();
  const int64_t N = static_cast<int64_t>(episodes_.size());
  std::vector<at::Tensor> turn_rewards;
  for (int64_t t = 0; t < 2; ++t) {
    rewards::RewardBatch rb;
    for (const Episode& e : episodes_) {
      const auto p = static_cast<size_t>(e.prompt_index);
      rewards::RewardSample r = reward_sample(*records[p], prompts[p], e.prompt_index, step);
      if (t < static_cast<int64_t>(e.turns.size())) {
        const EpisodeTurn& turn = e.turns[static_cast<size_t>(t)];
        r.completion = turn.text;
        r.completion_ids.assign(e.tokens.begin() + turn.begin, e.tokens.begin() + turn.end);
        r.truncated = turn.finish_reason == FinishReason::kLength;
      }
      r.turn = t;
      rb.samples.push_back(std::move(r));
    }
    rb.index_groups();
    const rewards::RewardSetOutput scored = rewards_.score(rb);
    for (const auto& [k, v] : scored.metrics) m["turn" + std::to_string(t + 1) + "/" + k] = v;
    turn_rewards.push_back(at::nan_to_num(at::tensor(scored.total, at::kDouble), 0.0));  // unscorable: 0
  }
  const double reward_seconds = clock.seconds();

  // 3. Per-turn returns and advantages, per-turn KL coefficients.
  const at::Tensor returns = score_turn_returns(turn_rewards[0], turn_rewards[1], stage, sc.alpha);  // [N, 2]
  const at::Tensor advantages =
      score_turn_advantages(returns, sc.policy_gradient, G, config_.grpo.advantage, config_.grpo.scale_rewards);
  const auto [kl1, kl2] = score_turn_kl(stage, sc.beta1, sc.beta2);
  const at::Tensor kl_per_turn = at::tensor({static_cast<float>(kl1), static_cast<float>(kl2)}).unsqueeze(0);  // [1, 2]

  // 4. Micro-batches of mbs prompts × G episodes; each conversation is one row.
  const int64_t rows = mbs * G;
  batches_.clear();
  turns_.clear();
  for (int64_t r0 = 0; r0 < N; r0 += rows) {
    const int64_t B = std::min(rows, N - r0);
    std::vector<PolicyRow> packed;
    std::vector<std::vector<int32_t>> turn_of;
    int64_t C = 1;
    for (int64_t r = r0; r < r0 + B; ++r) {
      const Episode& e = episodes_[static_cast<size_t>(r)];
      PolicyRow row;
      row.prompt = &prompts[static_cast<size_t>(e.prompt_index)];
      row.completion.assign(e.tokens.begin() + e.prompt_length, e.tokens.end());
      row.logprobs.assign(e.logprobs.begin() + e.prompt_length, e.logprobs.end());
      turn_of.emplace_back(e.turn_mask.begin() + e.prompt_length, e.turn_mask.end());
      for (int32_t t : turn_of.back()) row.generated.push_back(t > 0 ? 1 : 0);
      row.advantages = {0.0f};  // per token below (route_to_tokens)
      C = std::max<int64_t>(C, static_cast<int64_t>(row.completion.size()));
      packed.push_back(std::move(row));
    }
    PolicyBatch b = pack_policy_batch(packed, pad_id_, session_.device);
    at::Tensor turn = at::zeros({B, C}, at::kInt);
    for (int64_t i = 0; i < B; ++i) {
      const auto& t = turn_of[static_cast<size_t>(i)];
      if (!t.empty()) turn[i].narrow(0, 0, static_cast<int64_t>(t.size())).copy_(at::tensor(t, at::kInt));
    }
    turn = turn.to(session_.device);
    b.advantages = route_to_tokens(advantages.slice(0, r0, r0 + B).to(session_.device), turn);   // [B, C]
    b.units = policy_loss_units(b.completion_mask, config_.grpo.loss_type);
    if (reference_) {
      b.kl_coef = route_to_tokens(kl_per_turn.expand({B, 2}).to(session_.device), turn);       // [B, C]
      at::NoGradGuard no_grad;
      b.ref_logp = completion_logprobs(*reference_, b, temperature_, false).first;
    }
    batches_.push_back(std::move(b));
    turns_.push_back(turn);
  }

  // 5. Metrics: rewards per turn, the rollouts' self-correction outcomes, collapse detector.
  add_padding_metrics(batches_, m);
  const at::Tensor r1 = turn_rewards[0], r2 = turn_rewards[1];
  m["score/stage"] = stage;
  m["reward"] = r2.mean().item<double>();
  m["reward/turn1"] = r1.mean().item<double>();
  m["reward/turn2"] = r2.mean().item<double>();
  m["reward/delta"] = (r2 - r1).mean().item<double>();
  m["reward/shaped_turn2"] = returns.select(1, 1).to(at::kDouble).mean().item<double>();
  m["advantages/abs_mean"] = advantages.abs().to(at::kDouble).mean().item<double>();
  CompletionLengths turn1, turn2;
  double edit = 0;
  for (const Episode& e : episodes_) {
    turn1.add(static_cast<double>(e.turns[0].end - e.turns[0].begin), e.turns[0].finish_reason == FinishReason::kLength);
    if (e.turns.size() < 2) continue;
    turn2.add(static_cast<double>(e.turns[1].end - e.turns[1].begin), e.turns[1].finish_reason == FinishReason::kLength);
    std::vector<long> a(e.tokens.begin() + e.turns[0].begin, e.tokens.begin() + e.turns[0].end);
    std::vector<long> b(e.tokens.begin() + e.turns[1].begin, e.tokens.begin() + e.turns[1].end);
    edit += static_cast<double>(edit_distance(a, b));
  }
  const double n = static_cast<double>(std::max<int64_t>(1, N)), second = turn2.count;
  m["completions/turn1_mean_length"] = turn1.sum / n;
  m["completions/turn2_mean_length"] = turn2.mean();
  m["completions/clipped_ratio"] = (turn1.truncated + turn2.truncated) / std::max(1.0, n + second);
  m["score/edit_distance"] = second > 0 ? edit / second : 0.0;
  m["score/second_turn_fraction"] = second / n;
  m["time/generation"] = gen_seconds;
  m["time/reward"] = reward_seconds;

  if (logs_samples(step)) {
    for (int64_t i = 0; i < std::min<int64_t>(N, config_.log.samples); ++i) {
      const Episode& e = episodes_[static_cast<size_t>(i)];
      const data::PromptRecord& rec = *records[static_cast<size_t>(e.prompt_index)];
      nlohmann::json j = {{"stage", stage}, {"prompt", rec.prompt_text}, {"attempt1", e.turns[0].text},
                          {"attempt2", e.turns.size() > 1 ? e.turns[1].text : std::string()},
                          {"reward1", r1[i].item<double>()}, {"reward2", r2[i].item<double>()},
                          {"return2", returns[i][1].item<double>()}};
      if (rec.answer) j["answer"] = *rec.answer;
      log_sample(step, j);
    }
  }
  std::vector<int64_t> units;
  for (const auto& b : batches_) units.push_back(b.units);
  return units;
}

double ScoreTask::forward_backward(size_t index, double denominator, StepMetrics& m) {
  Stopwatch clock;
  const PolicyBatch& b = batches_[index];
  PolicyLossOptions o = policy_loss_options(config_);
  o.beta = 0.0;  // the batch's per-token kl_coef carries SCoRe's β1 / β2
  o.max_completion_length = 2 * config_.generation.max_completion_length;  // a row holds both attempts
  const auto [numerator, logp] =
      policy_gradient_step(*session_.model, b, temperature_, o, denominator, batches_.size(), true, m);
  if (b.ref_logp.defined()) {
    // KL to the reference per turn (Stage I holds turn 1 near the base model: watch kl/turn1).
    at::NoGradGuard no_grad;
    const double n = static_cast<double>(batches_.size());
    const at::Tensor d = (b.ref_logp - logp).to(at::kDouble);
    const at::Tensor kl = at::exp(d) - d - 1.0;
    for (int t = 1; t <= 2; ++t) {
      const at::Tensor sel = turns_[index].eq(t) & b.completion_mask;
      const double count = sel.sum().item<double>();
      if (count > 0) m["kl/turn" + std::to_string(t)] += kl.masked_select(sel).sum().item<double>() / count / n;
    }
  }
  m["time/training"] += clock.seconds();
  return numerator;
}

// micro_batch_size prompts × G episodes; the second attempt's row holds the prompt and both
// attempts (the instruction between them is not counted: a lower bound).
MicroBatchShape ScoreTask::largest_micro_batch() const {
  MicroBatchShape shape;
  shape.rows = config_.train.micro_batch_size * config_.score.num_generations;
  shape.tokens = config_.generation.max_prompt_length + 2 * config_.generation.max_completion_length;
  shape.length_setting = "generation.max_prompt_length / max_completion_length (now " +
                         std::to_string(config_.generation.max_prompt_length) + " / " +
                         std::to_string(config_.generation.max_completion_length) + ")";
  return shape;
}

void ScoreTask::evaluate(int64_t, StepMetrics& m) {
  if (eval_prompts_.empty()) return;
  EvalOptions options;
  options.max_new_tokens = config_.generation.eval_max_new_tokens;
  options.attempts = 2;
  options.decode_steps = config_.generation.decode_steps;
  options.correction_instruction = config_.score.correction_instruction;  // greedy (the paper's evaluation)
  const EvalReport r = evaluate_accuracy(*session_.model, *session_.renderer, eval_prompts_, options);
  m["eval_accuracy"] = r.accuracy;
  m["eval_accuracy_t2"] = r.accuracy_t2;
  m["eval_delta"] = r.delta;
  m["eval_delta_i_to_c"] = r.delta_i_to_c;
  m["eval_delta_c_to_i"] = r.delta_c_to_i;
  m["eval_edit_distance"] = r.edit_distance;
  m["eval_changed_fraction"] = r.changed_fraction;
}

void run_score(const Config& config, const RunDir& run_dir, const RunOptions& options) {
  rewards::validate_reward_specs(config.rewards);  // before the (slow) model load
  ModelSession session = open_model_session(config);
  const int64_t continuation =
      1 + static_cast<int64_t>(session.renderer->render_continuation({ChatMessage{"user", config.score.correction_instruction}}).size());
  validate_score_config(config, session.model->config().max_position_embeddings, continuation);
  data::DatasetOptions dataset_options;
  dataset_options.skip_malformed = config.data.skip_malformed;
  auto train = data::load_prompt_dataset(config.data.train, dataset_options).records;
  std::vector<data::PromptRecord> eval_prompts = load_eval_prompts(config);
  const auto& s = config.score;
  log::info("SCoRe: ", train.size(), " prompts, stage ", option_name(s.stage), " (", s.stage1_steps, " + ", s.stage2_steps,
            " steps), ", option_name(s.policy_gradient), ", G = ", s.num_generations, ", alpha ", s.alpha, ", beta1 ", s.beta1,
            ", beta2 ", s.beta2, ", ", eval_prompts.size(), " eval prompts");
  ScoreTask task(config, session, std::move(train), std::move(eval_prompts), run_dir.path);
  run_training(config, run_dir, session, task, options.resume_from);
}

}  // namespace scorch::trainers

// SCoRe (ALGORITHMS.md §7; Kumar et al. 2024): two-stage multi-turn RL that trains self-correction.
// One optimizer step:
//   prompts (train.micro_batch_size × gradient_accumulation_steps) from the cursor -> chat template
//   -> run_episodes: turn 1 answers, the environment appends score.correction_instruction as a user
//      turn (append-only: turn 2 sees turn 1's exact tokens), turn 2 answers again;
//      score.num_generations episodes per prompt
//   -> the config's rewards score each attempt (the model never sees them)
//   -> per-turn returns (score_rewards.h: Stage I rewards turn 2 only, Stage II shapes turn 2 with α)
//   -> REINFORCE (returns as they are) or per-turn group advantages
//   -> per micro-batch: the whole conversation is one row; log-probs of the generated tokens of both
//      turns (completion_logprobs) -> policy_loss with per-token advantages and per-token KL β
//      (Stage I: β2 on turn 1, β1 on turn 2; Stage II: β1 on both) -> backward.
// The GRPO machinery is reused as it is: pack_policy_batch, completion_logprobs, policy_loss (its
// loss_type aggregation and clipping come from the `grpo:` section; with one update per batch ρ = 1
// and the loss is REINFORCE with a k3 KL penalty).
// Stages: score.stage 1 | 2 | both; steps 1..stage1_steps are Stage I, the rest Stage II. The stage
// boundary is checkpointed, and the data cursor records the stage, so a resume lands in the right
// stage. The KL reference is the starting model (score.reference_model overrides it, e.g. the base
// model when Stage II alone starts from a Stage I export).
// Not implemented: more than 2 attempts (CoCoS's accumulated reward) — NotImplemented, never faked.
#pragma once
#include <memory>
#include <vector>

#include <ATen/core/Tensor.h>

#include "config/config.h"
#include "data/dataset.h"
#include "rollout/episode.h"
#include "train/loop.h"
#include "train/session.h"
#include "trainers/common/policy_gradient.h"
#include "trainers/common/rl_task.h"
#include "trainers/registry.h"

namespace scorch::trainers {

// Throws UserError (or NotImplemented) for settings SCoRe cannot run with; `continuation_tokens` is
// the length of the rendered correction turn (closing id + instruction + generation prompt).
void validate_score_config(const Config& config, int64_t context_length, int64_t continuation_tokens);

class ScoreTask : public RlTask {
 public:
  // `config`, `session` and `run_dir` must outlive the task.
  ScoreTask(const Config& config, ModelSession& session, std::vector<data::PromptRecord> train,
            std::vector<data::PromptRecord> eval_prompts, std::string run_dir);

  std::vector<int64_t> prepare_step(int64_t step, StepMetrics& metrics) override;
  double forward_backward(size_t index, double denominator, StepMetrics& metrics) override;
  nlohmann::json data_cursor() const override;
  void restore_data_cursor(const nlohmann::json& cursor) override;
  bool checkpoint_after(int64_t step) const override;
  void evaluate(int64_t step, StepMetrics& metrics) override;
  MicroBatchShape largest_micro_batch() const override;

  // 1 or 2: the stage optimizer step `step` belongs to.
  int stage_of(int64_t step) const;
  // The last prepared step's episodes, micro-batches and token turns (for tests).
  const std::vector<Episode>& last_episodes() const { return episodes_; }
  const std::vector<PolicyBatch>& last_batches() const { return batches_; }

 private:
  std::vector<Episode> episodes_;
  std::vector<PolicyBatch> batches_;
  std::vector<at::Tensor> turns_;  // per micro-batch [B, C]: the turn of each completion token (0 = none)
  int64_t stage1_steps_ = 0;
  int first_stage_ = 1;
};

void run_score(const Config& config, const RunDir& run_dir, const RunOptions& options);

}  // namespace scorch::trainers

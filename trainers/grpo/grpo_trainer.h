// GRPO (ALGORITHMS.md §4; TRL's GRPOTrainer): online RL on prompts. One optimizer step:
//   prompts (train.micro_batch_size per micro-batch × gradient_accumulation_steps) from the cursor
//   -> chat template -> rollout engine: G = grpo.num_generations samples per prompt
//   -> rewards (RewardSet over the step's groups) -> group_advantages + the rewards' offsets
//   -> per micro-batch (micro_batch_size·G rows): policy log-probs of the EXACT rollout tokens
//      (never re-tokenized) through token_logprobs -> policy_loss (policy_loss.h) -> backward.
// num_iterations μ > 1: a batch is generated every μ steps and reused; π_old log-probs are saved
// from the policy that sampled it (before its first update). A run resumed in the middle of a μ
// cycle regenerates that step's batch (warned; not bitwise). With μ = 1 resume is bitwise: the
// rollout seed is derived from (seed, step) and the data cursor is checkpointed.
// Batch arithmetic: train.micro_batch_size counts PROMPTS (config.h), so a micro-batch holds
// micro_batch_size × G rows and a group never straddles micro-batches; TRL's "global batch
// divisible by G" holds by construction.
#pragma once
#include <cstdint>
#include <vector>

#include "config/config.h"
#include "data/dataset.h"
#include "train/loop.h"
#include "train/session.h"
#include "trainers/common/policy_gradient.h"
#include "trainers/common/rl_task.h"
#include "trainers/registry.h"

namespace scorch::trainers {

// Throws UserError for settings GRPO cannot run with (G < 2, lengths beyond the context, ...).
void validate_grpo_config(const Config& config, int64_t context_length);

class GrpoTask : public RlTask {
 public:
  // With grpo.beta > 0 a frozen copy of the current (initial) policy becomes the reference model.
  GrpoTask(const Config& config, ModelSession& session, std::vector<data::PromptRecord> train,
           std::vector<data::PromptRecord> eval_prompts, std::string run_dir);

  std::vector<int64_t> prepare_step(int64_t step, StepMetrics& metrics) override;
  double forward_backward(size_t index, double denominator, StepMetrics& metrics) override;
  void evaluate(int64_t step, StepMetrics& metrics) override;
  MicroBatchShape largest_micro_batch() const override;

 private:
  void generate_batch(int64_t step, StepMetrics& metrics);

  std::vector<PolicyBatch> batches_;
  int64_t batch_step_ = -1;    // the step whose rollouts batches_ hold
  StepMetrics batch_metrics_;  // the rollout metrics of that batch, logged again on reuse steps (μ > 1)
  int64_t current_step_ = -1;
};

void run_grpo(const Config& config, const RunDir& run_dir, const RunOptions& options);

}  // namespace scorch::trainers

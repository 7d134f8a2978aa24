// GRPO (ALGORITHMS.md §4; TRL's GRPOTrainer): online RL on prompts. One optimizer step:
//   prompts (train.micro_batch_size per micro-batch × gradient_accumulation_steps) from the cursor
//   -> chat template -> rollout engine: G = grpo.num_generations samples per prompt
//   -> rewards (RewardSet over the step's groups) -> group_advantages + the rewards' offsets
//   -> per micro-batch (micro_batch_size·G rows): policy log-probs of the EXACT rollout tokens
//      (never re-tokenized) through token_logprobs -> grpo_loss (grpo_loss.h) -> backward.
// num_iterations μ > 1: a batch is generated every μ steps and reused; π_old log-probs are saved
// from the policy that sampled it (before its first update). A run resumed in the middle of a μ
// cycle regenerates that step's batch (warned; not bitwise). With μ = 1 resume is bitwise: the
// rollout seed is derived from (seed, step) and the data cursor is checkpointed.
// Batch arithmetic: train.micro_batch_size counts PROMPTS (config.h), so a micro-batch holds
// micro_batch_size × G rows and a group never straddles micro-batches; TRL's "global batch
// divisible by G" holds by construction.
#pragma once
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "config/config.h"
#include "data/cursor.h"
#include "data/dataset.h"
#include "rewards/reward.h"
#include "train/loop.h"
#include "train/metrics.h"
#include "train/session.h"
#include "trainers/registry.h"

namespace scorch {
class Transformer;
}

namespace scorch::trainers {

// The rows of one micro-batch: prompt + completion right-padded into one sequence per row.
struct GrpoMicroBatch {
  at::Tensor input_ids;        // [B, S] int64 prompt ‖ completion ‖ pad
  at::Tensor prompt_lengths;   // [B] int64
  at::Tensor completion_mask;  // [B, C] bool: 1 for completion tokens that train
  at::Tensor completion_ids;   // [B, C] int64 (pad where masked)
  at::Tensor advantages;       // [B] fp32 (GRPO) or [B, C] per token (SCoRe)
  at::Tensor kl_coef;          // [B, C] per-token β (SCoRe); undefined = the config's grpo.beta
  at::Tensor rollout_logp;     // [B, C] fp32 sampling log-probs of the engine
  at::Tensor old_logp;         // [B, C] π_old (μ > 1); undefined for μ = 1
  at::Tensor ref_logp;         // [B, C] reference model (β > 0); undefined otherwise
  int64_t units = 0;           // grpo_loss_units of this micro-batch
};

// One row of a policy-gradient micro-batch, before padding: the prompt, then every token after it.
// GRPO: the completion, all generated. SCoRe: turn 1 ‖ continuation ‖ turn 2, where the
// environment's continuation tokens are not generated (never trained, no log-prob).
struct PolicyRow {
  const std::vector<int64_t>* prompt = nullptr;
  std::vector<int64_t> completion;
  std::vector<uint8_t> generated;   // [completion] 1 = sampled by the policy; empty = all
  std::vector<uint8_t> train;       // [completion] 1 = the loss sees it (⊆ generated); empty = generated
  std::vector<float> logprobs;      // [completion] sampling log-probs (0 where not generated)
  std::vector<float> advantages;    // [1] one per sequence, or [completion] one per token
  std::vector<float> kl_coef;       // empty, or [completion] per-token β
};

// Pads `rows` into one micro-batch (prompt ‖ completion ‖ pad per row) on `device`. Targets of
// tokens that were not generated are −100. Advantages are [B] when every row has one value, else
// [B, C] (a per-sequence row is broadcast over its tokens). `units` is left 0 for the caller.
GrpoMicroBatch pack_micro_batch(const std::vector<PolicyRow>& rows, int64_t pad_id, c10::Device device);

// Log-probs [B, C] (and entropies [B, C] when with_entropy) of the completion tokens of `batch`
// under `model` at `temperature` (TRL scales the logits by 1/T as the sampler did).
std::pair<at::Tensor, at::Tensor> completion_logprobs(const Transformer& model, const GrpoMicroBatch& batch,
                                                      double temperature, bool with_entropy);

// grpo_loss's options from the config's grpo.* keys (clip range, δ, β, GSPO level, entropy
// settings, dr_grpo's L = generation.max_completion_length). SCoRe starts from these too.
struct GrpoLossOptions;
GrpoLossOptions grpo_loss_options(const Config& config);

// One micro-batch of a policy-gradient step, as GRPO and SCoRe both run it: policy log-probs of
// the batch's rollout tokens, grpo_loss (inputs from the batch: advantages, π_old, reference,
// per-token β) with `options`, divided by `denominator`, and backward. Adds the loss's metrics as
// means over `num_batches` micro-batches, and with `compare_rollout` the gap between the engine's
// sampling log-probs and the policy's on the same tokens ("rollout/logprob_diff_mean|max").
// Returns the undivided loss numerator and the (detached) policy log-probs [B, C].
std::pair<double, at::Tensor> policy_gradient_step(const Transformer& model, const GrpoMicroBatch& batch,
                                                   double temperature, const GrpoLossOptions& options,
                                                   double denominator, size_t num_batches, bool compare_rollout,
                                                   std::map<std::string, double>& metrics);

// Throws UserError for settings GRPO cannot run with (G < 2, lengths beyond the context, ...).
void validate_grpo_config(const Config& config, int64_t context_length);

class GrpoTask : public TrainTask {
 public:
  // `config`, `session` and `run_dir` must outlive the task. With grpo.beta > 0 a frozen copy of
  // the current (initial) policy becomes the reference model.
  GrpoTask(const Config& config, ModelSession& session, std::vector<data::PromptRecord> train,
           std::vector<data::PromptRecord> eval_prompts, std::string run_dir);
  ~GrpoTask() override;

  int64_t total_steps() const override { return total_; }
  std::vector<int64_t> prepare_step(int64_t step, StepMetrics& metrics) override;
  double forward_backward(size_t index, double denominator, StepMetrics& metrics) override;
  nlohmann::json data_cursor() const override { return cursor_.to_json(); }
  void restore_data_cursor(const nlohmann::json& cursor) override { cursor_.restore(cursor); }
  double epoch() const override;
  void evaluate(int64_t step, StepMetrics& metrics) override;

  const Transformer* reference() const { return reference_.get(); }

 private:
  void generate_batch(int64_t step, StepMetrics& metrics);

  const Config& config_;
  ModelSession& session_;
  std::vector<data::PromptRecord> train_, eval_prompts_;
  std::string run_dir_;
  data::DataCursor cursor_;
  rewards::RewardSet rewards_;
  std::unique_ptr<Transformer> reference_;
  std::unique_ptr<SamplesLogger> samples_;
  std::vector<GrpoMicroBatch> batches_;
  int64_t batch_step_ = -1;    // the step whose rollouts batches_ hold
  StepMetrics batch_metrics_;  // the rollout metrics of that batch, logged again on reuse steps (μ > 1)
  int64_t current_step_ = -1;
  int64_t pad_id_ = 0, steps_per_epoch_ = 1, total_ = 0;
  double temperature_ = 1.0;
};

void run_grpo(const Config& config, const RunDir& run_dir, const RunOptions& options);

}  // namespace scorch::trainers

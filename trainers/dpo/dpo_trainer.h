// DPO (ALGORITHMS.md §2; TRL's DPOTrainer) and the training half of ScPO (§3). One optimizer step:
//   pairs (train.micro_batch_size per micro-batch × gradient_accumulation_steps) from the cursor
//   -> per micro-batch ONE forward of 2B rows [prompt‖chosen ; prompt‖rejected] (right padding)
//   -> token_logprobs of the completion tokens -> per-row sums π(y+), π(y−)
//   -> reference sums: a frozen copy of the initial policy (dpo.reference: live), or looked up
//      from the one-pass precomputation cached beside the data (dpo.reference: precompute)
//   -> dpo_loss (dpo_loss.h) -> backward.
// Loss units are pairs: the loop divides by the step's pairs, so a micro-batch's batch-mean loss
// is weighted by its share of the step (TRL's gradient accumulation with equal micro-batches).
#pragma once
#include <array>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "config/config.h"
#include "data/dataset.h"
#include "data/preference_example.h"
#include "train/loop.h"
#include "trainers/common/policy_gradient.h"
#include "train/session.h"
#include "trainers/dpo/dpo_loss.h"
#include "trainers/registry.h"

namespace scorch {
class Transformer;
}

namespace scorch::trainers {

// B pairs as 2B rows: rows 0..B−1 prompt‖chosen, rows B..2B−1 prompt‖rejected, right-padded.
struct PairBatch {
  at::Tensor input_ids;       // [2B, S] int64
  at::Tensor prompt_lengths;  // [2B] int64
  at::Tensor completion_ids;  // [2B, C] int64, −100 past each completion
  at::Tensor lengths;         // [2B] completion tokens (fp32)
  at::Tensor weights;         // [B] pair weights (fp32)
  at::Tensor ref_logps;       // [2B] reference sequence sums (fp32); filled by the task
  std::vector<int64_t> examples;  // dataset index of each pair
  int64_t pairs = 0;
  int64_t tokens = 0;         // real tokens of the 2B rows (prompt counted twice, as computed)
  RowLayout layout;           // the forward's rows (pack_rows: packed when that saves rows)
};

PairBatch make_pair_batch(const std::vector<data::PreferenceExample>& examples, const std::vector<int64_t>& indices,
                          int64_t pad_id, c10::Device device);
// Per-row Σ_t log π(completion token t) [2B] fp32 under `model` (differentiable).
at::Tensor pair_sequence_logps(const Transformer& model, const PairBatch& batch);

// Reference sums (chosen, rejected) of every example, computed once in batches of `batch_size`.
std::vector<std::array<float, 2>> compute_reference_logps(const Transformer& model,
                                                          const std::vector<data::PreferenceExample>& examples,
                                                          int64_t batch_size, int64_t pad_id, c10::Device device);

// dpo.reference = precompute: loads the cache beside data.train keyed by checksums of the model
// weights, the data file, the tokenizer and the tokenization settings, or computes and writes it.
// Returns the cache file's path through `cache_path` (may be null).
std::vector<std::array<float, 2>> cached_reference_logps(const Config& config, const ModelSession& session,
                                                         const std::vector<data::PreferenceExample>& examples,
                                                         std::string* cache_path = nullptr);

// The loss options a config asks for: dpo.* for trainer dpo; for trainer scpo the §3 loss
// (sigmoid with scpo.beta, weight 1, plus sft weight scpo.alpha normalised per sequence).
DpoLossOptions dpo_loss_options(const Config& config);

class DpoTask : public DatasetTask {
 public:
  // With `reference_logps` empty a frozen copy of the current policy is the (live) reference.
  DpoTask(const Config& config, ModelSession& session, std::vector<data::PreferenceExample> train,
          std::vector<std::array<float, 2>> reference_logps, std::vector<data::PromptRecord> eval_prompts);
  ~DpoTask() override;

  std::vector<int64_t> prepare_step(int64_t step, StepMetrics& metrics) override;
  double forward_backward(size_t index, double denominator, StepMetrics& metrics) override;
  void evaluate(int64_t step, StepMetrics& metrics) override;
  MicroBatchShape largest_micro_batch() const override;

 private:
  const Config& config_;
  ModelSession& session_;
  std::vector<data::PreferenceExample> train_;
  std::vector<std::array<float, 2>> reference_logps_;
  std::vector<data::PromptRecord> eval_prompts_;
  std::unique_ptr<Transformer> reference_;
  DpoLossOptions loss_options_;
  std::vector<PairBatch> batches_;
  int64_t step_pairs_ = 0;
  int64_t pad_id_ = 0;
};

// Loads and tokenizes the preference data of config.data.train (file:line errors; chosen ==
// rejected is malformed), builds the reference and trains. Used by trainer dpo and each ScPO round.
void run_dpo(const Config& config, const RunDir& run_dir, const RunOptions& options);

}  // namespace scorch::trainers

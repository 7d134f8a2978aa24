// The SFT task the shared training loop runs (train/loop.h): micro-batches from the data
// cursor, padded or packed, and the masked NLL of each. In a header so tests can drive one step.
#pragma once
#include <optional>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "config/config.h"
#include "data/batch.h"
#include "data/dataset.h"
#include "data/sft_example.h"
#include "train/loop.h"
#include "train/session.h"

namespace scorch {
class Transformer;
}

namespace scorch::trainers {

// Tensors of one micro-batch on the model's device.
struct DeviceBatch {
  at::Tensor input_ids, positions, targets, loss_mask;  // [B, T]
  std::optional<at::Tensor> attention;                  // [B, 1, T, T] bool for packed rows
};


// Copies a micro-batch to `device`; packed rows get the block-diagonal causal mask.
DeviceBatch to_device(const data::Batch& batch, bool packed, c10::Device device);
// Σ over trained tokens of −log p(target): the micro-batch's undivided loss (fp32 scalar).
at::Tensor nll_sum(const Transformer& model, const DeviceBatch& batch);

class SftTask : public DatasetTask {
 public:
  // `session` and `config` must outlive the task.
  SftTask(const Config& config, ModelSession& session, std::vector<data::SftExample> train,
          std::vector<data::SftExample> eval, std::vector<data::PromptRecord> eval_prompts);

  std::vector<int64_t> prepare_step(int64_t step, StepMetrics& metrics) override;
  double forward_backward(size_t index, double denominator, StepMetrics& metrics) override;
  void evaluate(int64_t step, StepMetrics& metrics) override;
  MicroBatchShape largest_micro_batch() const override;

 private:
  double eval_loss();

  const Config& config_;
  ModelSession& session_;
  std::vector<data::SftExample> train_, eval_;
  std::vector<data::PromptRecord> eval_prompts_;
  std::vector<DeviceBatch> batches_;
  int64_t pad_id_ = 0;
};

}  // namespace scorch::trainers

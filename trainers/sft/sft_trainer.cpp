// The SFT step, top to bottom:
//   micro-batch (padded, or packed with per-sample positions and a block-diagonal mask)
//   -> hidden = model(input_ids, positions, mask)
//   -> loss = -Σ mask·logp / (target tokens of the whole step, all micro-batches and ranks), through
//      model.token_loss (the LM head chunk by chunk, its gradients taken in the forward: no
//      [tokens, vocab] logits and no second pass over the vocabulary)
#include "trainers/sft/sft_trainer.h"
#include "trainers/sft/sft_task.h"

#include <algorithm>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <cmath>

#include "common/error.h"
#include "common/log.h"
#include "data/batch.h"
#include "data/cursor.h"
#include "data/dataset.h"
#include "data/sft_example.h"
#include "kernels/ops.h"
#include "model/transformer.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "trainers/common/evaluation.h"
#include "train/loop.h"
#include "train/session.h"

namespace scorch::trainers {


DeviceBatch to_device(const data::Batch& b, bool packed, c10::Device device) {
  auto opts = at::TensorOptions().dtype(at::kLong);
  auto view = [&](const std::vector<int64_t>& v) {
    return at::from_blob(const_cast<int64_t*>(v.data()), {b.rows, b.length}, opts).clone().to(device);
  };
  DeviceBatch d;
  d.input_ids = view(b.input_ids);
  d.positions = view(b.positions);
  d.targets = view(b.targets);
  d.loss_mask = at::from_blob(const_cast<uint8_t*>(b.loss_mask.data()), {b.rows, b.length}, at::kByte)
                    .clone().to(device).to(at::kBool);
  if (packed) {
    // Block-diagonal causal: token i sees j iff same sample (segment) and j <= i.
    at::Tensor seg = view(b.segment_ids);                                      // [B, T]
    at::Tensor same = seg.unsqueeze(2).eq(seg.unsqueeze(1)) & seg.unsqueeze(2).ge(0);
    at::Tensor causal = at::ones({b.length, b.length}, at::TensorOptions().dtype(at::kBool).device(device)).tril();
    d.attention = (same & causal.unsqueeze(0)).unsqueeze(1);                   // [B, 1, T, T]
  }
  return d;
}

// Sum over trained tokens of -log p(target): the micro-batch's undivided loss (the LM head's
// gradients taken in the forward: Transformer::token_loss).
at::Tensor nll_sum(const Transformer& model, const DeviceBatch& b) {
  at::Tensor hidden = model.forward(b.input_ids, b.positions, b.attention);   // [B, T, H]
  at::Tensor targets = b.targets.masked_fill(b.loss_mask.logical_not(), -100);  // [B, T]
  const TokenLossFn nll = [](const at::Tensor& logp, const at::Tensor&, int64_t, int64_t) { return -logp.sum(); };
  return model.token_loss(hidden, targets, nll).loss;                         // ignored targets: logp 0
}


SftTask::SftTask(const Config& config, ModelSession& session, std::vector<data::SftExample> train,
                 std::vector<data::SftExample> eval, std::vector<data::PromptRecord> eval_prompts)
    : DatasetTask(config, static_cast<int64_t>(train.size()), "data.train holds no SFT examples"),
      config_(config),
      session_(session),
      train_(std::move(train)),
      eval_(std::move(eval)),
      eval_prompts_(std::move(eval_prompts)) {
  pad_id_ = session.pad_id();
}

std::vector<int64_t> SftTask::prepare_step(int64_t, StepMetrics& m) {
  batches_.clear();
  std::vector<int64_t> units;
  for (int64_t i = 0; i < config_.train.gradient_accumulation_steps; ++i) {
    std::vector<const data::SftExample*> samples;
    for (int64_t index : cursor_.next_batch(config_.train.micro_batch_size)) samples.push_back(&train_[index]);
    data::Batch b = config_.data.packing ? data::pack_batch(samples, config_.data.max_length, pad_id_)
                                         : data::pad_batch(samples, pad_id_);
    units.push_back(b.num_target_tokens);
    batches_.push_back(to_device(b, config_.data.packing, session_.device));
  }
  m["train/micro_batches"] = static_cast<double>(batches_.size());
  return units;
}

double SftTask::forward_backward(size_t index, double denominator, StepMetrics&) {
  at::Tensor loss_sum = nll_sum(*session_.model, batches_[index]);
  (loss_sum / denominator).backward();
  return loss_sum.item<double>();
}

// micro_batch_size rows of the longest example (pad_batch pads to it), or of data.max_length packed.
MicroBatchShape SftTask::largest_micro_batch() const {
  MicroBatchShape shape;
  shape.rows = config_.train.micro_batch_size;
  for (const auto& e : train_) shape.tokens = std::max<int64_t>(shape.tokens, static_cast<int64_t>(e.input_ids.size()));
  if (config_.data.packing) shape.tokens = config_.data.max_length;
  shape.length_setting = "data.max_length (now " + std::to_string(config_.data.max_length) + ")";
  return shape;
}

void SftTask::evaluate(int64_t, StepMetrics& m) {
  if (!eval_.empty()) m["eval_loss"] = eval_loss();
  add_eval_metrics(config_, *session_.model, *session_.renderer, eval_prompts_, m);
}

double SftTask::eval_loss() {
  at::NoGradGuard no_grad;
  double sum = 0, tokens = 0;
  const size_t mbs = static_cast<size_t>(config_.train.micro_batch_size);
  for (size_t i = 0; i < eval_.size(); i += mbs) {
    std::vector<const data::SftExample*> samples;
    for (size_t j = i; j < std::min(eval_.size(), i + mbs); ++j) samples.push_back(&eval_[j]);
    data::Batch b = data::pad_batch(samples, pad_id_);
    sum += nll_sum(*session_.model, to_device(b, false, session_.device)).item<double>();
    tokens += static_cast<double>(b.num_target_tokens);
  }
  return tokens > 0 ? sum / tokens : NAN;
}

void run_sft(const Config& config, const RunDir& run_dir, const RunOptions& options) {
  ModelSession session = open_model_session(config);
  data::DatasetOptions dataset_options;
  dataset_options.skip_malformed = config.data.skip_malformed;
  const auto truncation = data::parse_truncation(config.data.truncation);

  data::TruncationStats stats;
  auto train = data::tokenize_sft_dataset(data::load_sft_dataset(config.data.train, dataset_options),
                                          *session.renderer, config.data.max_length, truncation, &stats);
  if (stats.truncated > 0 || stats.no_target > 0) {
    log::warn("truncation (data.max_length = ", config.data.max_length, "): ", stats.truncated, " samples cut, ",
              stats.tokens_dropped, " tokens dropped, ", stats.no_target, " samples left without targets and dropped");
  }
  std::vector<data::SftExample> eval;
  if (!config.data.eval.empty()) {
    eval = data::tokenize_sft_dataset(data::load_sft_dataset(config.data.eval, dataset_options), *session.renderer,
                                      config.data.max_length, truncation);
  }
  if (!config.sft.completion_only_loss) {  // TRL's completion_only_loss: false trains the prompt tokens too
    for (auto* set : {&train, &eval}) {
      for (data::SftExample& ex : *set) {
        std::fill(ex.loss_mask.begin(), ex.loss_mask.end(), 1);
        if (!ex.loss_mask.empty()) ex.loss_mask[0] = 0;  // the first token has nothing to predict it
      }
    }
  }
  std::vector<data::PromptRecord> eval_prompts = load_eval_prompts(config);  // accuracy by generation
  log::info("SFT: ", train.size(), " training samples, ", eval.size(), " eval samples (", eval_prompts.size(),
            " with answers)");
  SftTask task(config, session, std::move(train), std::move(eval), std::move(eval_prompts));
  run_training(config, run_dir, session, task, options.resume_from);
}

}  // namespace scorch::trainers

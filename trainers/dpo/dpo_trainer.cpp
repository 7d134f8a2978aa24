// The DPO step (dpo_trainer.h has the outline; dpo_loss.h the loss). Rows are laid out as in
// common/policy_gradient.h (prompt ‖ completion ‖ pad), the completion log-probs are its
// completion_token_logprobs.
#include "trainers/dpo/dpo_trainer.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "common/error.h"
#include "common/fs.h"
#include "common/log.h"
#include "dist/dist.h"
#include "kernels/ops.h"
#include "model/lora.h"
#include "model/transformer.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "trainers/common/evaluation.h"
#include "trainers/common/policy_gradient.h"
#include "train/metrics.h"

namespace scorch::trainers {

PairBatch make_pair_batch(const std::vector<data::PreferenceExample>& examples, const std::vector<int64_t>& indices,
                          int64_t pad_id, c10::Device device) {
  const int64_t B = static_cast<int64_t>(indices.size()), R = 2 * B;
  std::vector<RowTokens> rows(static_cast<size_t>(R));
  std::vector<float> lengths(static_cast<size_t>(R)), weights(static_cast<size_t>(B));
  for (int64_t k = 0; k < B; ++k) {
    const auto& ex = examples[static_cast<size_t>(indices[static_cast<size_t>(k)])];
    rows[static_cast<size_t>(k)] = {&ex.prompt_ids, &ex.chosen_ids};
    rows[static_cast<size_t>(k + B)] = {&ex.prompt_ids, &ex.rejected_ids};
    lengths[static_cast<size_t>(k)] = static_cast<float>(ex.chosen_ids.size());
    lengths[static_cast<size_t>(k + B)] = static_cast<float>(ex.rejected_ids.size());
    weights[static_cast<size_t>(k)] = static_cast<float>(ex.weight);
  }
  PackedRows packed = pack_rows(rows, pad_id, device);
  PairBatch b;
  b.input_ids = std::move(packed.input_ids);
  b.prompt_lengths = std::move(packed.prompt_lengths);
  b.completion_ids = std::move(packed.completion_ids);
  b.lengths = at::from_blob(lengths.data(), {R}, at::kFloat).clone().to(device);
  b.weights = at::from_blob(weights.data(), {B}, at::kFloat).clone().to(device);
  b.examples = indices;
  b.pairs = B;
  b.tokens = packed.tokens;
  b.layout = std::move(packed.layout);
  return b;
}

at::Tensor pair_sequence_logps(const Transformer& model, const PairBatch& b) {
  // [R, C], 0 at −100 (past each completion).
  const at::Tensor logp =
      completion_token_logprobs(model, b.layout, b.completion_ids, 1.0, false).first;
  return logp.sum(1);  // [R] fp32
}

std::vector<std::array<float, 2>> compute_reference_logps(const Transformer& model,
                                                          const std::vector<data::PreferenceExample>& examples,
                                                          int64_t batch_size, int64_t pad_id, c10::Device device) {
  at::NoGradGuard no_grad;
  std::vector<std::array<float, 2>> out(examples.size());
  for (size_t i = 0; i < examples.size(); i += static_cast<size_t>(batch_size)) {
    std::vector<int64_t> idx;
    for (size_t j = i; j < std::min(examples.size(), i + static_cast<size_t>(batch_size)); ++j) idx.push_back(static_cast<int64_t>(j));
    const PairBatch b = make_pair_batch(examples, idx, pad_id, device);
    const at::Tensor logps = pair_sequence_logps(model, b).to(at::kCPU).contiguous();
    const float* p = logps.data_ptr<float>();
    for (size_t k = 0; k < idx.size(); ++k) out[static_cast<size_t>(idx[k])] = {p[k], p[k + idx.size()]};
  }
  return out;
}

namespace {

// FNV-1a 64 over bytes: a content key for the reference cache (not a security hash).
uint64_t fnv1a(const std::string& bytes, uint64_t h = 1469598103934665603ULL) {
  for (unsigned char c : bytes) h = (h ^ c) * 1099511628211ULL;
  return h;
}

uint64_t file_checksum(const std::string& path, uint64_t h) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UserError("cannot read '" + path + "' to checksum it for the reference cache");
  std::string buf(1 << 20, '\0');
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    h = fnv1a(buf.substr(0, static_cast<size_t>(in.gcount())), h);
  }
  return h;
}

std::string hex(uint64_t v) {
  char s[17];
  std::snprintf(s, sizeof s, "%016" PRIx64, v);
  return s;
}

}  // namespace

std::vector<std::array<float, 2>> cached_reference_logps(const Config& config, const ModelSession& session,
                                                         const std::vector<data::PreferenceExample>& examples,
                                                         std::string* cache_path) {
  // Key: model weights + config, data file, tokenizer, and every setting that changes the tokens
  // or the numbers (length, truncation, template, dtype, device type).
  uint64_t model_key = 1469598103934665603ULL;
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(config.model.path)) {
    const std::string name = e.path().filename().string();
    if (name == "config.json" || name.size() > 12 && name.substr(name.size() - 12) == ".safetensors") files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  for (const auto& f : files) model_key = file_checksum(f, model_key);
  uint64_t data_key = file_checksum(config.data.train, 1469598103934665603ULL);
  data_key = file_checksum(session.tokenizer_path, data_key);
  data_key = fnv1a(std::to_string(config.data.max_length) + "|" + config.data.truncation + "|" +
                       config.tokenizer.chat_template + "|" + c10::toString(session.dtype) + "|" +
                       c10::DeviceTypeName(session.device.type()),
                   data_key);
  const std::string path = config.data.train + ".ref-" + hex(model_key).substr(0, 8) + hex(data_key).substr(0, 8) + ".json";
  if (cache_path) *cache_path = path;
  if (fs::exists(path)) {
    const nlohmann::json j = nlohmann::json::parse(fs::read_file(path, "reference log-prob cache"), nullptr, false);
    if (j.is_object() && j.value("model_checksum", "") == hex(model_key) && j.value("data_checksum", "") == hex(data_key) &&
        j.contains("logps") && j["logps"].size() == examples.size()) {
      std::vector<std::array<float, 2>> out;
      for (const auto& pair : j["logps"]) out.push_back({pair[0].get<float>(), pair[1].get<float>()});
      log::info("reference log-probs: loaded ", out.size(), " pairs from ", path);
      return out;
    }
    log::warn("reference log-prob cache ", path, " does not match the model/data; recomputing it");
  }
  Stopwatch clock;
  const int64_t pad_id = session.pad_id();
  auto out = compute_reference_logps(session.model->without_lora(), examples, config.train.micro_batch_size, pad_id, session.device);
  nlohmann::json j = {{"model", config.model.path}, {"data", config.data.train}, {"model_checksum", hex(model_key)},
                      {"data_checksum", hex(data_key)}, {"logps", nlohmann::json::array()}};
  for (const auto& p : out) j["logps"].push_back({p[0], p[1]});
  try {
    if (dist::rank() == 0) fs::atomic_write(path, j.dump());  // every rank computed the same values
    log::info("reference log-probs: computed ", out.size(), " pairs in ", clock.seconds(), " s, cached in ", path);
  } catch (const std::exception& e) {
    log::warn("reference log-probs computed but not cached (", e.what(), ")");
  }
  return out;
}

DpoLossOptions dpo_loss_options(const Config& config) {
  DpoLossOptions o;
  if (config.trainer == "scpo") {
    o.beta = config.scpo.beta;
    o.losses = {{"sigmoid", 1.0}, {"sft", config.scpo.alpha}};
    o.sft_per_sequence = true;
    return o;
  }
  o.beta = config.dpo.beta;
  o.losses = parse_dpo_losses(config.dpo.loss_type, config.dpo.loss_weights, config.dpo.rpo_alpha);
  o.label_smoothing = config.dpo.label_smoothing;
  return o;
}

DpoTask::DpoTask(const Config& config, ModelSession& session, std::vector<data::PreferenceExample> train,
                 std::vector<std::array<float, 2>> reference_logps, std::vector<data::PromptRecord> eval_prompts)
    // Each rank takes its strided share of every epoch's pairs (data/cursor.h).
    : DatasetTask(config, static_cast<int64_t>(train.size()), "data.train holds no preference pairs"),
      config_(config),
      session_(session),
      train_(std::move(train)),
      reference_logps_(std::move(reference_logps)),
      eval_prompts_(std::move(eval_prompts)),
      loss_options_(dpo_loss_options(config)) {
  pad_id_ = session.pad_id();
  if (reference_logps_.empty()) {
    // The frozen reference: the policy as it is now, or with LoRA the base with the adapter disabled
    // (model/lora.h; on resume the loop loads the checkpoint into the policy after this, so the
    // reference stays the initial model).
    reference_ = std::make_unique<Transformer>(frozen_reference(*session.model));
  } else if (reference_logps_.size() != train_.size()) {
    throw std::logic_error("DpoTask: reference log-probs do not match the dataset");
  }
}

DpoTask::~DpoTask() = default;

std::vector<int64_t> DpoTask::prepare_step(int64_t, StepMetrics& m) {
  batches_.clear();
  std::vector<int64_t> units;
  step_pairs_ = 0;
  int64_t tokens = 0;
  for (int64_t i = 0; i < config_.train.gradient_accumulation_steps; ++i) {
    PairBatch b = make_pair_batch(train_, cursor_.next_batch(config_.train.micro_batch_size), pad_id_, session_.device);
    if (reference_) {
      at::NoGradGuard no_grad;
      b.ref_logps = pair_sequence_logps(*reference_, b);
    } else {
      std::vector<float> ref(static_cast<size_t>(2 * b.pairs));
      for (int64_t k = 0; k < b.pairs; ++k) {
        const auto& r = reference_logps_[static_cast<size_t>(b.examples[static_cast<size_t>(k)])];
        ref[static_cast<size_t>(k)] = r[0], ref[static_cast<size_t>(k + b.pairs)] = r[1];
      }
      b.ref_logps = at::tensor(ref, at::kFloat).to(session_.device);
    }
    units.push_back(b.pairs);
    step_pairs_ += b.pairs;
    tokens += b.tokens;
    batches_.push_back(std::move(b));
  }
  m["train/pair_tokens"] = static_cast<double>(tokens);
  return units;
}

double DpoTask::forward_backward(size_t index, double denominator, StepMetrics& m) {
  const PairBatch& b = batches_[index];
  const int64_t B = b.pairs;
  const at::Tensor logps = pair_sequence_logps(*session_.model, b);  // [2B]
  DpoLossInputs in;
  in.chosen_logps = logps.slice(0, 0, B);
  in.rejected_logps = logps.slice(0, B, 2 * B);
  in.ref_chosen_logps = b.ref_logps.slice(0, 0, B);
  in.ref_rejected_logps = b.ref_logps.slice(0, B, 2 * B);
  in.chosen_lengths = b.lengths.slice(0, 0, B);
  in.rejected_lengths = b.lengths.slice(0, B, 2 * B);
  in.weights = b.weights;
  DpoLossOutput out = dpo_loss(in, loss_options_);
  // The micro-batch's mean weighted by its share of the step's pairs (all ranks: the denominator).
  (out.loss * (static_cast<double>(B) / denominator)).backward();
  const double share = static_cast<double>(B) / static_cast<double>(std::max<int64_t>(1, step_pairs_));
  for (const auto& [k, v] : out.metrics) m[k] += v * share;
  return out.loss.item<double>() * static_cast<double>(B);
}

// Chosen and rejected rows of micro_batch_size pairs, padded to the longest prompt + reply.
MicroBatchShape DpoTask::largest_micro_batch() const {
  MicroBatchShape shape;
  shape.rows = 2 * config_.train.micro_batch_size;
  for (const auto& e : train_) {
    const size_t reply = std::max(e.chosen_ids.size(), e.rejected_ids.size());
    shape.tokens = std::max<int64_t>(shape.tokens, static_cast<int64_t>(e.prompt_ids.size() + reply));
  }
  shape.length_setting = "data.max_length (now " + std::to_string(config_.data.max_length) + ")";
  return shape;
}

void DpoTask::evaluate(int64_t, StepMetrics& m) {
  add_eval_metrics(config_, *session_.model, *session_.renderer, eval_prompts_, m);
}

void run_dpo(const Config& config, const RunDir& run_dir, const RunOptions& options) {
  ModelSession session = open_model_session(config);
  data::DatasetOptions dataset_options;
  dataset_options.skip_malformed = config.data.skip_malformed;
  const auto dataset = data::load_preference_dataset(config.data.train, dataset_options);
  const auto truncation = data::parse_truncation(config.data.truncation);
  data::TruncationStats stats;
  std::vector<data::PreferenceExample> train;
  int64_t identical = 0;
  for (const auto& record : dataset.records) {
    data::PreferenceExample ex = data::tokenize_preference(record, *session.renderer, config.data.max_length, truncation,
                                                           config.data.train, &stats);
    if (ex.chosen_ids == ex.rejected_ids) {  // distinct texts that truncation made equal compare nothing
      if (!config.data.skip_malformed) {
        throw UserError(config.data.train + ":" + std::to_string(record.line) + ": chosen and rejected are the same "
                        "tokens after truncation to data.max_length " + std::to_string(config.data.max_length) +
                        ". Fix: raise data.max_length, or set data.skip_malformed: true to skip and count such pairs");
      }
      ++identical;
      continue;
    }
    train.push_back(std::move(ex));
  }
  if (identical > 0) log::warn(config.data.train, ": skipped ", identical, " pairs identical after truncation");
  if (train.empty()) throw UserError("preference file '" + config.data.train + "' has no usable pairs");
  if (stats.truncated > 0) {
    log::warn("truncation (data.max_length = ", config.data.max_length, "): ", stats.truncated, " pairs cut, ",
              stats.tokens_dropped, " tokens dropped");
  }
  std::vector<std::array<float, 2>> reference;
  if (config.dpo.reference == "precompute") reference = cached_reference_logps(config, session, train);
  std::vector<data::PromptRecord> eval_prompts = load_eval_prompts(config);
  log::info(config.trainer == "scpo" ? "ScPO" : "DPO", ": ", train.size(), " pairs (", dataset.skipped + identical,
            " skipped), reference ", config.dpo.reference, ", ", eval_prompts.size(), " eval prompts");
  DpoTask task(config, session, std::move(train), std::move(reference), std::move(eval_prompts));
  run_training(config, run_dir, session, task, options.resume_from);
}

}  // namespace scorch::trainers

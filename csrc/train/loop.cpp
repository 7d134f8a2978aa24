#include "train/loop.h"

#include <ATen/ATen.h>

#include <cmath>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <sstream>

#include "common/error.h"
#include "common/kill_point.h"
#include "common/log.h"
#include "common/progress.h"
#include "common/run_dir.h"
#include "config/config.h"
#include "dist/data_parallel.h"
#include "dist/dist.h"
#include "model/device_memory.h"
#include "model/hf_checkpoint.h"
#include "model/lora.h"
#include "model/model_config.h"
#include "model/transformer.h"
#include "tokenizer/tokenizer.h"
#include "train/checkpoint.h"
#include "train/gradients.h"
#include "train/loss_norm.h"
#include "train/memory_plan.h"
#include "train/metrics.h"
#include "train/optimizer.h"
#include "train/zero.h"
#include "train/schedule.h"
#include "train/session.h"

namespace scorch {
namespace {

std::string short_status(const StepMetrics& m) {
  std::ostringstream o;
  o.precision(4);
  bool first = true;
  for (const char* key : {"loss", "reward", "kl", "eval_accuracy", "grad_norm"}) {
    auto it = m.find(key);
    if (it == m.end()) continue;
    o << (first ? "" : " ") << key << ' ' << it->second;
    first = false;
  }
  return o.str();
}

TrainState capture_state(int64_t step, Transformer& model, NamedTensors optimizer_tensors, nlohmann::json optimizer_json,
                         const LrSchedule& schedule, const TrainTask& task, const NonFiniteGuard& guard,
                         const std::string& config_yaml) {
  TrainState state;
  state.step = step;
  state.model = model.trainable_parameters();
  state.model_config = model_config_to_json(model.config());
  state.optimizer_tensors = std::move(optimizer_tensors);
  state.optimizer = std::move(optimizer_json);
  state.scheduler = schedule.to_json();
  state.rng = RngStates::capture();
  state.data_cursor = task.data_cursor();
  state.config_yaml = config_yaml;
  state.trainer_state = {{"nonfinite", guard.to_json()}};
  return state;
}

// The loss normalisation's all-reduce through the process group.
class GroupReducer : public Reducer {
 public:
  explicit GroupReducer(dist::Group* group) : group_(group) {}
  double all_reduce_sum(double value) override { return group_ ? group_->all_reduce_sum(value) : value; }

 private:
  dist::Group* group_;
};

// The pre-flight (train/memory_plan.h): gradients, AdamW state and one micro-batch's activations
// against the memory left on the model's device once the weights are in.
void check_training_memory(const Config& config, const Transformer& model, const NamedTensors& params,
                           const MicroBatchShape& micro_batch, int64_t optimizer_shards) {
  const TrainingMemory need =
      estimate_training_memory(model.config(), params, static_cast<int64_t>(c10::elementSize(model.dtype())),
                               config.model.gradient_checkpointing, micro_batch, optimizer_shards);
  std::string fix = "lower train.micro_batch_size (now " + std::to_string(config.train.micro_batch_size) +
                    ") and raise train.gradient_accumulation_steps to keep the batch";
  if (!micro_batch.length_setting.empty()) fix += ", shorten " + micro_batch.length_setting;
  if (!config.model.gradient_checkpointing) fix += ", set model.gradient_checkpointing: true";
  if (!config.lora.enabled) fix += ", train a LoRA adapter (lora.enabled: true)";
  fix += ", or use a smaller model";
  check_memory(model.device(), need.total(), "training (" + describe(need, micro_batch) + ")", fix);
}

}  // namespace

LoopResult run_training(const Config& config, const RunDir& run_dir, Transformer& model, TrainTask& task,
                        const LoopOptions& options) {
  // What the optimizer, gradient sync, clipping, ZeRO-1 sharding and checkpoints see: every weight,
  // or only the LoRA adapter (the base frozen, model/lora.h).
  const auto params = model.trainable_parameters();
  for (const auto& [name, p] : params) p.requires_grad_(true);
  AdamWOptions adam;
  adam.lr = config.optim.learning_rate;
  adam.beta1 = config.optim.adam_beta1;
  adam.beta2 = config.optim.adam_beta2;
  adam.eps = config.optim.adam_epsilon;
  adam.weight_decay = config.optim.weight_decay;
  AdamWSettings settings;
  settings.decay_norms_and_biases = config.optim.decay_norms_and_biases;
  dist::Group* group = options.group;
  const int rank = group ? group->rank() : options.rank;
  // ZeRO-1 (train/zero.h): this rank's AdamW holds only the parameters it owns.
  const bool zero1 = group && config.dist.zero1;
  const std::map<std::string, int> owner =
      zero1 ? dist::partition_parameters(params, group->size()) : std::map<std::string, int>{};
  check_training_memory(config, model, params, task.largest_micro_batch(), zero1 ? group->size() : 1);
  AdamW optimizer(zero1 ? owned_parameters(params, owner, rank) : params, adam, settings);

  const int64_t total = task.total_steps();
  if (total <= 0) throw UserError("the run has 0 optimizer steps: set train.max_steps or check the dataset size");
  const LrSchedule schedule = LrSchedule::from_config(config.optim, total);
  NonFiniteGuard guard(config.train.max_nonfinite_steps);
  CheckpointManager checkpoints(run_dir.path, config.checkpoint.keep_last, rank);
  const std::string config_yaml = to_yaml(config);

  // Resume: an explicit checkpoint, else the run directory's latest (the same command again).
  int64_t step = 0;
  std::string resume = options.resume_from;
  if (resume.empty() && checkpoints.latest()) resume = "latest";
  if (!resume.empty()) {
    TrainState state = checkpoints.load(resume, &params);
    CheckpointManager::copy_into(state.model, params, resume);
    if (zero1) {
      auto [tensors, json] = shard_optimizer_state(state.optimizer_tensors, state.optimizer, owner, rank);
      optimizer.load_state(tensors, json);
    } else {
      optimizer.load_state(state.optimizer_tensors, state.optimizer);
    }
    state.rng.restore();
    task.restore_data_cursor(state.data_cursor);
    if (state.trainer_state.contains("nonfinite")) guard.load_json(state.trainer_state["nonfinite"]);
    step = state.step;
    log::info("resumed from checkpoint at step ", step, " of ", total);
  }

  // Training from NaN/Inf weights would only skip steps and end in a broken model: refuse it.
  check_finite_weights(model, resume.empty() ? std::string("train from these weights")
                                             : "resume from checkpoint '" + resume + "'");

  // Long one-sided phases on rank 0 (evaluation, checkpoint, export) get a longer wait than a collective.
  const double root_wait_s = 8 * config.dist.timeout_s;
  if (group) {
    // Every rank starts from rank 0's weights (and, resumed, optimizer state came from the same checkpoint).
    dist::broadcast_tensors(*group, params, 0);
    log::info("data parallel: ", group->size(), " ranks (", group->backend(), "), gradient buckets of ",
              config.dist.bucket_mb, " MB", zero1 ? ", ZeRO-1 optimizer sharding" : "");
  }

  LoopResult result;
  result.first_step = step + 1;
  MetricsLogger metrics(run_dir.path, rank, resume.empty() ? -1 : step);
  IdentityReducer identity;
  GroupReducer group_reducer(group);
  Reducer* reducer = options.reducer ? options.reducer : group ? static_cast<Reducer*>(&group_reducer) : &identity;
  ProgressBar progress("train", total);
  if (step >= total) log::info("the run is already complete (step ", step, " of ", total, ")");

  for (int64_t s = step + 1; s <= total; ++s) {
    StepMetrics m;
    Stopwatch step_clock;
    const double lr = schedule.lr(s - 1);
    optimizer.set_lr(lr);
    const std::vector<int64_t> units = task.prepare_step(s, m);
    const double denominator = global_token_count(units, reducer);
    double loss_sum = 0.0;
    if (denominator > 0) {
      for (size_t i = 0; i < units.size(); ++i) loss_sum += task.forward_backward(i, denominator, m);
    }
    if (group) {
      loss_sum = group->all_reduce_sum(loss_sum);
      Stopwatch comm;
      dist::all_reduce_gradients(*group, params, config.dist.bucket_mb << 20);
      m["time/grad_allreduce"] = comm.seconds();
    }
    const double loss = denominator > 0 ? loss_sum / denominator : 0.0;
    const double grad_norm = clip_grad_norm(params, config.train.max_grad_norm > 0 ? config.train.max_grad_norm : INFINITY);
    if (guard.check(loss, grad_norm, params)) {
      optimizer.step();
      if (zero1) broadcast_from_owners(*group, params, owner);  // each shard's new weights to every rank
    }
    optimizer.zero_grad();
    if (zero1) {
      // This rank's optimizer knows only its shard: drop the other parameters' gradients too.
      for (const auto& [name, p] : params) p.mutable_grad() = at::Tensor();
    }
#if defined(__GLIBC__)
    // Batches padded to varying lengths leave freed CPU buffers on glibc's heap, and RSS grew every
    // step (3.4 GB after 8 SFT steps of a 19M model, 1.2 GB with this); give them back once a step.
    if (!model.device().is_cuda()) malloc_trim(0);
#endif

    m["loss"] = loss;
    m["grad_norm"] = grad_norm;
    m["learning_rate"] = lr;
    m["num_tokens"] = denominator;
    m["epoch"] = task.epoch();
    m["time/step"] = step_clock.seconds();  // before eval and checkpointing: the training step alone
    m["train/tokens_per_second"] = denominator / std::max(1e-9, m["time/step"]);
    if (guard.total_skipped() > 0) m["nonfinite_skipped_steps"] = static_cast<double>(guard.total_skipped());
    const bool last = s == total;
    const bool log_step = s % config.log.every == 0 || last || s == step + 1;
    // Step metrics of every rank merged (means; max/min keys; the slowest rank's times).
    if (group && log_step) m = dist::merge_metrics(*group, m);
    const bool eval_step = last || (config.train.eval_every > 0 && s % config.train.eval_every == 0);
    if (eval_step) {
      if (rank == 0) task.evaluate(s, m);  // the held-out set once, on rank 0
      if (group) group->wait_for_root("eval/" + std::to_string(s), root_wait_s);
    }
    if (log_step) metrics.log(s, m);
    if ((config.checkpoint.save_every > 0 && s % config.checkpoint.save_every == 0) || last || task.checkpoint_after(s)) {
      // No checkpoint (and no export) ever holds NaN/Inf weights; every rank holds the same
      // weights here, so every rank stops together.
      const std::string bad = first_non_finite_weight(model);
      if (!bad.empty()) {
        throw NonFiniteStop("weight '" + bad + "' became NaN or infinite by step " + std::to_string(s) +
                            "; no checkpoint was written for it (the last one in " + run_dir.path +
                            "/checkpoints is intact). Lower optim.learning_rate or set train.max_grad_norm");
      }
      // With ZeRO-1 every rank takes part in gathering the shards; rank 0 writes one full state.
      auto [opt_tensors, opt_json] = zero1 ? gather_optimizer_state(*group, optimizer)
                                           : std::make_pair(NamedTensors{}, nlohmann::json{});
      if (rank == 0) {
        if (!zero1) opt_tensors = optimizer.state_tensors(), opt_json = optimizer.state_json();
        kill_point("before-checkpoint");
        checkpoints.save(capture_state(s, model, std::move(opt_tensors), std::move(opt_json), schedule, task, guard,
                                       config_yaml));
        kill_point("after-checkpoint");
      }
      if (group) group->wait_for_root("checkpoint/" + std::to_string(s), root_wait_s);
    }
    if (config.log.progress) progress.update(s, short_status(m), denominator, "tok");
    result.last_metrics = m;
    result.last_step = s;
  }
  if (config.log.progress && result.last_step > 0) progress.finish();

  if (config.checkpoint.export_final && rank == 0) {
    result.export_dir = run_dir.path + "/export";
    ExportOptions export_options;
    export_options.tokenizer_source = options.tokenizer_dir;
    // Built only here: converting a tiktoken rank file to tokenizer.json takes a second.
    if (options.tokenizer) export_options.tokenizer_files = options.tokenizer->hf_export_files();
    if (model.has_lora()) {
      save_peft_adapter(model, config.lora, result.export_dir, config.model.path, options.tokenizer_dir,
                        export_options.tokenizer_files);
      log::info("exported the LoRA adapter (PEFT format) to ", result.export_dir,
                "; `scorch export --model ", result.export_dir, " --merge --out DIR` writes the merged model");
    } else {
      export_hf_model(model, result.export_dir, export_options);
      log::info("exported the final model to ", result.export_dir);
    }
  }
  if (group) group->wait_for_root("export", root_wait_s);
  return result;
}

namespace {

int64_t nonempty(int64_t dataset_size, const std::string& empty_message) {
  if (dataset_size <= 0) throw UserError(empty_message);
  return dataset_size;
}

}  // namespace

DatasetTask::DatasetTask(const Config& config, int64_t dataset_size, const std::string& empty_message)
    : cursor_(nonempty(dataset_size, empty_message), config.seed, config.data.shuffle, dist::rank(), dist::world_size()) {
  const int64_t per_step = config.train.micro_batch_size * config.train.gradient_accumulation_steps;
  steps_per_epoch_ = std::max<int64_t>(1, cursor_.samples_per_epoch() / per_step);
  total_ = config.train.max_steps > 0 ? config.train.max_steps : steps_per_epoch_ * config.train.epochs;
  if (cursor_.samples_per_epoch() < per_step) {
    log::warn("the dataset has ", cursor_.samples_per_epoch(), " samples per rank, fewer than one optimizer step (",
              per_step, "): samples repeat within a step");
  }
}

double DatasetTask::epoch() const {
  return static_cast<double>(cursor_.epoch()) +
         static_cast<double>(cursor_.index()) / static_cast<double>(std::max<int64_t>(1, cursor_.samples_per_epoch()));
}

LoopResult run_training(const Config& config, const RunDir& run_dir, ModelSession& session, TrainTask& task,
                        const std::string& resume_from) {
  LoopOptions options;
  options.resume_from = resume_from;
  options.tokenizer_dir = session.tokenizer_path;
  options.tokenizer = session.tokenizer.get();
  options.group = dist::current();
  LoopResult result = run_training(config, run_dir, *session.model, task, options);
  if (result.last_metrics.count("eval_accuracy")) {
    log::info("final held-out accuracy: ", result.last_metrics.at("eval_accuracy"));
  }
  return result;
}

}  // namespace scorch

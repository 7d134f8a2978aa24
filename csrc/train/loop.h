// The training loop every trainer shares: resume, learning-rate schedule, gradient accumulation
// with the loss normalised by the units (target tokens, or sequences) of the WHOLE optimizer step
// (all micro-batches, all ranks — ALGORITHMS.md §1), clipping, the non-finite guard, the optimizer
// step, metrics, checkpoints and the final export. A trainer supplies only its algorithm through
// TrainTask: how a step's micro-batches are made and what the loss of one of them is.
//
// The step of one optimizer update, as the loop runs it:
//   units = task.prepare_step(step)            // per micro-batch loss units on this rank
//   denominator = Σ units over micro-batches and ranks
//   for each micro-batch i: task.forward_backward(i, denominator, metrics)   // loss/denominator, backward
//   grad_norm = clip(…); guard; optimizer.step(); zero_grad
// Bitwise resume: the checkpoint after step s holds weights, optimizer, RNG states and the task's
// data cursor, so a run killed anywhere and restarted with the same command repeats steps s+1.. exactly.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/cursor.h"
#include "train/memory_plan.h"

namespace scorch::dist {
class Group;
}

namespace scorch {

struct Config;
struct RunDir;
class Tokenizer;
class Transformer;
class Reducer;
struct ModelSession;

// Metrics a step reports: summed over micro-batches by the loop's caller as the task decides
// (a task writes means itself); every value ends up in metrics.jsonl under its key.
using StepMetrics = std::map<std::string, double>;

class TrainTask {
 public:
  virtual ~TrainTask() = default;
  // Optimizer steps the whole run takes (from train.max_steps or epochs × dataset size).
  virtual int64_t total_steps() const = 0;
  // Builds the micro-batches of optimizer step `step` (1-based); returns each one's loss units.
  virtual std::vector<int64_t> prepare_step(int64_t step, StepMetrics& metrics) = 0;
  // Forward + backward of micro-batch `index` with its loss divided by `denominator`; returns the
  // loss summed over the micro-batch's units (undivided), for the step's mean loss.
  virtual double forward_backward(size_t index, double denominator, StepMetrics& metrics) = 0;
  // The data position after the last prepared step, and its restoration on resume.
  virtual nlohmann::json data_cursor() const = 0;
  virtual void restore_data_cursor(const nlohmann::json& cursor) = 0;
  // True when the state after `step` must be checkpointed whatever checkpoint.save_every says
  // (SCoRe's stage boundary).
  virtual bool checkpoint_after(int64_t step) const { (void)step; return false; }
  // Fractional epoch for metrics (optional).
  virtual double epoch() const { return 0.0; }
  // The largest micro-batch forward_backward() will see, for the memory pre-flight
  // (train/memory_plan.h); unknown (the default) checks gradients and optimizer state only.
  virtual MicroBatchShape largest_micro_batch() const { return {}; }
  // Periodic evaluation (train.eval_every, and at the end); adds eval metrics.
  virtual void evaluate(int64_t step, StepMetrics& metrics) { (void)step, (void)metrics; }
};

// A task that walks a dataset of `dataset_size` samples with this rank's DataCursor (data.shuffle,
// seed; ranks take strided shares, data/cursor.h): the cursor is the data position the task
// checkpoints and the epoch it reports, and sets the run's length when train.max_steps is 0
// (whole epochs of micro_batch_size × gradient_accumulation_steps samples per step). An empty
// dataset is a UserError with `empty_message`.
class DatasetTask : public TrainTask {
 public:
  DatasetTask(const Config& config, int64_t dataset_size, const std::string& empty_message);

  int64_t total_steps() const override { return total_; }
  nlohmann::json data_cursor() const override { return cursor_.to_json(); }
  void restore_data_cursor(const nlohmann::json& cursor) override { cursor_.restore(cursor); }
  double epoch() const override;

 protected:
  data::DataCursor cursor_;
  int64_t steps_per_epoch_ = 1, total_ = 0;
};

struct LoopOptions {
  std::string resume_from;   // "" = the run dir's latest checkpoint if any
  std::string tokenizer_dir; // copied into the export (tokenizer files), may be ""
  const Tokenizer* tokenizer = nullptr;  // its hf_export_files() go into the export; may be null
  int rank = 0;
  Reducer* reducer = nullptr;  // all-reduce of the step's units; nullptr = `group`'s, or single process
  // Data parallelism (dist/data_parallel.h): parameters broadcast from rank 0 at the start,
  // gradients summed over ranks after each step's backward, the loss and metrics reduced, rank 0
  // alone evaluating, checkpointing and exporting while the others wait. nullptr = single process.
  dist::Group* group = nullptr;
};

// What the loop did, for the caller's summary.
struct LoopResult {
  int64_t first_step = 0;   // first step run by this process (resume point + 1)
  int64_t last_step = 0;
  StepMetrics last_metrics;
  std::string export_dir;   // "" if not exported
};

// Runs `task` on `model` (whose parameters are trained in place) to train.max_steps / the task's
// total. Throws UserError for a checkpoint that does not fit, NonFiniteStop for exit 3.
LoopResult run_training(const Config& config, const RunDir& run_dir, Transformer& model, TrainTask& task,
                        const LoopOptions& options);

// The usual call of a trainer: the session's model, its tokenizer copied into the export, and
// the final held-out accuracy logged when the task measured one.
LoopResult run_training(const Config& config, const RunDir& run_dir, ModelSession& session, TrainTask& task,
                        const std::string& resume_from);

}  // namespace scorch

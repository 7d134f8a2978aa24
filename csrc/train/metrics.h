// Run-directory logs (DESIGN.md "Run directory and metrics"): metrics.jsonl, one JSON object per
// logged step, and samples.jsonl, a few decoded rollouts per log step. Only rank 0 writes; other
// ranks get loggers that do nothing. Every line is flushed as it is written, so `tail -f` and
// tools/plot see it at once and a crash loses at most the line being written.
//
// Resume: the constructor keeps the lines with step <= `keep_through_step` (the step of the
// checkpoint the run resumed from; -1 for a fresh start keeps nothing) and drops the rest, plus a
// torn last line, so the curves of a resumed run do not hold the same step twice.
//
// Metric names follow TRL where it has one (the constants below); NaN/Inf values are written as
// null (JSON has no NaN) — tools/plot skips them.
#pragma once
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "common/stopwatch.h"

namespace scorch {

namespace metric {
inline constexpr const char* kStep = "step";
inline constexpr const char* kEpoch = "epoch";
inline constexpr const char* kLoss = "loss";
inline constexpr const char* kGradNorm = "grad_norm";
inline constexpr const char* kLearningRate = "learning_rate";
inline constexpr const char* kNumTokens = "num_tokens";
inline constexpr const char* kReward = "reward";
inline constexpr const char* kRewardStd = "reward_std";
inline constexpr const char* kFracRewardZeroStd = "frac_reward_zero_std";
inline constexpr const char* kKl = "kl";
inline constexpr const char* kEntropy = "entropy";
inline constexpr const char* kClipRatio = "clip_ratio";
inline constexpr const char* kCompletionsMeanLength = "completions/mean_length";
inline constexpr const char* kEvalLoss = "eval_loss";
inline constexpr const char* kEvalAccuracy = "eval_accuracy";
inline constexpr const char* kSkippedSteps = "nonfinite_skipped_steps";
// rewards/<name>/mean
std::string reward_mean(const std::string& reward_name);
}  // namespace metric

// One JSON object per line, appended and flushed; the shared engine of the two loggers.
class JsonlLog {
 public:
  // rank != 0: inactive (every call is a no-op). Creates `path`'s file if needed; on an existing
  // file keeps only the lines whose "step" <= keep_through_step (see above).
  JsonlLog(std::string path, int rank, int64_t keep_through_step);
  ~JsonlLog();
  JsonlLog(const JsonlLog&) = delete;
  JsonlLog& operator=(const JsonlLog&) = delete;

  void write(const nlohmann::json& object);
  bool active() const { return file_ != nullptr; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
};

class MetricsLogger {
 public:
  MetricsLogger(const std::string& run_dir, int rank, int64_t keep_through_step = -1);
  // {"step": step, <values in key order>}. The same key twice in a run is fine (a curve).
  void log(int64_t step, const std::map<std::string, double>& values);
  void log(int64_t step, const nlohmann::json& values);  // values: an object; step is added first
  const std::string& path() const { return log_.path(); }

 private:
  JsonlLog log_;
};

class SamplesLogger {
 public:
  SamplesLogger(const std::string& run_dir, int rank, int64_t keep_through_step = -1);
  // One line: {"step": step, ...sample} (e.g. prompt, completion, reward, answer).
  void log(int64_t step, const nlohmann::json& sample);
  const std::string& path() const { return log_.path(); }

 private:
  JsonlLog log_;
};

// Wall-clock time split by phase for one step ("generation", "reward", "training"...). CUDA work is
// asynchronous: synchronise the device before a phase ends if its time must be exact.
//   TimeSplits t;  { auto s = t.measure("generation"); generate(...); }
//   metrics.log(step, t.take("time/"));  // {"time/generation": 1.23, ...}, then resets
class TimeSplits {
 public:
  class Scope {
   public:
    Scope(TimeSplits& owner, std::string phase);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    TimeSplits& owner_;
    std::string phase_;
    Stopwatch clock_;
  };
  Scope measure(const std::string& phase) { return Scope(*this, phase); }
  void add(const std::string& phase, double seconds) { seconds_[phase] += seconds; }
  double seconds(const std::string& phase) const;
  // The accumulated times with `prefix` prepended to each phase name; clears them.
  std::map<std::string, double> take(const std::string& prefix = "time/");

 private:
  std::map<std::string, double> seconds_;
};

}  // namespace scorch

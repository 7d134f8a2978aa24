// Checkpoints (DESIGN.md "Checkpoints and export"): the full state of a run, written so that a
// crash at any moment leaves the previous checkpoint loadable and `latest` pointing at a complete one.
//
// Layout of run_dir/checkpoints/:
//   step-000123/
//     model.safetensors        model tensors, HF names
//     config.json              the model's HF config (if TrainState::model_config is set)
//     optimizer.safetensors    optimizer tensors (AdamW: exp_avg/<name>, exp_avg_sq/<name>, master/<name>)
//     optimizer.json           optimizer JSON (step counts, hyper-parameters)
//     scheduler.json           the lr schedule's JSON
//     data_cursor.json         the data cursor (epoch, position, shuffle seed...)
//     rng.safetensors          torch generator states: "cpu", "cuda:<i>" (uint8)
//     rng.json                 named std::mt19937_64 states (text) and the CUDA devices saved
//     trainer_state.json       TRL-like: global_step, log_history (tail), best_metric, ... (caller's)
//     config.yaml              the resolved job config
//     checkpoint.json          manifest: format, version, step, file list — written last
//   latest                     text file: the name of the newest complete checkpoint ("step-000123")
//
// Save protocol: everything is written into step-000123.tmp-<pid>/ (each file fsynced), the
// directory is fsynced and renamed to step-000123, the parent fsynced, then `latest` is replaced
// atomically, then checkpoints beyond keep_last are deleted (only now: the new one is complete).
// A leftover *.tmp-* directory (a crash mid-save) is ignored by load() and removed by the next
// manager constructed on rank 0.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

namespace scorch {

using NamedTensors = std::map<std::string, at::Tensor>;

// Random-number generator states of a process.
struct RngStates {
  at::Tensor cpu;                                   // torch's default CPU generator (uint8)
  std::map<int, at::Tensor> cuda;                   // device index -> default CUDA generator state
  std::map<std::string, std::string> engines;       // extra std::mt19937_64 states, by purpose

  // Captures torch's CPU generator and the CUDA generators of devices this process has already
  // initialised (never creates a CUDA context). `engines` is left empty for the caller to fill.
  static RngStates capture();
  // Restores the torch generators (a CUDA state whose device is absent is skipped with a warning).
  void restore() const;
};

// std::mt19937_64 <-> text (the standard's operator<< format: exact round trip).
std::string engine_state(const std::mt19937_64& engine);
void set_engine_state(std::mt19937_64& engine, const std::string& state, const std::string& what = "rng engine");

struct TrainState {
  int64_t step = 0;
  NamedTensors model;                       // HF name -> tensor (any device; saved from the CPU)
  nlohmann::json model_config;           // HF config.json content; null = not written
  NamedTensors optimizer_tensors;
  nlohmann::json optimizer = nlohmann::json::object();
  nlohmann::json scheduler = nlohmann::json::object();
  RngStates rng;
  nlohmann::json data_cursor = nlohmann::json::object();
  std::string config_yaml;               // resolved config
  nlohmann::json trainer_state = nlohmann::json::object();  // global_step is set to `step` on save
};

class CheckpointManager {
 public:
  // keep_last <= 0 keeps every checkpoint. rank != 0 may construct one to load; only rank 0 saves.
  CheckpointManager(std::string run_dir, int64_t keep_last, int rank = 0);

  const std::string& dir() const { return dir_; }  // run_dir/checkpoints

  // Writes step-<step, 6 digits>/ as described above and returns its path. An existing directory
  // for the same step is replaced (the new one is complete before the old one is removed).
  std::string save(const TrainState& state);

  // The newest complete checkpoint: the one `latest` names, else (pointer missing or dangling)
  // the highest complete step-* directory. nullopt when there is none.
  std::optional<std::string> latest() const;

  // Loads `path`: a checkpoint directory, or "" / "latest" for latest() (UserError if none).
  // If `current_model` is given, every tensor name and shape of the checkpoint's model must match it
  // (checked from the safetensors header before any data is read): otherwise UserError naming the
  // tensor and both shapes ("resuming with a different model shape").
  TrainState load(const std::string& path = "latest", const NamedTensors* current_model = nullptr) const;

  // Copies `loaded` into the model's tensors (no autograd; dtype converted if it differs).
  // Names and shapes must match exactly (UserError otherwise).
  static void copy_into(const NamedTensors& loaded, const NamedTensors& model, const std::string& source);

  // All complete checkpoint directories, oldest step first.
  std::vector<std::string> list() const;

  // Test hook: throw std::runtime_error at a point of save() to simulate a crash there.
  enum class FailPoint { None, AfterModel, BeforeRename, BeforeLatest };
  static void set_fail_point_for_testing(FailPoint point);

 private:
  void prune(int64_t newest_step) const;
  std::string run_dir_, dir_;
  int64_t keep_last_;
  int rank_;
};

// "step-000123"
std::string checkpoint_dir_name(int64_t step);

}  // namespace scorch

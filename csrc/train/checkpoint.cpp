// Checkpoint save/load with the crash-safe protocol described in checkpoint.h.
#include "train/checkpoint.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <sstream>

#include "common/error.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/strings.h"
#include "model/safetensors.h"

namespace scorch {
namespace {
namespace stdfs = std::filesystem;

constexpr const char* kFormat = "scorch-checkpoint";
constexpr int kVersion = 1;
constexpr const char* kManifest = "checkpoint.json";

CheckpointManager::FailPoint g_fail_point = CheckpointManager::FailPoint::None;

void maybe_fail(CheckpointManager::FailPoint here, const char* what) {
  if (g_fail_point == here) throw std::runtime_error(std::string("simulated crash ") + what);
}

std::string shape_text(at::IntArrayRef sizes) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < sizes.size(); ++i) out << (i ? ", " : "") << sizes[i];
  out << "]";
  return out.str();
}

// The step of a complete-checkpoint directory name "step-<digits>", or -1.
int64_t parse_step_dir(const std::string& name) {
  if (!starts_with(name, "step-") || name.size() <= 5) return -1;
  const std::string digits = name.substr(5);
  if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) return -1;
  try {
    return std::stoll(digits);
  } catch (...) {
    return -1;
  }
}

void write_json(const std::string& path, const nlohmann::json& j) { fs::atomic_write(path, j.dump(2) + "\n"); }

nlohmann::json read_json(const std::string& path, const std::string& what) {
  const std::string text = fs::read_file(path, what);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw UserError("checkpoint file '" + path + "' (" + what + ") is not valid JSON: " + e.what() +
                    ". The checkpoint is corrupt: resume from an older one with --resume PATH");
  }
}

// Best-effort recursive delete (scorch::fs::remove_all, never std::filesystem's: see common/fs.h).
void remove_tree(const std::string& path) {
  try {
    scorch::fs::remove_all(path);
  } catch (const UserError&) {
    log::warn("could not fully delete '", path, "'");
  }
}

// rename(2): atomic within a filesystem (and, like remove_tree, independent of libtorch's exports).
void rename_or_throw(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) {
    throw UserError("cannot rename '" + from + "' to '" + to + "': " + std::strerror(errno));
  }
}

bool is_complete(const std::string& dir) { return fs::exists(dir + "/" + kManifest); }

}  // namespace

// ---- RNG -------------------------------------------------------------------------------------

RngStates RngStates::capture() {
  RngStates r;
  {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    r.cpu = gen.get_state();
  }
  const auto& hooks = at::detail::getCUDAHooks();
  if (hooks.hasCUDA()) {
    for (c10::DeviceIndex i = 0; i < hooks.deviceCount(); ++i) {
      if (!hooks.hasPrimaryContext(i)) continue;  // never initialise a device the run did not use
      auto gen = hooks.getDefaultGenerator(i);
      std::lock_guard<std::mutex> lock(gen.mutex());
      r.cuda[i] = gen.get_state();
    }
  }
  return r;
}

void RngStates::restore() const {
  if (cpu.defined()) {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(cpu);
  }
  const auto& hooks = at::detail::getCUDAHooks();
  for (const auto& [index, state] : cuda) {
    if (!hooks.hasCUDA() || index >= hooks.deviceCount()) {
      log::warn("checkpoint has the RNG state of cuda:", index, ", which this process does not have; "
                "sampling will not continue exactly");
      continue;
    }
    auto gen = hooks.getDefaultGenerator(static_cast<c10::DeviceIndex>(index));
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(state);
  }
}

std::string engine_state(const std::mt19937_64& engine) {
  std::ostringstream out;
  out << engine;
  return out.str();
}

void set_engine_state(std::mt19937_64& engine, const std::string& state, const std::string& what) {
  std::istringstream in(state);
  std::mt19937_64 parsed;
  in >> parsed;
  if (in.fail()) throw UserError("checkpoint: the state of " + what + " is corrupt (not an mt19937_64 state)");
  engine = parsed;
}

// ---- CheckpointManager -----------------------------------------------------------------------

std::string checkpoint_dir_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "step-%06lld", static_cast<long long>(step));
  return buf;
}

void CheckpointManager::set_fail_point_for_testing(FailPoint point) { g_fail_point = point; }

CheckpointManager::CheckpointManager(std::string run_dir, int64_t keep_last, int rank)
    : run_dir_(std::move(run_dir)), dir_(run_dir_ + "/checkpoints"), keep_last_(keep_last), rank_(rank) {
  if (rank_ != 0 || !fs::is_directory(dir_)) return;
  // Debris of a crash mid-save: step-N.tmp-<pid> is half written (drop it); step-N.old-<pid> is a
  // complete checkpoint moved aside while a same-step save replaced it (restore it if the
  // replacement never arrived, else drop it).
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : stdfs::directory_iterator(dir_, ec)) {
    if (entry.is_directory(ec)) names.push_back(entry.path().filename().string());
  }
  for (const auto& name : names) {
    const std::string path = dir_ + "/" + name;
    const auto old = name.find(".old-");
    if (name.find(".tmp-") != std::string::npos) {
      log::info("removing an incomplete checkpoint left by a crash: ", path);
      remove_tree(path);
    } else if (old != std::string::npos) {
      const std::string original = dir_ + "/" + name.substr(0, old);
      if (!fs::exists(original)) {
        if (::rename(path.c_str(), original.c_str()) != 0) log::warn("could not restore ", original);
      } else {
        remove_tree(path);
      }
    }
  }
}

std::string CheckpointManager::save(const TrainState& state) {
  if (rank_ != 0) return "";
  fs::make_directories(dir_);
  const std::string name = checkpoint_dir_name(state.step);
  const std::string final_dir = dir_ + "/" + name;
  const std::string tmp = final_dir + ".tmp-" + std::to_string(::getpid());
  remove_tree(tmp);
  fs::make_directories(tmp);
  try {
    std::vector<std::string> files;
    auto file = [&](const std::string& f) {
      files.push_back(f);
      return tmp + "/" + f;
    };
    safetensors::save(file("model.safetensors"), state.model, {{"format", "pt"}});
    maybe_fail(FailPoint::AfterModel, "after writing model.safetensors");
    if (!state.model_config.is_null()) write_json(file("config.json"), state.model_config);
    safetensors::save(file("optimizer.safetensors"), state.optimizer_tensors, {{"format", "pt"}});
    write_json(file("optimizer.json"), state.optimizer);
    write_json(file("scheduler.json"), state.scheduler);
    write_json(file("data_cursor.json"), state.data_cursor);

    NamedTensors rng_tensors;
    if (state.rng.cpu.defined()) rng_tensors.emplace("cpu", state.rng.cpu);
    nlohmann::json rng_json = {{"engines", state.rng.engines}, {"cuda_devices", nlohmann::json::array()}};
    for (const auto& [index, t] : state.rng.cuda) {
      rng_tensors.emplace("cuda:" + std::to_string(index), t);
      rng_json["cuda_devices"].push_back(index);
    }
    safetensors::save(file("rng.safetensors"), rng_tensors);
    write_json(file("rng.json"), rng_json);

    nlohmann::json trainer_state = state.trainer_state.is_object() ? state.trainer_state : nlohmann::json::object();
    trainer_state["global_step"] = state.step;
    write_json(file("trainer_state.json"), trainer_state);
    fs::atomic_write(file("config.yaml"), state.config_yaml);
    // The manifest last: its presence marks the directory complete.
    write_json(tmp + "/" + kManifest, {{"format", kFormat}, {"version", kVersion}, {"step", state.step}, {"files", files}});
    fs::sync_directory(tmp);
    maybe_fail(FailPoint::BeforeRename, "before renaming the checkpoint directory");

    if (fs::exists(final_dir)) {
      // Same step saved again: move the old one aside first (a crash now leaves it restorable).
      const std::string old = final_dir + ".old-" + std::to_string(::getpid());
      remove_tree(old);
      rename_or_throw(final_dir, old);
      rename_or_throw(tmp, final_dir);
      fs::sync_directory(dir_);
      remove_tree(old);
    } else {
      rename_or_throw(tmp, final_dir);
    }
    fs::sync_directory(dir_);
  } catch (...) {
    remove_tree(tmp);  // best effort; a real crash leaves it for the next constructor
    throw;
  }
  maybe_fail(FailPoint::BeforeLatest, "before updating `latest`");
  fs::atomic_write(dir_ + "/latest", name + "\n");
  prune(state.step);
  return final_dir;
}

std::vector<std::string> CheckpointManager::list() const {
  std::vector<std::pair<int64_t, std::string>> found;
  std::error_code ec;
  if (!fs::is_directory(dir_)) return {};
  for (const auto& entry : stdfs::directory_iterator(dir_, ec)) {
    const int64_t step = parse_step_dir(entry.path().filename().string());
    if (step >= 0 && entry.is_directory(ec) && is_complete(entry.path().string())) {
      found.emplace_back(step, entry.path().string());
    }
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  for (auto& f : found) out.push_back(std::move(f.second));
  return out;
}

std::optional<std::string> CheckpointManager::latest() const {
  const std::string pointer = dir_ + "/latest";
  if (fs::exists(pointer)) {
    const std::string name = trim(fs::read_file(pointer, "checkpoint pointer"));
    const std::string path = dir_ + "/" + name;
    if (parse_step_dir(name) >= 0 && is_complete(path)) return path;
    log::warn("checkpoints/latest names '", name, "', which is not a complete checkpoint; using the newest complete one");
  }
  auto all = list();
  if (all.empty()) return std::nullopt;
  return all.back();
}

void CheckpointManager::prune(int64_t newest_step) const {
  if (keep_last_ <= 0) return;
  std::vector<std::string> older;
  for (const auto& path : list()) {
    const int64_t step = parse_step_dir(stdfs::path(path).filename().string());
    if (step < newest_step) older.push_back(path);
  }
  // The new checkpoint counts as one of the K kept; checkpoints of later steps (a run resumed from
  // an earlier checkpoint) are never deleted here.
  const size_t keep_older = static_cast<size_t>(keep_last_ - 1);
  if (older.size() <= keep_older) return;
  for (size_t i = 0; i + keep_older < older.size(); ++i) remove_tree(older[i]);
}

void CheckpointManager::copy_into(const NamedTensors& loaded, const NamedTensors& model, const std::string& source) {
  for (const auto& [name, t] : loaded) {
    if (!model.count(name)) {
      throw UserError(source + " has tensor '" + name + "', which the current model does not have: "
                      "resuming with a different model. Fix: use the model the run was started with");
    }
  }
  at::NoGradGuard no_grad;
  for (const auto& [name, dst] : model) {
    auto it = loaded.find(name);
    if (it == loaded.end()) {
      throw UserError(source + " lacks tensor '" + name + "' of the current model: resuming with a different model");
    }
    if (!it->second.sizes().equals(dst.sizes())) {
      throw UserError(source + ": tensor '" + name + "' has shape " + shape_text(it->second.sizes()) +
                      " but the current model has " + shape_text(dst.sizes()) +
                      ": resuming with a different model shape. Fix: use the model config the run was started with, "
                      "or start a new run directory");
    }
    const_cast<at::Tensor&>(dst).copy_(it->second);
  }
}

TrainState CheckpointManager::load(const std::string& path_in, const NamedTensors* current_model) const {
  std::string path = path_in;
  if (path.empty() || path == "latest") {
    auto found = latest();
    if (!found) throw UserError("no checkpoint to resume from in '" + dir_ + "'");
    path = *found;
  }
  if (!fs::is_directory(path)) throw UserError("checkpoint '" + path + "' is not a directory");
  if (!is_complete(path)) {
    throw UserError("'" + path + "' is not a complete scorch checkpoint (no " + kManifest +
                    "): it was never finished or is not a checkpoint. Resume from another with --resume PATH");
  }
  const nlohmann::json manifest = read_json(path + "/" + kManifest, "manifest");
  if (!manifest.is_object() || manifest.value("format", "") != kFormat || !manifest.contains("step") ||
      !manifest["step"].is_number_integer() || !manifest.contains("files") || !manifest["files"].is_array()) {
    throw UserError("checkpoint manifest '" + path + "/" + kManifest + "' is corrupt (needs format, step, files)");
  }
  if (manifest.value("version", 0) > kVersion) {
    throw UserError("checkpoint '" + path + "' has format version " + std::to_string(manifest.value("version", 0)) +
                    "; this scorch reads up to " + std::to_string(kVersion) + ": update scorch");
  }
  for (const auto& f : manifest["files"]) {
    const std::string file = path + "/" + f.get<std::string>();
    if (!fs::exists(file)) throw UserError("checkpoint '" + path + "' is missing '" + f.get<std::string>() + "' (corrupt checkpoint)");
  }
  const std::string model_file = path + "/model.safetensors";
  if (current_model) {
    const auto header = safetensors::read_header(model_file);
    for (const auto& [name, info] : header) {
      auto it = current_model->find(name);
      if (it == current_model->end()) {
        throw UserError("checkpoint '" + path + "' has tensor '" + name + "', which the current model does not have: "
                        "resuming with a different model. Fix: use the model the run was started with");
      }
      if (!it->second.sizes().equals(info.shape)) {
        throw UserError("checkpoint '" + path + "': tensor '" + name + "' has shape " + shape_text(info.shape) +
                        " but the current model has " + shape_text(it->second.sizes()) +
                        ": resuming with a different model shape. Fix: use the model config the run was started "
                        "with, or start a new run directory");
      }
    }
    for (const auto& [name, t] : *current_model) {
      if (!header.count(name)) {
        throw UserError("checkpoint '" + path + "' lacks tensor '" + name + "' of the current model: "
                        "resuming with a different model");
      }
    }
  }

  TrainState s;
  s.step = manifest["step"].get<int64_t>();
  s.model = safetensors::load(model_file);
  if (fs::exists(path + "/config.json")) s.model_config = read_json(path + "/config.json", "model config");
  s.optimizer_tensors = safetensors::load(path + "/optimizer.safetensors");
  s.optimizer = read_json(path + "/optimizer.json", "optimizer state");
  s.scheduler = read_json(path + "/scheduler.json", "scheduler state");
  s.data_cursor = read_json(path + "/data_cursor.json", "data cursor");
  s.trainer_state = read_json(path + "/trainer_state.json", "trainer state");
  s.config_yaml = fs::read_file(path + "/config.yaml", "checkpoint config");

  const nlohmann::json rng_json = read_json(path + "/rng.json", "rng state");
  NamedTensors rng = safetensors::load(path + "/rng.safetensors");
  try {
    if (auto it = rng.find("cpu"); it != rng.end()) s.rng.cpu = it->second;
    for (const auto& index : rng_json.at("cuda_devices")) {
      const int i = index.get<int>();
      auto it = rng.find("cuda:" + std::to_string(i));
      if (it == rng.end()) throw UserError("checkpoint '" + path + "': rng.safetensors lacks cuda:" + std::to_string(i));
      s.rng.cuda[i] = it->second;
    }
    s.rng.engines = rng_json.at("engines").get<std::map<std::string, std::string>>();
  } catch (const nlohmann::json::exception& e) {
    throw UserError("checkpoint '" + path + "': rng.json is corrupt: " + e.what());
  }
  return s;
}

}  // namespace scorch

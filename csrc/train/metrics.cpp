// metrics.jsonl / samples.jsonl writers and the time-split helper (see metrics.h).
#include "train/metrics.h"

#include <cmath>
#include <sstream>

#include "common/error.h"
#include "common/fs.h"
#include "common/log.h"

namespace scorch {

std::string metric::reward_mean(const std::string& reward_name) { return "rewards/" + reward_name + "/mean"; }

namespace {
// JSON has no NaN/Inf: write them as null rather than producing an unparsable line. Strings are kept
// as they are; write() replaces invalid UTF-8 when it dumps the line.
nlohmann::ordered_json sanitize(const nlohmann::json& j) {
  if (j.is_number_float()) {
    const double v = j.get<double>();
    return std::isfinite(v) ? nlohmann::ordered_json(v) : nlohmann::ordered_json(nullptr);
  }
  if (j.is_object()) {
    nlohmann::ordered_json out = nlohmann::ordered_json::object();
    if (j.contains("step")) out["step"] = sanitize(j["step"]);  // first, for people reading the file
    for (const auto& [k, v] : j.items()) {
      if (k != "step") out[k] = sanitize(v);
    }
    return out;
  }
  if (j.is_array()) {
    nlohmann::ordered_json out = nlohmann::ordered_json::array();
    for (const auto& v : j) out.push_back(sanitize(v));
    return out;
  }
  return nlohmann::ordered_json(j);
}
}  // namespace

JsonlLog::JsonlLog(std::string path, int rank, int64_t keep_through_step) : path_(std::move(path)) {
  if (rank != 0) return;
  if (fs::exists(path_)) {
    const std::string text = fs::read_file(path_, "log");
    std::string kept;
    size_t dropped = 0;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      const bool keep = j.is_object() && j.contains("step") && j["step"].is_number_integer() &&
                        j["step"].get<int64_t>() <= keep_through_step;
      if (keep) {
        kept += line + "\n";
      } else {
        ++dropped;
      }
    }
    if (kept != text) {
      fs::atomic_write(path_, kept);
      if (dropped) log::info("resume: dropped ", dropped, " line(s) after step ", keep_through_step, " from ", path_);
    }
  }
  file_ = std::fopen(path_.c_str(), "a");
  if (!file_) throw UserError("cannot open '" + path_ + "' for appending (is the run directory writable?)");
}

JsonlLog::~JsonlLog() {
  if (file_) std::fclose(file_);
}

void JsonlLog::write(const nlohmann::json& object) {
  if (!file_) return;
  // Completions may hold invalid UTF-8 (byte-fallback pieces): replaced by U+FFFD here, in keys and
  // values alike, never thrown.
  const std::string line = sanitize(object).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  if (std::fwrite(line.data(), 1, line.size(), file_) != line.size() || std::fflush(file_) != 0) {
    log::warn("could not append to ", path_, " (disk full?); metrics of this step are lost");
  }
}

MetricsLogger::MetricsLogger(const std::string& run_dir, int rank, int64_t keep_through_step)
    : log_(run_dir + "/metrics.jsonl", rank, keep_through_step) {}

void MetricsLogger::log(int64_t step, const std::map<std::string, double>& values) {
  if (!log_.active()) return;
  nlohmann::json line(values);
  line["step"] = step;
  log_.write(line);
}

void MetricsLogger::log(int64_t step, const nlohmann::json& values) {
  if (!log_.active()) return;
  nlohmann::json line = values.is_object() ? values : nlohmann::json::object();
  line["step"] = step;
  log_.write(line);
}

SamplesLogger::SamplesLogger(const std::string& run_dir, int rank, int64_t keep_through_step)
    : log_(run_dir + "/samples.jsonl", rank, keep_through_step) {}

void SamplesLogger::log(int64_t step, const nlohmann::json& sample) {
  if (!log_.active()) return;
  nlohmann::json line = sample.is_object() ? sample : nlohmann::json{{"sample", sample}};
  line["step"] = step;
  log_.write(line);
}

TimeSplits::Scope::Scope(TimeSplits& owner, std::string phase) : owner_(owner), phase_(std::move(phase)) {}

TimeSplits::Scope::~Scope() { owner_.add(phase_, clock_.seconds()); }

double TimeSplits::seconds(const std::string& phase) const {
  auto it = seconds_.find(phase);
  return it == seconds_.end() ? 0.0 : it->second;
}

std::map<std::string, double> TimeSplits::take(const std::string& prefix) {
  std::map<std::string, double> out;
  for (const auto& [k, v] : seconds_) out[prefix + k] = v;
  seconds_.clear();
  return out;
}

}  // namespace scorch

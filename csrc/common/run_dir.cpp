#include "common/run_dir.h"

#include "common/error.h"
#include "common/fs.h"
#include "common/strings.h"

namespace scorch {

RunDir prepare_run_dir(const std::string& path, const std::string& resolved, bool allow_config_change) {
  RunDir dir;
  dir.path = path;
  const std::string config_path = path + "/config.yaml";
  if (fs::exists(path) && !fs::is_directory(path)) {
    throw UserError("run directory '" + path + "' exists and is not a directory; choose another --run-dir");
  }
  // A job that stopped before it wrote anything but its config (a bad tokenizer, model or data
  // found while starting) left nothing to resume or protect: a corrected config takes its place.
  const auto nothing_written = [&] {
    for (const char* artifact : {"/metrics.jsonl", "/checkpoints", "/export"}) {
      if (fs::exists(path + artifact)) return false;
    }
    return true;
  };
  if (fs::exists(config_path)) {
    const std::string existing = fs::read_file(config_path, "run config");
    if (existing != resolved && !allow_config_change && !nothing_written()) {
      const auto a = split(existing, '\n'), b = split(resolved, '\n');
      size_t i = 0;
      while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
      const std::string was = i < a.size() ? trim(a[i]) : "(end of file)";
      const std::string now = i < b.size() ? trim(b[i]) : "(end of file)";
      throw UserError("run directory '" + path + "' belongs to another job: its config.yaml differs at line " +
                      std::to_string(i + 1) + " (there: '" + was + "', now: '" + now +
                      "'). Use a new --run-dir, or run the original config to resume that job.");
    }
    dir.resuming = existing == resolved || allow_config_change;
  }
  fs::make_directories(path);
  fs::atomic_write(config_path, resolved);
  return dir;
}

}  // namespace scorch

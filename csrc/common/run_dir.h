// The run directory of a job (DESIGN.md "Run directory and metrics"). A directory that already
// holds another job's resolved config is never overwritten: running the same config again resumes
// it; a different config is refused with the first differing line -- unless the job never wrote
// anything else (no metrics.jsonl, checkpoints/ or export/: it failed while starting), whose config
// the new one replaces.
#pragma once
#include <string>

namespace scorch {

struct RunDir {
  std::string path;
  bool resuming = false;  // the directory existed with the same resolved config
};

// Creates `path` (if needed) and writes `resolved_config_yaml` to path/config.yaml atomically.
// Throws UserError if path/config.yaml exists with different content, unless `allow_config_change`
// (an explicit --resume with an edited config).
RunDir prepare_run_dir(const std::string& path, const std::string& resolved_config_yaml, bool allow_config_change = false);

}  // namespace scorch

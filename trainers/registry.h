// Dispatch from the config's `trainer:` name to the trainer that runs it.
#pragma once
#include <string>

#include "common/run_dir.h"
#include "config/config.h"

namespace scorch::trainers {

struct RunOptions {
  std::string resume_from;  // --resume PATH (a checkpoint directory); empty = latest in run dir
};

// Runs the job to completion. Throws UserError for bad input, NonFiniteStop for exit 3.
void run(const Config& config, const RunDir& run_dir, const RunOptions& options);

}  // namespace scorch::trainers

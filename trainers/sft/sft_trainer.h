// SFT (ALGORITHMS.md §1): token-level NLL over completion tokens only, EOS included, normalised
// by the completion tokens of the whole optimizer step.
#pragma once

#include "trainers/registry.h"

namespace scorch::trainers {

void run_sft(const Config& config, const RunDir& run_dir, const RunOptions& options);

}  // namespace scorch::trainers

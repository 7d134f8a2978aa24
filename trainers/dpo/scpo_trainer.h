// ScPO (ALGORITHMS.md §3), `trainer: scpo`: iterative rounds M0 → M1 → … on unlabelled prompts.
// Round r (run_dir/round-r/):
//   1. pairs.jsonl  <- build_scpo_pairs(M_{r−1}, data.train prompts, τ_r)   (scpo_pairs.h)
//      pairs_metrics.json: kept fraction, vote-margin histogram (gold pairs: correct-count
//      histogram), chosen accuracy when gold exists
//   2. train M_{r−1} on the pairs with L = −w·log σ(β h) − (α·w/|y+|)·log π(y+), reference = M_{r−1}
//      (the model that sampled), through the DPO task (dpo_trainer.h) -> round-r/export = M_r
// τ_r = scpo.round_thresholds[r−1] (fraction of scpo.num_samples), else scpo.threshold. With
// scpo.pairs: gold the pairs come from the prompts' gold answers instead of the vote (no τ; every
// prompt must have an `answer`, checked before round 1 samples anything). Each round
// runs train.max_steps (or train.epochs over its pairs). Re-running the command resumes: finished
// rounds are skipped, a round's pairs are reused, its training resumes from its checkpoints.
// The final model is copied to run_dir/export.
#pragma once

#include "trainers/registry.h"

namespace scorch::trainers {

void run_scpo(const Config& config, const RunDir& run_dir, const RunOptions& options);

}  // namespace scorch::trainers

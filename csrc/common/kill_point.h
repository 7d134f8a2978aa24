// A testing hook, not a user setting: named points where a test can make the process die by
// SIGKILL, exactly like a real kill (no destructors, no flushing, no cleanup). Polling from outside
// cannot land reliably inside a short phase such as an export's rename or a stage boundary; these
// points make those crashes deterministic so the crash-and-resume tests can reach them.
//
// SCORCH_KILL_AT=NAME      kills at the first time the process passes kill_point("NAME");
// SCORCH_KILL_AT=NAME:N    kills at the N-th time (N >= 1; each name is counted per process).
// Unset (or naming no point reached) the points do nothing but compare a string.
//
// The points (where, and what a kill there leaves behind):
//   export             export_hf_model, save_peft_adapter (a LoRA run's export), and ScPO's copy of
//                      its last round to run_dir/export:
//                      every file of the export is written into its staging directory beside
//                      the output, which is not yet in place
//   before-checkpoint  the training loop, after an optimizer step, right before its checkpoint
//   after-checkpoint   the training loop, right after a checkpoint and `latest` are written
//                      (a forced checkpoint such as SCoRe's Stage I → II boundary counts too)
//   scpo-pairs         ScPO, right after a round's pairs.jsonl is written
#pragma once

namespace scorch {

void kill_point(const char* name);

}  // namespace scorch

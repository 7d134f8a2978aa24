#include "trainers/registry.h"

#include "common/error.h"
#include "trainers/dpo/dpo_trainer.h"
#include "trainers/dpo/scpo_trainer.h"
#include "trainers/grpo/grpo_trainer.h"
#include "trainers/score/score_trainer.h"
#include "trainers/sft/sft_trainer.h"

namespace scorch::trainers {

void run(const Config& config, const RunDir& run_dir, const RunOptions& options) {
  if (config.trainer == "sft") return run_sft(config, run_dir, options);
  if (config.trainer == "grpo") return run_grpo(config, run_dir, options);
  if (config.trainer == "dpo") return run_dpo(config, run_dir, options);
  if (config.trainer == "scpo") return run_scpo(config, run_dir, options);
  if (config.trainer == "score") return run_score(config, run_dir, options);
  // The config schema lists the trainer names; one it accepts that nothing here runs is not built.
  throw NotImplemented("the `" + config.trainer + "` trainer");
}

}  // namespace scorch::trainers

// Subcommands whose issues have not landed yet. When one lands, its register_* moves to its own
// cmd_<name>.cpp and the line here goes away.
#include "cli/commands.h"

namespace scorch::cli {

void register_generate(CLI::App& app) { register_not_implemented(app, "generate", "Sample completions from a model (rollout engine)"); }
void register_eval(CLI::App& app) { register_not_implemented(app, "eval", "Greedy accuracy of a model on a dataset with answers"); }
void register_export(CLI::App& app) { register_not_implemented(app, "export", "Export a checkpoint to a HuggingFace directory"); }
void register_init_model(CLI::App& app) { register_not_implemented(app, "init-model", "Write a randomly initialised HF model directory"); }
void register_reward(CLI::App& app) { register_not_implemented(app, "reward", "Score completions offline with a rewards config"); }

}  // namespace scorch::cli

// Each subcommand registers itself on the CLI11 app from its own file (cmd_<name>.cpp), so the
// binary's main only parses and dispatches. A registered callback throws UserError for bad input.
#pragma once

namespace CLI {
class App;
}

namespace scorch::cli {

void register_train(CLI::App& app);
void register_generate(CLI::App& app);
void register_eval(CLI::App& app);
void register_export(CLI::App& app);
void register_init_model(CLI::App& app);
void register_reward(CLI::App& app);
void register_version(CLI::App& app);
void register_make_data(CLI::App& app);

// For subcommands whose issue has not landed: accepts any arguments and fails with exit 2.
void register_not_implemented(CLI::App& app, const char* name, const char* what);

}  // namespace scorch::cli

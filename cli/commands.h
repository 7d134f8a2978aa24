// Each subcommand registers itself on the CLI11 app from its own file (cmd_<name>.cpp), so the
// binary's main only parses and dispatches. A registered callback throws UserError for bad input.
#pragma once
#include <string>

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

// An output directory a command is about to write: an existing non-empty one is replaced only with
// --force (UserError otherwise); the replacement itself is staged (fs::StagedDirectory).
void check_output_directory(const std::string& dir, bool force);
// A CLI11 check for path options: "" passes, an empty value is refused with a message.
std::string non_empty_path(const std::string& value);

}  // namespace scorch::cli

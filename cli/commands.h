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
// True when `output` names the file `input` (same path, or the same file by another path or link):
// writing the output would replace the input, so the commands refuse it.
bool same_file(const std::string& input, const std::string& output);
// A CLI11 check for path options: "" passes, an empty value is refused with a message.
std::string non_empty_path(const std::string& value);
// CLI11 checks for numbers, with messages that quote the value ("must be >= 0, got -1") where
// CLI::NonNegativeNumber / PositiveNumber print the range up to DBL_MAX in 300 digits.
std::string non_negative_number(const std::string& value);
std::string positive_number(const std::string& value);

}  // namespace scorch::cli

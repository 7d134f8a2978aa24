// Each subcommand registers itself on the CLI11 app from its own file (cmd_<name>.cpp), so the
// binary's main only parses and dispatches. A registered callback throws UserError for bad input.
#pragma once
#include <map>
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

// What an export writes in place of the tokenizer file of `source` (a tokenizer directory or file;
// "" = none): a tiktoken rank file becomes tokenizer.json (+ tokenizer_config.json), loaded with
// `tiktoken_pattern` ("" = the known vocabulary's); empty for files transformers reads as they are.
// Checked before anything is written: an unknown rank file without a pattern is a UserError.
std::map<std::string, std::string> tokenizer_export_files(const std::string& source, const std::string& tiktoken_pattern);
// The --tiktoken-pattern option (eval, generate, export, init-model).
inline constexpr const char* kTiktokenPatternHelp =
    "Pre-tokenizer regex (or a known name: llama3, qwen, r50k_base, cl100k_base, o200k_base) for a tiktoken rank file "
    "scorch does not recognise (tokenizer.tiktoken_pattern)";

}  // namespace scorch::cli

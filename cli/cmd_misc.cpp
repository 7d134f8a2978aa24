// `scorch version`, and checks shared by the subcommands.
#include <CLI/CLI.hpp>
#include <torch/version.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>

#include "cli/commands.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/strings.h"
#include "tokenizer/tokenizer.h"

namespace scorch::cli {

void register_version(CLI::App& app) {
  auto* cmd = app.add_subcommand("version", "Print scorch, torch and CUDA build versions");
  cmd->callback([] {
#ifdef SCORCH_WITH_CUDA
    const char* cuda = "compiled in";
#else
    const char* cuda = "not compiled (CPU-only build)";
#endif
    std::printf("scorch %s\ntorch %s\nCUDA kernels: %s\n", SCORCH_VERSION_STRING, TORCH_VERSION, cuda);
  });
}

void check_output_directory(const std::string& dir, bool force) {
  if (dir.empty()) throw UserError("--out is empty; name an output directory");
  if (fs::exists(dir) && !fs::is_directory(dir)) {
    throw UserError("--out '" + dir + "' exists and is not a directory; choose another path");
  }
  if (!force && fs::is_nonempty_directory(dir)) {
    throw UserError("--out '" + dir + "' is not empty; pass --force to replace it (it is replaced whole, only "
                    "after the new directory has been written completely), or choose another directory");
  }
}

bool same_file(const std::string& input, const std::string& output) {
  std::error_code ec;
  return input == output || std::filesystem::equivalent(input, output, ec);
}

std::string non_empty_path(const std::string& value) {
  return value.empty() ? std::string("the path is empty; name a file or directory") : std::string();
}

namespace {
// "" when `value` is a number that passes `ok`, else the message.
std::string number_check(const std::string& value, bool (*ok)(double), const char* need) {
  char* end = nullptr;
  const double x = std::strtod(value.c_str(), &end);
  if (end == value.c_str() || *end != '\0') return "'" + shorten(value) + "' is not a number";
  return ok(x) ? std::string() : std::string("must be ") + need + ", got " + shorten(value);
}
}  // namespace

std::string non_negative_number(const std::string& value) {
  return number_check(value, [](double x) { return x >= 0; }, ">= 0");
}

std::string positive_number(const std::string& value) {
  return number_check(value, [](double x) { return x > 0; }, "> 0");
}

std::map<std::string, std::string> tokenizer_export_files(const std::string& source, const std::string& tiktoken_pattern) {
  if (source.empty() || (fs::is_directory(source) && !has_tokenizer_file(source))) {
    if (!tiktoken_pattern.empty()) throw UserError("--tiktoken-pattern needs a tiktoken rank file to export, and there is none");
    return {};
  }
  const std::string file = tokenizer_file_of(source);
  if (!is_tiktoken_file(file)) {
    if (!tiktoken_pattern.empty()) {
      throw UserError("--tiktoken-pattern applies to tiktoken rank files, and '" + file + "' is not one. Fix: remove it");
    }
    return {};
  }
  TokenizerOptions options;
  options.tiktoken_pattern = tiktoken_pattern;
  return load_tokenizer(file, options)->hf_export_files();
}

}  // namespace scorch::cli

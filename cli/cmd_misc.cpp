// `scorch version`, and checks shared by the subcommands.
#include <CLI/CLI.hpp>
#include <torch/version.h>

#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "common/error.h"
#include "common/fs.h"

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

std::string non_empty_path(const std::string& value) {
  return value.empty() ? std::string("the path is empty; name a file or directory") : std::string();
}

}  // namespace scorch::cli

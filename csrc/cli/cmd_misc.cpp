// `scorch version`, and the placeholder for subcommands whose issue has not landed.
#include <CLI/CLI.hpp>
#include <torch/version.h>

#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "common/error.h"

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

void register_not_implemented(CLI::App& app, const char* name, const char* what) {
  auto* cmd = app.add_subcommand(name, std::string(what) + " [not implemented yet]");
  cmd->allow_extras();
  cmd->footer("This subcommand is not implemented yet: it exits with code 2.");
  const std::string n = name;
  cmd->callback([n] { throw NotImplemented("`scorch " + n + "`"); });
}

}  // namespace scorch::cli

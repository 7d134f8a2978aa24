// The `scorch` binary: parse, dispatch, and map failures to exit codes (DESIGN.md): user errors 2,
// internal errors 1, a run stopped by the non-finite policy 3. No stack traces for user errors.
#include <CLI/CLI.hpp>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <new>
#include <string>

#include "cli/commands.h"
#include "common/error.h"
#include "common/strings.h"

namespace {
const char* kLessMemory =
    "The job asked for more memory than there is. Lower what sizes it: train.micro_batch_size, "
    "data.max_length, generation.max_completion_length / --max-new-tokens, grpo.num_generations / --n, "
    "--batch-size, or use a smaller model or dtype.";
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"scorch: native C++/CUDA post-training for language models (SFT, DPO/ScPO, GRPO, SCoRe)", "scorch"};
  app.require_subcommand(1);
  app.fallthrough(false);
  app.set_help_all_flag("--help-all", "Print help for every subcommand");
  scorch::cli::register_train(app);
  scorch::cli::register_generate(app);
  scorch::cli::register_eval(app);
  scorch::cli::register_export(app);
  scorch::cli::register_init_model(app);
  scorch::cli::register_reward(app);
  scorch::cli::register_version(app);
  scorch::cli::register_make_data(app);
  if (argc > 1 && argv[1][0] == '-') {
    const std::string flag = argv[1];
    if (flag != "-h" && flag != "--help" && flag != "--help-all") {
      std::fprintf(stderr, "error: unknown option '%s': scorch takes a command first (scorch <command> [options])\n"
                           "Run `scorch --help` for the list of commands.\n", scorch::shorten(flag).c_str());
      return scorch::kExitUser;
    }
  }
  if (argc > 1 && argv[1][0] != '-') {
    std::vector<std::string> names;
    for (const auto* sub : app.get_subcommands({})) names.push_back(sub->get_name());
    if (std::find(names.begin(), names.end(), argv[1]) == names.end()) {
      const std::string hint = scorch::nearest(argv[1], names);
      std::fprintf(stderr, "error: unknown command '%s'%s\nRun `scorch --help` for the list of commands.\n", argv[1],
                   hint.empty() ? "" : (" (did you mean '" + hint + "'?)").c_str());
      return scorch::kExitUser;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "error: %s\nRun `scorch --help` (or `scorch <command> --help`) for usage.\n", e.what());
    return scorch::kExitUser;
  } catch (const scorch::NonFiniteStop& e) {
    std::fprintf(stderr, "stopped: %s\n", e.what());
    return scorch::kExitNonFinite;
  } catch (const scorch::UserError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return scorch::kExitUser;
  } catch (const c10::OutOfMemoryError& e) {
    std::fprintf(stderr, "error: out of device memory: %s\n%s\n", scorch::shorten(e.what_without_backtrace(), 300).c_str(),
                 kLessMemory);
    return scorch::kExitUser;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "error: out of memory\n%s\n", kLessMemory);
    return scorch::kExitUser;
  } catch (const c10::Error& e) {
    const std::string what = e.what_without_backtrace();
    if (what.find("can't allocate memory") != std::string::npos) {  // the CPU allocator's message
      std::fprintf(stderr, "error: out of memory: %s\n%s\n", scorch::shorten(what, 300).c_str(), kLessMemory);
      return scorch::kExitUser;
    }
    std::fprintf(stderr, "internal error (torch): %s\n", what.c_str());
    return scorch::kExitInternal;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "internal error: %s\n", e.what());
    return scorch::kExitInternal;
  }
  return scorch::kExitOk;
}

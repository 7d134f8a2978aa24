// `scorch train CONFIG.yaml [--set key.path=value ...] [--run-dir DIR] [--resume PATH] [--dry-run]`
#include <CLI/CLI.hpp>

#include <cstdio>
#include <filesystem>
#include <memory>

#include "cli/commands.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/run_dir.h"
#include "config/config.h"
#include "dist/dist.h"
#include "rewards/reward.h"
#include "trainers/registry.h"

namespace scorch::cli {
namespace {
struct TrainArgs {
  std::string config_path;
  std::vector<std::string> overrides;
  std::string run_dir;
  std::string resume;
  bool dry_run = false;
};

void run_train(const TrainArgs& a) {
  Config config = load_config(a.config_path, a.overrides);
  // Reward names and params are checked here, so that --dry-run catches them and a bad one stops the
  // job before it creates its run directory.
  rewards::validate_reward_specs(config.rewards);
  if (!a.run_dir.empty()) config.run_dir = a.run_dir;
  if (config.run_dir.empty()) {
    config.run_dir = "runs/" + std::filesystem::path(a.config_path).stem().string();
  }
  log::set_level(log::parse_level(config.log.level));
  const std::string resolved = to_yaml(config);
  if (a.dry_run) {
    std::printf("%s", resolved.c_str());
    std::fprintf(stderr, "config %s is valid (trainer: %s, run_dir: %s); --dry-run wrote nothing\n",
                 a.config_path.c_str(), config.trainer.c_str(), config.run_dir.c_str());
    return;
  }
  if (!a.resume.empty() && !fs::is_directory(a.resume)) {
    throw UserError("--resume '" + a.resume + "' is not a checkpoint directory");
  }
  // Launched by torchrun / tools/launch / srun: join the process group first (dist/dist.h).
  const dist::LaunchEnv env = dist::read_launch_env();
  log::set_rank(env.rank, env.world_size);
  std::unique_ptr<dist::Group> group = dist::init_process_group(env, config.dist.backend, config.dist.timeout_s);
  dist::set_current(group.get());
  // Rank 0 creates (or checks) the run directory; the others use it once it exists.
  RunDir dir;
  if (env.rank == 0) dir = prepare_run_dir(config.run_dir, resolved, !a.resume.empty());
  if (group) {
    group->wait_for_root("run_dir", config.dist.timeout_s);
    if (env.rank != 0) dir = RunDir{config.run_dir, true};
  }
  log::info(dir.resuming ? "resuming run in " : "new run in ", dir.path, " (trainer: ", config.trainer,
            group ? ", " + std::to_string(env.world_size) + " ranks" : std::string(), ")");
  trainers::RunOptions options;
  options.resume_from = a.resume.empty() ? config.checkpoint.resume_from : a.resume;
  trainers::run(config, dir, options);
  if (group) group->barrier();  // rank 0 hosts the store: nobody leaves while others still need it
  dist::set_current(nullptr);
}
}  // namespace

void register_train(CLI::App& app) {
  auto args = std::make_shared<TrainArgs>();
  auto* cmd = app.add_subcommand("train", "Train with a YAML config (trainer: sft | dpo | scpo | grpo | score)");
  cmd->add_option("config", args->config_path, "The job's YAML config")->required();
  cmd->add_option("--set", args->overrides, "Override a key: --set optim.learning_rate=1e-5 (repeatable)");
  cmd->add_option("--run-dir", args->run_dir, "Run directory (default: run_dir from the config, else runs/<config name>)")
      ->check(non_empty_path);
  cmd->add_option("--resume", args->resume, "Resume from this checkpoint directory (default: the run dir's latest)");
  cmd->add_flag("--dry-run", args->dry_run, "Validate the config and print it resolved; write nothing");
  cmd->footer("Running the same command again resumes the run from its latest checkpoint.");
  cmd->callback([args] { run_train(*args); });
}

}  // namespace scorch::cli

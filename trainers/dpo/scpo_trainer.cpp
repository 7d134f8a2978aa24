// The ScPO rounds (scpo_trainer.h).
#include "trainers/dpo/scpo_trainer.h"

#include <filesystem>

#include "common/error.h"
#include "dist/dist.h"
#include "common/fs.h"
#include "common/kill_point.h"
#include "common/log.h"
#include "data/dataset.h"
#include "train/metrics.h"
#include "train/session.h"
#include "trainers/dpo/dpo_trainer.h"
#include "trainers/dpo/scpo_pairs.h"

namespace scorch::trainers {

void run_scpo(const Config& config, const RunDir& run_dir, const RunOptions& options) {
  if (dist::world_size() > 1) {
    throw UserError("trainer: scpo runs in one process for now (its pair building and rounds are not sharded over "
                    "ranks); launch it without torchrun/tools/launch, or build pairs once and train them with trainer: dpo "
                    "on several ranks");
  }
  const auto& s = config.scpo;
  if (!s.round_thresholds.empty() && static_cast<int64_t>(s.round_thresholds.size()) != s.rounds) {
    throw UserError("scpo.round_thresholds has " + std::to_string(s.round_thresholds.size()) + " entries but scpo.rounds is " +
                    std::to_string(s.rounds) + "; give one threshold per round or leave it empty to use scpo.threshold");
  }
  data::DatasetOptions dataset_options;
  dataset_options.skip_malformed = config.data.skip_malformed;
  const auto prompts = data::load_prompt_dataset(config.data.train, dataset_options).records;
  const bool gold_pairs = s.pairs == ScpoPairs::kGold;
  if (gold_pairs) require_gold_answers(prompts, config.data.train);  // before any sampling
  std::string model_path = config.model.path;
  for (int64_t round = 1; round <= s.rounds; ++round) {
    const std::string dir = run_dir.path + "/round-" + std::to_string(round);
    const double tau = s.round_thresholds.empty() ? s.threshold : s.round_thresholds[static_cast<size_t>(round - 1)];
    Config round_config = config;
    round_config.model.path = model_path;
    round_config.data.train = dir + "/pairs.jsonl";
    round_config.seed = config.seed + static_cast<uint64_t>(round - 1);
    round_config.checkpoint.export_final = true;  // the next round samples from this export
    const RunDir round_dir = prepare_run_dir(dir, to_yaml(round_config), !options.resume_from.empty());
    if (fs::exists(dir + "/export/config.json")) {
      log::info("ScPO round ", round, ": already trained (", dir, "/export)");
      model_path = dir + "/export";
      continue;
    }
    // The pairs count as built once pairs_metrics.json (written after them) exists: a run killed in
    // between builds them again, the same pairs from the same seed.
    if (!fs::exists(round_config.data.train) || !fs::exists(dir + "/pairs_metrics.json")) {
      Stopwatch clock;
      ModelSession session = open_model_session(round_config);
      const ScpoPairStats stats = build_scpo_pairs(round_config, session, prompts, tau, round_config.seed, round_config.data.train);
      kill_point("scpo-pairs");
      nlohmann::json j = stats.to_json();
      j["round"] = round, j["pairs_by"] = option_name(s.pairs), j["num_samples"] = s.num_samples, j["model"] = model_path;
      if (!gold_pairs) j["threshold"] = tau;
      j["seconds"] = clock.seconds();
      fs::atomic_write(dir + "/pairs_metrics.json", j.dump(2) + "\n");
      log::info("ScPO round ", round, " pairs: ", j.dump());
      if (stats.kept == 0 && gold_pairs) {
        throw UserError("ScPO round " + std::to_string(round) + ": no prompt had both a sample with the gold answer and one "
                        "without (of " + std::to_string(s.num_samples) + " samples each); see " + dir +
                        "/pairs_metrics.json. Fix: more samples (scpo.num_samples), a higher scpo.temperature, or "
                        "prompts the model solves some of the time");
      }
      if (stats.kept == 0) {
        throw UserError("ScPO round " + std::to_string(round) + ": no prompt reached the vote threshold " + std::to_string(tau) +
                        " (of " + std::to_string(s.num_samples) + " samples) with a second answer; see " + dir +
                        "/pairs_metrics.json. Fix: lower scpo.threshold / round_thresholds or use more prompts");
      }
    }
    run_dpo(round_config, round_dir, RunOptions{});
    model_path = dir + "/export";
  }
  if (config.checkpoint.export_final) {  // the last round's model as the run's export
    const std::string out = run_dir.path + "/export";
    fs::StagedDirectory staged(out);  // like every export: in place whole, or not at all
    for (const auto& e : std::filesystem::directory_iterator(model_path)) {
      std::filesystem::copy_file(e.path(), staged.path() + "/" + e.path().filename().string());
    }
    kill_point("export");
    staged.commit();
    log::info("ScPO: ", s.rounds, " round(s) done; final model in ", out);
  }
}

}  // namespace scorch::trainers

// DPO and ScPO end to end through `scorch train` (CPU, seconds): a random tiny model with the
// quickstart tokenizer, preference pairs made from synthetic arithmetic (chosen = the worked
// solution, rejected = the same with a wrong final answer).
//   - a DPO run logs TRL's metrics, all finite, and exports;
//   - dpo.reference: precompute (cached beside the data, reused by a second run) gives the same
//     losses and rewards as the live reference model, step by step;
//   - bad preference data (missing field, chosen identical to rejected) exits 2 naming file:line,
//     or is skipped and counted with data.skip_malformed;
//   - a two-round ScPO run builds pairs by voting, writes its pair metrics and trains both rounds;
//   - ScPO with gold pairs, on the same samples, pairs each voted answer made gold with the first
//     sample that disagrees (weight 1), and refuses prompts without a gold answer before sampling;
//   - ScPO killed (SIGKILL) during a round's export, after its pairs, mid-training or during the
//     final export resumes to the uninterrupted run's weights.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "common/fs.h"
#include "tests/support/run_cli.h"
#include "tests/support/jobs.h"

namespace {
using scorch::test::read_jsonl;

using scorch::test::run_scorch;



std::string tokenizer() { return std::string(SCORCH_SOURCE_DIR) + "/configs/quickstart/tokenizer.model"; }

// A temp dir with base/ (tiny model), prompts.jsonl (arith with answers) and prefs.jsonl.
class DpoRun : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = scorch::test::temp_dir("dpo-run");
    ASSERT_FALSE(dir.empty());
    ASSERT_EQ(scorch::test::make_tiny_job_files(dir, 16, "prompts.jsonl"), "");
    std::ofstream prefs(dir + "/prefs.jsonl");
    for (const auto& p : read_jsonl(dir + "/prompts.jsonl")) {
      const std::string good = p["completion"], answer = p["answer"].is_string() ? p["answer"].get<std::string>() : p["answer"].dump();
      std::string bad = good;
      bad.replace(bad.rfind(answer), answer.size(), answer + "1");
      prefs << nlohmann::json{{"prompt", p["prompt"]}, {"chosen", good}, {"rejected", bad}}.dump() << "\n";
    }
  }
  void TearDown() override { scorch::fs::remove_all(dir); }

  std::string config(const std::string& trainer, const std::string& data, const std::string& extra) const {
    const std::string path = dir + "/" + trainer + "-" + std::to_string(++configs) + ".yaml";
    std::ofstream(path) << "trainer: " << trainer << "\nseed: 7\nmodel: {path: " << dir << "/base}\n"
                        << "tokenizer: {path: " << tokenizer() << ", chat_template: plain}\n"
                        << "data: {train: " << data << ", max_length: 128}\n"
                        << "train: {max_steps: 3, micro_batch_size: 2, gradient_accumulation_steps: 2, threads: 1}\n"
                        << "optim: {learning_rate: 3.0e-3}\nlog: {every: 1, level: info, progress: false}\n"
                        << extra;
    return path;
  }

  std::string dir;
  mutable int configs = 0;
};

TEST_F(DpoRun, ADpoRunLogsTrlMetricsThatAreFiniteAndExports) {
  const auto r = run_scorch("train " + config("dpo", dir + "/prefs.jsonl", "dpo: {beta: 0.1, loss_type: 'sigmoid,sft', loss_weights: [1, 0.5]}\n") +
                            " --run-dir " + dir + "/run");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto lines = read_jsonl(dir + "/run/metrics.jsonl");
  ASSERT_EQ(lines.size(), 3u);
  for (const auto& line : lines) {
    for (const char* key : {"loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies",
                            "logps/chosen", "logps/rejected", "grad_norm"}) {
      ASSERT_TRUE(line.contains(key)) << key;
      EXPECT_TRUE(std::isfinite(line[key].get<double>())) << key;
    }
    EXPECT_LT(line["logps/chosen"].get<double>(), 0.0);
  }
  // Step 1: the policy is the reference, so h = 0, the rewards are 0 and the sigmoid term is log 2.
  EXPECT_NEAR(lines[0]["rewards/margins"].get<double>(), 0.0, 1e-6);
  EXPECT_GT(lines[0]["loss"].get<double>(), std::log(2.0));  // + 0.5 · NLL
  EXPECT_NE(lines[2]["rewards/margins"].get<double>(), 0.0);  // the policy moved
  EXPECT_TRUE(scorch::fs::exists(dir + "/run/export/config.json"));
}

TEST_F(DpoRun, PrecomputedReferenceGivesTheSameLossesAsTheLiveReference) {
  const std::string dpo = "dpo: {beta: 0.5, loss_type: sigmoid, reference: ";
  auto live = run_scorch("train " + config("dpo", dir + "/prefs.jsonl", dpo + "live}\n") + " --run-dir " + dir + "/live");
  ASSERT_EQ(live.exit_code, 0) << live.output;
  auto pre = run_scorch("train " + config("dpo", dir + "/prefs.jsonl", dpo + "precompute}\n") + " --run-dir " + dir + "/pre");
  ASSERT_EQ(pre.exit_code, 0) << pre.output;
  EXPECT_NE(pre.output.find("cached in"), std::string::npos) << pre.output;
  const auto a = read_jsonl(dir + "/live/metrics.jsonl"), b = read_jsonl(dir + "/pre/metrics.jsonl");
  ASSERT_EQ(a.size(), 3u);
  ASSERT_EQ(b.size(), 3u);
  for (size_t s = 0; s < a.size(); ++s) {
    for (const char* key : {"loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen"}) {
      const double x = a[s][key].get<double>(), y = b[s][key].get<double>();
      EXPECT_NEAR(x, y, 1e-5 + 1e-4 * std::abs(x)) << key << " at step " << s + 1 << ": rel err "
                                                  << std::abs(x - y) / std::max(1e-12, std::abs(x));
    }
  }
  EXPECT_GT(std::abs(a[2]["rewards/margins"].get<double>()), 1e-4);  // not a comparison of zeros
  // A second run finds the cache (same model and data checksums).
  auto again = run_scorch("train " + config("dpo", dir + "/prefs.jsonl", dpo + "precompute}\n") + " --run-dir " + dir + "/again");
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_NE(again.output.find("loaded 16 pairs"), std::string::npos) << again.output;
}

// DPO with LoRA: the live reference is the model with its adapter disabled, so it equals the
// reference log-probs precomputed from the base before training, step by step, while the adapted
// policy moves away from it.
TEST_F(DpoRun, LoraReferenceIsTheBaseWithTheAdapterDisabled) {
  const std::string dpo = "lora: {enabled: true, r: 4, lora_alpha: 16, target_modules: all-linear}\n"
                          "dpo: {beta: 0.5, loss_type: sigmoid, reference: ";
  auto live = run_scorch("train " + config("dpo", dir + "/prefs.jsonl", dpo + "live}\n") + " --run-dir " + dir + "/live");
  ASSERT_EQ(live.exit_code, 0) << live.output;
  auto pre = run_scorch("train " + config("dpo", dir + "/prefs.jsonl", dpo + "precompute}\n") + " --run-dir " + dir + "/pre");
  ASSERT_EQ(pre.exit_code, 0) << pre.output;
  const auto a = read_jsonl(dir + "/live/metrics.jsonl"), b = read_jsonl(dir + "/pre/metrics.jsonl");
  ASSERT_EQ(a.size(), 3u);
  ASSERT_EQ(b.size(), 3u);
  EXPECT_NEAR(a[0]["rewards/margins"].get<double>(), 0.0, 1e-6);  // lora_B = 0: the policy is the base
  for (size_t s = 0; s < a.size(); ++s) {
    for (const char* key : {"loss", "rewards/chosen", "rewards/rejected", "rewards/margins"}) {
      const double x = a[s][key].get<double>(), y = b[s][key].get<double>();
      EXPECT_NEAR(x, y, 1e-5 + 1e-4 * std::abs(x)) << key << " at step " << s + 1;
    }
  }
  EXPECT_GT(std::abs(a[2]["rewards/margins"].get<double>()), 1e-4);  // the adapter moved the policy
  EXPECT_TRUE(scorch::fs::exists(dir + "/live/export/adapter_model.safetensors"));
}

TEST_F(DpoRun, BadPreferenceDataIsAClearErrorOrACountedSkip) {
  std::ifstream in(dir + "/prefs.jsonl");
  std::string first, second;
  std::getline(in, first), std::getline(in, second);
  nlohmann::json same = nlohmann::json::parse(second);
  same["rejected"] = same["chosen"];
  std::ofstream(dir + "/bad.jsonl") << first << "\n{\"prompt\": \"Compute 1+1.\", \"chosen\": \"2\"}\n" << same.dump() << "\n" << first << "\n";
  const std::string cfg = config("dpo", dir + "/bad.jsonl", "");
  auto r = run_scorch("train " + cfg + " --run-dir " + dir + "/bad");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("bad.jsonl:2:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("rejected"), std::string::npos) << r.output;
  std::ofstream(dir + "/same.jsonl") << first << "\n" << same.dump() << "\n";
  r = run_scorch("train " + config("dpo", dir + "/same.jsonl", "") + " --run-dir " + dir + "/same");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("same.jsonl:2:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("identical"), std::string::npos) << r.output;
  r = run_scorch("train " + cfg + " --run-dir " + dir + "/skip --set data.skip_malformed=true --set train.max_steps=1");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("skipped 2 malformed lines"), std::string::npos) << r.output;
}

TEST_F(DpoRun, TwoScpoRoundsBuildPairsByVoteAndTrainEachRound) {
  const std::string extra =
      "generation: {max_prompt_length: 96, max_completion_length: 24}\n"
      "scpo: {num_samples: 8, rounds: 2, round_thresholds: [0.25, 0.25], beta: 0.5, alpha: 1.0, temperature: 1.0}\n";
  const auto r = run_scorch("train " + config("scpo", dir + "/prompts.jsonl", extra) + " --run-dir " + dir + "/scpo --set train.max_steps=1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* round : {"round-1", "round-2"}) {
    const std::string rd = dir + "/scpo/" + round;
    const auto metrics = nlohmann::json::parse(scorch::fs::read_file(rd + "/pairs_metrics.json"));
    EXPECT_EQ(metrics["prompts"].get<int>(), 16);
    EXPECT_GT(metrics["kept_fraction"].get<double>(), 0.0);
    EXPECT_TRUE(metrics.contains("vote_margin_histogram"));
    EXPECT_TRUE(metrics.contains("chosen_accuracy"));  // the prompts carry gold answers
    const auto pairs = read_jsonl(rd + "/pairs.jsonl");
    ASSERT_EQ(static_cast<int>(pairs.size()), metrics["pairs"].get<int>());
    for (const auto& p : pairs) {
      EXPECT_GT(p["weight"].get<double>(), 0.0);
      EXPECT_LT(p["weight"].get<double>(), 1.0);
      EXPECT_NE(p["chosen"], p["rejected"]);
    }
    const auto lines = read_jsonl(rd + "/metrics.jsonl");
    ASSERT_EQ(lines.size(), 1u);
    EXPECT_TRUE(std::isfinite(lines[0]["loss"].get<double>()));
    EXPECT_TRUE(std::isfinite(lines[0]["rewards/margins"].get<double>()));
  }
  EXPECT_TRUE(scorch::fs::exists(dir + "/scpo/export/model.safetensors"));
}

// The same seed, model and prompts give the same k samples whatever the pair rule, so a vote run's
// chosen answers, made the prompts' gold answers, must come back as gold pairs: y+ = the vote's y+
// (the first sample with that answer), y− = the first sample with any other answer, weight 1.
TEST_F(DpoRun, ScpoGoldPairsMatchTheFirstSampleWithTheGoldAnswerAndNeedEveryAnswer) {
  const std::string sampling =
      "generation: {max_prompt_length: 96, max_completion_length: 24}\n"
      "scpo: {num_samples: 8, rounds: 1, beta: 0.5, alpha: 1.0, temperature: 1.0";
  auto r = run_scorch("train " + config("scpo", dir + "/prompts.jsonl", sampling + ", threshold: 0.25}\n") +
                      " --run-dir " + dir + "/vote --set train.max_steps=1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::map<std::string, nlohmann::json> vote;  // prompt -> its vote pair
  for (const auto& p : read_jsonl(dir + "/vote/round-1/pairs.jsonl")) vote[p["prompt"].get<std::string>()] = p;
  ASSERT_GT(vote.size(), 0u);
  std::ofstream gold(dir + "/gold.jsonl"), missing(dir + "/missing.jsonl");
  int line = 0;
  for (auto p : read_jsonl(dir + "/prompts.jsonl")) {
    const auto it = vote.find(p["prompt"].get<std::string>());
    p["answer"] = it != vote.end() ? it->second["answers"][0] : nlohmann::json("123456789");
    gold << p.dump() << "\n";
    if (++line == 5) p.erase("answer");
    missing << p.dump() << "\n";
  }
  gold.close(), missing.close();
  r = run_scorch("train " + config("scpo", dir + "/gold.jsonl", sampling + ", pairs: gold}\n") + " --run-dir " + dir +
                 "/gold --set train.max_steps=1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto metrics = nlohmann::json::parse(scorch::fs::read_file(dir + "/gold/round-1/pairs_metrics.json"));
  EXPECT_EQ(metrics["pairs_by"], "gold");
  EXPECT_FALSE(metrics.contains("threshold"));
  EXPECT_FALSE(metrics.contains("vote_margin_histogram"));
  int kept = 0;  // prompts by how many of their 8 samples have the gold answer (1..7 when kept)
  for (const auto& [correct, n] : metrics["correct_count_histogram"].items()) {
    EXPECT_GE(std::stoi(correct), 1);
    EXPECT_LE(std::stoi(correct), 7);
    kept += n.get<int>();
  }
  EXPECT_EQ(kept, metrics["pairs"].get<int>());
  int verdicts = 0;
  for (const auto& [name, n] : metrics["verdicts"].items()) {
    EXPECT_TRUE(name == "kept" || name == "all_correct" || name == "none_correct") << name;
    verdicts += n.get<int>();
  }
  EXPECT_EQ(verdicts, 16);
  size_t matched = 0;
  for (const auto& p : read_jsonl(dir + "/gold/round-1/pairs.jsonl")) {
    EXPECT_DOUBLE_EQ(p["weight"].get<double>(), 1.0);
    EXPECT_EQ(p["votes"][0].get<int>() + p["votes"][1].get<int>(), 8);  // right, the rest
    const auto it = vote.find(p["prompt"].get<std::string>());
    if (it == vote.end()) continue;
    ++matched;
    EXPECT_EQ(p["chosen"], it->second["chosen"]);
    EXPECT_EQ(p["votes"][0], it->second["votes"][0]);  // the samples with the gold answer: the vote's V+
    EXPECT_NE(p["answers"][1], p["answers"][0]);
  }
  EXPECT_EQ(matched, vote.size());  // every voted prompt is kept
  r = run_scorch("train " + config("scpo", dir + "/missing.jsonl", sampling + ", pairs: gold}\n") + " --run-dir " + dir +
                 "/missing");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("missing.jsonl:5: this prompt has no gold `answer` (1 of 16 prompts have none)"), std::string::npos)
      << r.output;
  EXPECT_FALSE(scorch::fs::exists(dir + "/missing/round-1/pairs.jsonl"));  // refused before sampling
}

// ScPO killed at four places and resumed each time with the same command ends with the
// uninterrupted run's weights, pairs, pair metrics and losses, and no partial file: during round
// 1's export (the files written, not yet in place), right after round 2's pairs.jsonl is written,
// part-way through round 2's training (after its first checkpoint), and while the last round's
// model is copied to the run's export.
TEST_F(DpoRun, ScpoKilledInItsRoundsResumesToTheSameWeights) {
  const std::string extra =
      "generation: {max_prompt_length: 96, max_completion_length: 24}\n"
      "scpo: {num_samples: 8, rounds: 2, round_thresholds: [0.25, 0.25], beta: 0.5, alpha: 1.0, temperature: 1.0}\n"
      "checkpoint: {save_every: 1}\n";
  const std::string train = "train " + config("scpo", dir + "/prompts.jsonl", extra) + " --set train.max_steps=2 --run-dir ";
  auto r = run_scorch(train + dir + "/full");
  ASSERT_EQ(r.exit_code, 0) << r.output;

  const std::string run = dir + "/killed";
  r = scorch::test::run_scorch_killed_at("export:1", train + run);
  ASSERT_EQ(r.exit_code, scorch::test::kKilledExitCode) << "not killed in round 1's export\n" << r.output;
  EXPECT_FALSE(scorch::fs::exists(run + "/round-1/export"));
  EXPECT_FALSE(scorch::fs::exists(run + "/round-2"));
  r = scorch::test::run_scorch_killed_at("scpo-pairs", train + run);
  ASSERT_EQ(r.exit_code, scorch::test::kKilledExitCode) << "not killed after round 2's pairs\n" << r.output;
  EXPECT_TRUE(scorch::fs::exists(run + "/round-2/pairs.jsonl"));
  EXPECT_FALSE(scorch::fs::exists(run + "/round-2/checkpoints"));
  r = scorch::test::run_scorch_killed_at("after-checkpoint:1", train + run);
  ASSERT_EQ(r.exit_code, scorch::test::kKilledExitCode) << "not killed in round 2's training\n" << r.output;
  EXPECT_EQ(scorch::fs::read_file(run + "/round-2/checkpoints/latest"), "step-000001\n");
  // The second export of this process: the last round's model copied to the run's export.
  r = scorch::test::run_scorch_killed_at("export:2", train + run);
  ASSERT_EQ(r.exit_code, scorch::test::kKilledExitCode) << "not killed in the run's final export\n" << r.output;
  EXPECT_TRUE(scorch::fs::exists(run + "/round-2/export/config.json"));
  EXPECT_FALSE(scorch::fs::exists(run + "/export"));
  r = run_scorch(train + run);
  ASSERT_EQ(r.exit_code, 0) << r.output;

  const std::string full = dir + "/full";
  const auto same_bytes = [](const std::string& a, const std::string& b) {
    return scorch::fs::read_file(a) == scorch::fs::read_file(b);
  };
  EXPECT_TRUE(same_bytes(full + "/export/model.safetensors", run + "/export/model.safetensors"));
  for (const char* round : {"round-1", "round-2"}) {
    SCOPED_TRACE(round);
    const std::string a = full + "/" + round, b = run + "/" + round;
    EXPECT_TRUE(same_bytes(a + "/export/model.safetensors", b + "/export/model.safetensors"));
    EXPECT_TRUE(same_bytes(a + "/pairs.jsonl", b + "/pairs.jsonl"));
    ASSERT_TRUE(scorch::fs::exists(b + "/pairs_metrics.json"));
    auto ma = nlohmann::json::parse(scorch::fs::read_file(a + "/pairs_metrics.json"));
    auto mb = nlohmann::json::parse(scorch::fs::read_file(b + "/pairs_metrics.json"));
    for (const char* varies : {"seconds", "model"}) ma.erase(varies), mb.erase(varies);  // time, run dir
    EXPECT_EQ(ma, mb);
    const auto la = read_jsonl(a + "/metrics.jsonl"), lb = read_jsonl(b + "/metrics.jsonl");
    ASSERT_EQ(la.size(), 2u);
    ASSERT_EQ(lb.size(), la.size());
    for (size_t i = 0; i < la.size(); ++i) EXPECT_EQ(la[i]["loss"], lb[i]["loss"]) << "step " << i + 1;
  }
  EXPECT_EQ(scorch::test::partial_files(run), std::vector<std::string>{});
}

}  // namespace

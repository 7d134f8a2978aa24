// GRPO through run_grpo as a config drives it (CPU, seconds): the quickstart tokenizer, synthetic
// arithmetic prompts with gold answers, a random tiny model, math_answer + format + overlong rewards, β > 0 (a
// reference model), two micro-batches per step. Checks the metrics of every step are present and
// finite, samples.jsonl holds decoded rollouts with their reward, and the export is written.
// (Until trainers/registry.cpp dispatches `grpo`, this calls run_grpo directly instead of the CLI.)
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "common/fs.h"
#include "common/run_dir.h"
#include "config/config.h"
#include "tests/support/run_cli.h"
#include "tests/support/jobs.h"
#include "trainers/grpo/grpo_trainer.h"

namespace {
using scorch::test::read_jsonl;

using scorch::test::run_scorch;



TEST(GrpoRun, ARunFromAConfigLogsFiniteRewardKlAndClipMetricsAndExports) {
  const std::string dir = scorch::test::temp_dir("grpo-run");
  ASSERT_FALSE(dir.empty());
  ASSERT_EQ(scorch::test::make_tiny_job_files(dir, 16), "");
  const std::string tok = scorch::test::quickstart_tokenizer();
  const std::string yaml = "trainer: grpo\nseed: 7\nmodel: {path: " + dir + "/base}\n"
                           "tokenizer: {path: " + tok + ", chat_template: plain}\n"
                           "data: {train: " + dir + "/train.jsonl}\n"
                           "train: {max_steps: 2, micro_batch_size: 2, gradient_accumulation_steps: 2, threads: 1}\n"
                           "optim: {learning_rate: 1.0e-3}\n"
                           "generation: {max_prompt_length: 96, max_completion_length: 8, stop: [e, a, o]}\n"
                           "grpo: {num_generations: 3, beta: 0.04, loss_type: grpo, epsilon_high: 0.28}\n"
                           "rewards: [{name: math_answer}, {name: format, weight: 0.1, params: {boxed_count: 1}},\n"
                           "          {name: overlong, params: {max_length: 8, cache: 6}}]\n"
                           "log: {every: 1, level: warn, samples: 3}\n";
  const scorch::Config config = scorch::parse_config(yaml, "grpo test config");
  const std::string run = dir + "/run";
  scorch::fs::make_directories(run);
  scorch::trainers::run_grpo(config, scorch::RunDir{run, false}, {});

  const auto lines = read_jsonl(run + "/metrics.jsonl");
  ASSERT_EQ(lines.size(), 2u);
  for (const auto& line : lines) {
    for (const char* key : {"loss", "reward", "reward_std", "frac_reward_zero_std", "kl", "entropy",
                            "clip_ratio/region_mean", "completions/mean_length", "completions/clipped_ratio",
                            "rewards/math_answer/mean", "rewards/format/mean", "advantages/abs_mean",
                            "rollout/logprob_diff_mean", "time/generation", "time/reward", "time/training"}) {
      ASSERT_TRUE(line.contains(key)) << key;
      EXPECT_TRUE(std::isfinite(line[key].get<double>())) << key;
    }
    EXPECT_LE(line["completions/max_length"].get<double>(), 8.0);
  }
  EXPECT_EQ(lines[0]["kl"].get<double>(), 0.0);  // the first step's policy is the reference
  // A random model rarely answers, but with stop strings its lengths vary and so does the overlong
  // penalty: advantages are not all 0 and the policy moves away from the reference.
  EXPECT_GT(lines[0]["grad_norm"].get<double>(), 0.0);
  EXPECT_GT(lines[1]["kl"].get<double>(), 0.0);
  const auto samples = read_jsonl(run + "/samples.jsonl");
  ASSERT_EQ(samples.size(), 6u);  // 3 per step
  EXPECT_TRUE(samples[0].contains("completion") && samples[0].contains("reward") && samples[0].contains("answer"));
  EXPECT_TRUE(scorch::fs::exists(run + "/export/config.json"));
  scorch::fs::remove_all(dir);
}

// GRPO with LoRA: the rollout engine samples the adapted policy the trainer updates. At every step
// (3 of them, each changing the adapter) the engine's sampling log-probs equal the training
// forward's log-probs of the same tokens, the logged adapter checksum is new, and the KL to the
// reference (the base with the adapter disabled) starts at exactly 0 (lora_B = 0) and then grows.
TEST(GrpoRun, LoraRolloutsSampleTheAdaptedPolicyEveryStep) {
  const std::string dir = scorch::test::temp_dir("grpo-lora");
  ASSERT_FALSE(dir.empty());
  ASSERT_EQ(scorch::test::make_tiny_job_files(dir, 16), "");
  const std::string tok = scorch::test::quickstart_tokenizer();
  const std::string yaml = "trainer: grpo\nseed: 7\nmodel: {path: " + dir + "/base}\n"
                           "tokenizer: {path: " + tok + ", chat_template: plain}\n"
                           "data: {train: " + dir + "/train.jsonl}\n"
                           "train: {max_steps: 3, micro_batch_size: 2, gradient_accumulation_steps: 1, threads: 1}\n"
                           "optim: {learning_rate: 2.0e-2}\n"
                           "generation: {max_prompt_length: 96, max_completion_length: 8, stop: [e, a, o]}\n"
                           "grpo: {num_generations: 3, beta: 0.04, loss_type: grpo}\n"
                           "lora: {enabled: true, r: 4, lora_alpha: 16, target_modules: all-linear}\n"
                           "rewards: [{name: overlong, params: {max_length: 8, cache: 6}}]\n"
                           "log: {every: 1, level: warn, samples: 0}\n";
  const scorch::Config config = scorch::parse_config(yaml, "grpo lora test config");
  const std::string run = dir + "/run";
  scorch::fs::make_directories(run);
  scorch::trainers::run_grpo(config, scorch::RunDir{run, false}, {});

  const auto lines = read_jsonl(run + "/metrics.jsonl");
  ASSERT_EQ(lines.size(), 3u);
  std::set<double> checksums;
  for (const auto& line : lines) {
    // |engine log-prob - training log-prob| over every completion token; log-probs of this random
    // model over a 512-token vocabulary are about -6, so 6e-5 is a relative error of 1e-5.
    ASSERT_TRUE(line.contains("rollout/logprob_diff_max")) << line.dump();
    EXPECT_LE(line["rollout/logprob_diff_max"].get<double>(), 6e-5) << line.dump();
    ASSERT_TRUE(line.contains("rollout/adapter_checksum"));
    checksums.insert(line["rollout/adapter_checksum"].get<double>());
  }
  EXPECT_EQ(checksums.size(), 3u) << "the engine sampled with the same adapter twice";
  EXPECT_EQ(lines[0]["kl"].get<double>(), 0.0);  // lora_B = 0: the adapted policy is the reference
  EXPECT_GT(lines[2]["kl"].get<double>(), 0.0);
  EXPECT_TRUE(scorch::fs::exists(run + "/export/adapter_model.safetensors"));
  EXPECT_TRUE(scorch::fs::exists(run + "/export/adapter_config.json"));
  scorch::fs::remove_all(dir);
}

}  // namespace

// The fused LM head against the unfused one (SCORCH_LM_HEAD=unfused) through the CLI: 10 GRPO steps
// (policy, old-policy-free, reference and entropy log-probs all through Transformer::token_logprobs)
// give the same losses to fp32 round-off; so do the fused layer ops against the eager ones.
TEST(GrpoRun, FusedLmHeadAndLayerOpsGiveTheUnfusedLossesOver10Steps) {
  auto run = [](const std::string& tag, const std::string& env, const std::string& model_keys = "") {
    const std::string dir = scorch::test::temp_dir(tag);
    EXPECT_EQ(scorch::test::make_tiny_job_files(dir, 16), "");
    const std::string tok = scorch::test::quickstart_tokenizer();
    std::ofstream(dir + "/job.yaml")
        << "trainer: grpo\nseed: 7\nmodel: {path: " << dir << "/base" << model_keys << "}\n"
        << "tokenizer: {path: " << tok << ", chat_template: plain}\n"
        << "data: {train: " << dir << "/train.jsonl}\n"
        << "train: {max_steps: 10, micro_batch_size: 2, gradient_accumulation_steps: 1, threads: 1}\n"
        << "optim: {learning_rate: 1.0e-3}\n"
        << "generation: {max_prompt_length: 96, max_completion_length: 8, stop: [e, a, o]}\n"
        << "grpo: {num_generations: 3, beta: 0.04, entropy_coef: 0.01}\n"
        << "rewards: [{name: format, params: {boxed_count: 1}}, {name: overlong, params: {max_length: 8, cache: 6}}]\n"
        << "checkpoint: {save_every: 0, export_final: false}\n"
        << "log: {every: 1, level: warn}\n";
    auto r = scorch::test::run_command(env + " '" + SCORCH_BIN + "' train " + dir + "/job.yaml --run-dir " + dir + "/run");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    std::vector<double> losses;
    for (const auto& m : read_jsonl(dir + "/run/metrics.jsonl")) {
      losses.push_back(m["loss"].get<double>());
      losses.push_back(m["grad_norm"].get<double>());
    }
    return losses;
  };
  // The largest |a − b| / max(floor, |b|) over the steps of one metric (offset 0: loss, 1: grad_norm).
  auto worst_gap = [](const std::vector<double>& a, const std::vector<double>& b, size_t offset, double floor) {
    double worst = 0;
    for (size_t i = offset; i < a.size() && i < b.size(); i += 2) {
      worst = std::max(worst, std::abs(a[i] - b[i]) / std::max(floor, std::abs(b[i])));
    }
    return worst;
  };
  // model.fused_training_ops against the eager layer ops: 10 steps (rollouts, reference log-probs and
  // the policy's backward), the same losses within 1e-5 relative, grad norms to fp32 round-off.
  {
    const auto eager = run("grpo-eager-ops", "", ", fused_training_ops: false");
    const auto fused = run("grpo-fused-ops", "");
    ASSERT_EQ(eager.size(), 20u);
    ASSERT_EQ(fused.size(), 20u);
    const double worst_loss = worst_gap(fused, eager, 0, 1e-3), worst_grad = worst_gap(fused, eager, 1, 0.0);
    std::printf("10 GRPO steps: fused vs eager layer ops, worst relative difference: loss %.2e, grad_norm %.2e\n",
                worst_loss, worst_grad);
    EXPECT_LT(worst_loss, 1e-5);
    EXPECT_LT(worst_grad, 1e-4);
  }
  const auto unfused = run("grpo-unfused", "SCORCH_LM_HEAD=unfused");
  const auto fused = run("grpo-fused", "");
  ASSERT_EQ(unfused.size(), 20u);
  ASSERT_EQ(fused.size(), 20u);
  const double worst = worst_gap(fused, unfused, 0, 1e-3);
  double spread = 0;
  for (size_t i = 0; i < 20; i += 2) spread = std::max(spread, std::abs(fused[i] - fused[0]));
  std::printf("10 GRPO steps: fused vs unfused worst relative loss difference %.2e\n", worst);
  EXPECT_LT(worst, 1e-4);
  EXPECT_GT(spread, 1e-4);  // the losses move: the comparison is not of constants
}

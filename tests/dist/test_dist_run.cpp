// Data parallelism end to end on CPU with Gloo over loopback, as a user runs it: tools/launch (and
// torchrun --no-python) starting `scorch train`, against single-process runs of the same global batch.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ATen/ATen.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "model/safetensors.h"
#include "tests/support/run_cli.h"
#include "tests/support/jobs.h"

namespace {
using scorch::test::read_jsonl;
using scorch::test::run_command;
using scorch::test::run_scorch;


std::string launch() { return std::string("python3 ") + SCORCH_SOURCE_DIR + "/tools/launch --nproc-per-node 2 -- "; }
std::string bin() { return std::string("'") + SCORCH_BIN + "'"; }

int free_port() {
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(s);
  return ntohs(a.sin_port);
}


// A tiny model, 48 arithmetic samples, and an SFT config whose micro_batch_size is set per run.
struct Job {
  std::string dir, config;
};
Job make_job(const std::string& tag, const std::string& trainer_yaml) {
  Job j;
  j.dir = scorch::test::temp_dir(tag);
  EXPECT_EQ(scorch::test::make_tiny_job_files(j.dir, 48), "");
  const std::string tok = scorch::test::quickstart_tokenizer();
  j.config = j.dir + "/job.yaml";
  std::ofstream(j.config) << "seed: 11\nmodel: {path: " << j.dir << "/base}\n"
                          << "tokenizer: {path: " << tok << ", chat_template: plain}\n"
                          << "data: {train: " << j.dir << "/train.jsonl, max_length: 96}\n"
                          << "optim: {learning_rate: 2.0e-3, lr_scheduler_type: cosine, warmup_steps: 1, weight_decay: 0.01}\n"
                          << "dist: {timeout_s: 60}\n"
                          << "log: {every: 1, level: warn, progress: false}\n"
                          << trainer_yaml;
  return j;
}

const char* kSft = "trainer: sft\ntrain: {max_steps: 4, micro_batch_size: 4, gradient_accumulation_steps: 2, threads: 1}\n"
                   "checkpoint: {save_every: 2, keep_last: 3}\n";

// Largest relative difference over all tensors of two exports.
double max_rel_diff(const std::string& a, const std::string& b, const std::string& file = "model.safetensors") {
  const auto x = scorch::safetensors::load(a + "/" + file);
  const auto y = scorch::safetensors::load(b + "/" + file);
  EXPECT_EQ(x.size(), y.size());
  double worst = 0;
  for (const auto& [name, t] : x) {
    const at::Tensor u = t.to(at::kDouble), v = y.at(name).to(at::kDouble);
    worst = std::max(worst, (u - v).abs().max().item<double>() / (v.abs().max().item<double>() + 1e-12));
  }
  return worst;
}

// How far the weights moved during training (so "equal" is not equal-because-nothing-changed).
double moved(const std::string& base, const std::string& trained) { return max_rel_diff(base, trained); }
}  // namespace

TEST(DistCollectives, EveryWrapperMatchesTheValuesOfAllRanks) {
  const auto r = run_command(launch() + std::string("'") + SCORCH_BINARY_DIR + "/scorch_dist_worker' collectives 30");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("rank 0 ok"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("rank 1 ok"), std::string::npos) << r.output;
}

TEST(DistCollectives, ADeadRankMakesTheOtherFailWithinTheTimeout) {
  const std::string dir = scorch::test::temp_dir("dist-die");
  const std::string env = "MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(free_port()) + " WORLD_SIZE=2 ";
  const std::string worker = std::string("'") + SCORCH_BINARY_DIR + "/scorch_dist_worker' die 20";
  // Started by hand (tools/launch would stop rank 0 itself): rank 1 kills itself after one all-reduce.
  const auto t0 = std::chrono::steady_clock::now();
  const auto r = run_command("(RANK=1 " + env + worker + " > " + dir + "/r1.log 2>&1 &) ; RANK=0 " + env +
                             "timeout 90 " + worker + " > " + dir + "/r0.log 2>&1; echo exit=$?; cat " + dir + "/r0.log");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(r.output.find("exit=0"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("exit=124"), std::string::npos) << "rank 0 hung: " << r.output;
  EXPECT_NE(r.output.find("exit=1"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("collective all_reduce failed"), std::string::npos) << r.output;
  EXPECT_LT(seconds, 40.0) << r.output;  // the 20 s timeout plus start-up, at most
}

TEST(DistTrain, TwoRanksEqualOneRankWithTheCombinedBatch) {
  Job j = make_job("dist-sft", kSft);
  auto one = run_scorch("train " + j.config + " --run-dir " + j.dir + "/one --set train.micro_batch_size=8");
  ASSERT_EQ(one.exit_code, 0) << one.output;
  auto two = run_command(launch() + bin() + " train " + j.config + " --run-dir " + j.dir + "/two");
  ASSERT_EQ(two.exit_code, 0) << two.output;
  const double diff = max_rel_diff(j.dir + "/two/export", j.dir + "/one/export");
  EXPECT_LT(diff, 1e-4) << "2 ranks vs 1 rank, relative difference " << diff;
  EXPECT_GT(moved(j.dir + "/base", j.dir + "/one/export"), 1e-2);
  // The loss logged by rank 0 is the global one: the same as the single process's.
  const auto m1 = read_jsonl(j.dir + "/one/metrics.jsonl"), m2 = read_jsonl(j.dir + "/two/metrics.jsonl");
  ASSERT_EQ(m1.size(), 4u);
  ASSERT_EQ(m2.size(), 4u);
  for (size_t i = 0; i < m1.size(); ++i) {
    EXPECT_NEAR(m2[i]["loss"].get<double>(), m1[i]["loss"].get<double>(), 1e-4 * m1[i]["loss"].get<double>()) << i;
    EXPECT_EQ(m2[i]["num_tokens"].get<double>(), m1[i]["num_tokens"].get<double>()) << i;
  }
}

TEST(DistTrain, CheckpointsMoveBetweenWorldSizes) {
  Job j = make_job("dist-ckpt", kSft);
  auto ref = run_scorch("train " + j.config + " --run-dir " + j.dir + "/ref --set train.micro_batch_size=8");
  ASSERT_EQ(ref.exit_code, 0) << ref.output;
  // 2 ranks -> 1 rank: resume the 2-rank run's step-2 checkpoint in one process (same global batch).
  auto two = run_command(launch() + bin() + " train " + j.config + " --run-dir " + j.dir + "/two");
  ASSERT_EQ(two.exit_code, 0) << two.output;
  auto to_one = run_scorch("train " + j.config + " --run-dir " + j.dir + "/to_one --set train.micro_batch_size=8 --resume " +
                           j.dir + "/two/checkpoints/step-000002");
  ASSERT_EQ(to_one.exit_code, 0) << to_one.output;
  EXPECT_LT(max_rel_diff(j.dir + "/to_one/export", j.dir + "/ref/export"), 1e-4);
  // 1 rank -> 2 ranks.
  auto to_two = run_command(launch() + bin() + " train " + j.config + " --run-dir " + j.dir + "/to_two --resume " + j.dir +
                            "/ref/checkpoints/step-000002");
  ASSERT_EQ(to_two.exit_code, 0) << to_two.output;
  EXPECT_LT(max_rel_diff(j.dir + "/to_two/export", j.dir + "/ref/export"), 1e-4);
}

TEST(DistTrain, KillingOneRankStopsTheOtherWithinTheTimeout) {
  Job j = make_job("dist-kill", "trainer: sft\ntrain: {max_steps: 100000, micro_batch_size: 2, threads: 1}\n"
                                "checkpoint: {save_every: 0, export_final: false}\n");
  const std::string env = "MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(free_port()) + " WORLD_SIZE=2 ";
  const std::string cmd = bin() + " train " + j.config + " --run-dir " + j.dir + "/run --set dist.timeout_s=20";
  // Both ranks by hand; once rank 0 has logged a few steps, SIGKILL rank 1 and time rank 0's exit.
  const std::string script =
      "RANK=1 " + env + cmd + " > " + j.dir + "/r1.log 2>&1 & p1=$!\n"
      "RANK=0 " + env + "timeout 120 " + cmd + " > " + j.dir + "/r0.log 2>&1 & p0=$!\n"
      "for i in $(seq 600); do [ \"$(wc -l < " + j.dir + "/run/metrics.jsonl 2>/dev/null || echo 0)\" -ge 3 ] && break; sleep 0.1; done\n"
      "kill -9 $p1; t0=$(date +%s.%N); wait $p0; code=$?; t1=$(date +%s.%N)\n"
      "echo exit=$code; echo seconds=$(echo \"$t1 - $t0\" | bc); cat " + j.dir + "/r0.log\n";
  std::ofstream(j.dir + "/kill.sh") << script;
  const auto r = run_command("bash " + j.dir + "/kill.sh");
  EXPECT_NE(r.output.find("exit=1\n"), std::string::npos) << r.output;
  const auto at = r.output.find("seconds=");
  ASSERT_NE(at, std::string::npos) << r.output;
  EXPECT_LT(std::stod(r.output.substr(at + 8)), 30.0) << r.output;
  EXPECT_NE(r.output.find("failed"), std::string::npos) << r.output;
}

TEST(DistTrain, GrpoRunsOnTwoRanks) {
  Job j = make_job("dist-grpo",
                   "trainer: grpo\ntrain: {max_steps: 2, micro_batch_size: 2, threads: 1}\n"
                   "generation: {max_prompt_length: 96, max_completion_length: 8}\n"
                   "grpo: {num_generations: 3, beta: 0.04}\nrewards: [{name: math_answer}, {name: format, weight: 0.1, params: {boxed_count: 1}}]\n"
                   "checkpoint: {save_every: 1}\n");
  auto r = run_command(launch() + bin() + " train " + j.config + " --run-dir " + j.dir + "/run --set log.samples=2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto m = read_jsonl(j.dir + "/run/metrics.jsonl");
  ASSERT_EQ(m.size(), 2u);
  for (const auto& line : m) {
    for (const char* key : {"loss", "reward", "kl", "grad_norm", "completions/mean_length"}) {
      ASSERT_TRUE(line.contains(key)) << key << " in " << line.dump();
      EXPECT_TRUE(std::isfinite(line[key].get<double>())) << key;
    }
  }
  // samples.jsonl is written once (by rank 0): log.samples lines per logged step, not per rank.
  EXPECT_EQ(read_jsonl(j.dir + "/run/samples.jsonl").size(), 2u * 2u);
  std::ifstream latest(j.dir + "/run/checkpoints/latest");
  std::string name;
  latest >> name;
  EXPECT_EQ(name, "step-000002");
}

TEST(DistTrain, ZeroOneMatchesUnshardedTrainingAndItsCheckpointResumesOnOneRank) {
  Job j = make_job("dist-zero", kSft);
  auto plain = run_command(launch() + bin() + " train " + j.config + " --run-dir " + j.dir + "/plain");
  ASSERT_EQ(plain.exit_code, 0) << plain.output;
  auto zero = run_command(launch() + bin() + " train " + j.config + " --run-dir " + j.dir + "/zero --set dist.zero1=true");
  ASSERT_EQ(zero.exit_code, 0) << zero.output;
  EXPECT_LT(max_rel_diff(j.dir + "/zero/export", j.dir + "/plain/export"), 1e-5);
  EXPECT_GT(moved(j.dir + "/base", j.dir + "/zero/export"), 1e-2);
  // The gathered checkpoint is an ordinary full AdamW state: one process resumes it.
  auto one = run_scorch("train " + j.config + " --run-dir " + j.dir + "/one --set train.micro_batch_size=8 --resume " +
                        j.dir + "/zero/checkpoints/step-000002");
  ASSERT_EQ(one.exit_code, 0) << one.output;
  EXPECT_LT(max_rel_diff(j.dir + "/one/export", j.dir + "/plain/export"), 1e-4);
}

// LoRA with ZeRO-1: the adapter's tensors are what the ranks all-reduce and shard (the frozen base
// never enters the optimizer); two ranks train the adapter one process trains with the combined batch.
TEST(DistTrain, LoraWithZeroOneOnTwoRanksEqualsOneRankWithTheCombinedBatch) {
  Job j = make_job("dist-lora", std::string(kSft) + "lora: {enabled: true, r: 4, lora_alpha: 8, target_modules: all-linear}\n");
  auto one = run_scorch("train " + j.config + " --run-dir " + j.dir + "/one --set train.micro_batch_size=8");
  ASSERT_EQ(one.exit_code, 0) << one.output;
  auto two = run_command(launch() + bin() + " train " + j.config + " --run-dir " + j.dir + "/two --set dist.zero1=true");
  ASSERT_EQ(two.exit_code, 0) << two.output;
  const std::string adapter = "adapter_model.safetensors";
  EXPECT_LT(max_rel_diff(j.dir + "/two/export", j.dir + "/one/export", adapter), 1e-4);
  for (const auto& [name, t] : scorch::safetensors::load(j.dir + "/two/export/" + adapter)) {
    if (name.find("lora_B") != std::string::npos) EXPECT_GT(t.abs().max().item<double>(), 0.0) << name;  // trained
  }
  const auto state = scorch::safetensors::read_header(j.dir + "/two/checkpoints/step-000004/optimizer.safetensors");
  EXPECT_EQ(state.size(), 2u * 2 * 7 * 2);  // (exp_avg, exp_avg_sq) x layers x modules x (A, B), gathered from both ranks
  for (const auto& [name, info] : state) EXPECT_NE(name.find(".lora_"), std::string::npos) << name;
}

// DPO's loss is a mean over the step's pairs of all ranks (the loop's global denominator): two
// ranks with 2 pairs each equal one process with 4.
TEST(DistTrain, TwoRankDpoEqualsOneRankWithTheCombinedBatch) {
  Job j = make_job("dist-dpo", "");
  std::ofstream prefs(j.dir + "/prefs.jsonl");
  for (const auto& p : read_jsonl(j.dir + "/train.jsonl")) {
    const std::string good = p["completion"], answer = p["answer"].is_string() ? p["answer"].get<std::string>() : p["answer"].dump();
    std::string bad = good;
    bad.replace(bad.rfind(answer), answer.size(), answer + "7");
    prefs << nlohmann::json{{"prompt", p["prompt"]}, {"chosen", good}, {"rejected", bad}}.dump() << "\n";
  }
  prefs.close();
  // adam_epsilon 1e-4: at DPO's first steps many gradient entries are ~1e-9, where Adam's update is
  // ±lr whatever their size, so padding-order rounding (1e-7 relative) would flip whole updates.
  const std::string sets = " --set trainer=dpo --set data.train=" + j.dir + "/prefs.jsonl --set train.max_steps=3 "
                           "--set train.threads=1 --set dpo.beta=0.5 --set optim.learning_rate=5.0e-3 --set optim.adam_epsilon=1.0e-4";
  auto one = run_scorch("train " + j.config + " --run-dir " + j.dir + "/one --set train.micro_batch_size=4" + sets);
  ASSERT_EQ(one.exit_code, 0) << one.output;
  auto two = run_command(launch() + bin() + " train " + j.config + " --run-dir " + j.dir + "/two --set train.micro_batch_size=2" + sets);
  ASSERT_EQ(two.exit_code, 0) << two.output;
  EXPECT_LT(max_rel_diff(j.dir + "/two/export", j.dir + "/one/export"), 1e-4);
  EXPECT_GT(moved(j.dir + "/base", j.dir + "/one/export"), 1e-3);
  const auto m1 = read_jsonl(j.dir + "/one/metrics.jsonl"), m2 = read_jsonl(j.dir + "/two/metrics.jsonl");
  ASSERT_EQ(m1.size(), m2.size());
  for (size_t i = 0; i < m1.size(); ++i) {
    EXPECT_NEAR(m2[i]["loss"].get<double>(), m1[i]["loss"].get<double>(), 1e-4) << i;
    EXPECT_NEAR(m2[i]["rewards/margins"].get<double>(), m1[i]["rewards/margins"].get<double>(), 1e-4) << i;
  }
}

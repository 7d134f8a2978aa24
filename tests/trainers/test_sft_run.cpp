// SFT from the CLI as a user runs it: a tiny model, a few steps, metrics, checkpoints, export, and a
// run killed with SIGKILL mid-way that, resumed with the same command, ends bitwise identical to
// an uninterrupted run, also when the kill lands inside the final export.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "tests/support/run_cli.h"
#include "tests/support/jobs.h"
#include <ATen/ATen.h>
#include <limits>

#include "model/safetensors.h"

namespace {
using scorch::test::read_jsonl;
using scorch::test::kTinyModel;
namespace fs = std::filesystem;
using scorch::test::run_command;
using scorch::test::run_scorch;


struct Fixture {
  std::string dir, config;
};

// Data, a random model and a config in a fresh directory.
Fixture make_job(const std::string& tag, int max_steps, int save_every, const std::string& extra = "") {
  Fixture f;
  f.dir = scorch::test::temp_dir(tag);
  EXPECT_EQ(scorch::test::make_tiny_job_files(f.dir, 64), "");
  const std::string tok = scorch::test::quickstart_tokenizer();
  f.config = f.dir + "/job.yaml";
  std::ofstream(f.config) << "trainer: sft\nseed: 11\nmodel: {path: " << f.dir << "/base}\n"
                          << "tokenizer: {path: " << tok << ", chat_template: plain}\n"
                          << "data: {train: " << f.dir << "/train.jsonl, max_length: 96}\n"
                          << "train: {max_steps: " << max_steps << ", micro_batch_size: 4, gradient_accumulation_steps: 2, threads: 1}\n"
                          << "optim: {learning_rate: 1.0e-3, lr_scheduler_type: cosine, warmup_steps: 2}\n"
                          << "checkpoint: {save_every: " << save_every << ", keep_last: 2}\n"
                          << "log: {every: 1, level: warn}\n" << extra;
  return f;
}


bool same_bytes(const std::string& a, const std::string& b) {
  std::ifstream x(a, std::ios::binary), y(b, std::ios::binary);
  std::string sa((std::istreambuf_iterator<char>(x)), {}), sb((std::istreambuf_iterator<char>(y)), {});
  return !sa.empty() && sa == sb;
}
}  // namespace

TEST(SftRun, TrainsLogsCheckpointsAndExports) {
  Fixture f = make_job("sft-run", 6, 3);
  auto r = run_scorch("train " + f.config + " --run-dir " + f.dir + "/run");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto metrics = read_jsonl(f.dir + "/run/metrics.jsonl");
  ASSERT_EQ(metrics.size(), 6u);
  for (const auto& m : metrics) {
    ASSERT_TRUE(m["loss"].is_number()) << m.dump();
    EXPECT_GT(m["loss"].get<double>(), 0.0);
    EXPECT_TRUE(m["grad_norm"].is_number());
    EXPECT_GT(m["num_tokens"].get<double>(), 0.0);
  }
  // Random init: the loss starts near log(vocab) and goes down on this tiny set.
  EXPECT_NEAR(metrics.front()["loss"].get<double>(), std::log(512.0), 1.0);
  EXPECT_LT(metrics.back()["loss"].get<double>(), metrics.front()["loss"].get<double>());
  // Warmup then cosine: lr rises for 2 steps, then falls.
  EXPECT_LT(metrics[0]["learning_rate"].get<double>(), metrics[1]["learning_rate"].get<double>());
  EXPECT_GT(metrics[2]["learning_rate"].get<double>(), metrics[5]["learning_rate"].get<double>());
  EXPECT_TRUE(fs::exists(f.dir + "/run/checkpoints/step-000003/model.safetensors"));
  EXPECT_TRUE(fs::exists(f.dir + "/run/checkpoints/step-000006/optimizer.safetensors"));
  EXPECT_TRUE(fs::exists(f.dir + "/run/export/config.json"));
  EXPECT_TRUE(fs::exists(f.dir + "/run/export/tokenizer.model"));
  // Running the same command again resumes a finished run: nothing is retrained, nothing damaged.
  r = run_scorch("train " + f.config + " --run-dir " + f.dir + "/run");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(read_jsonl(f.dir + "/run/metrics.jsonl").size(), 6u);
}

TEST(SftRun, KilledAndResumedRunEndsBitwiseIdentical) {
  const int steps = 40;
  Fixture f = make_job("sft-kill", steps, 1);
  const std::string train = "'" + std::string(SCORCH_BIN) + "' train " + f.config + " --run-dir ";
  auto full = run_command(train + f.dir + "/full");
  ASSERT_EQ(full.exit_code, 0) << full.output;

  // Start the same job, SIGKILL it once it has written a checkpoint, then rerun the same command.
  const std::string run = f.dir + "/killed";
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", ("exec " + train + run + " > /dev/null 2>&1").c_str(), (char*)nullptr);
    _exit(127);
  }
  bool killed_mid_run = false;
  for (int i = 0; i < 6000; ++i) {
    if (fs::exists(run + "/checkpoints/latest")) {
      kill(pid, SIGKILL);
      std::string latest;
      std::ifstream(run + "/checkpoints/latest") >> latest;
      killed_mid_run = latest != "step-000040";
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  waitpid(pid, nullptr, 0);
  run_command("pkill -9 -f 'run-dir " + run + "'");
  ASSERT_TRUE(killed_mid_run) << "the run finished before it could be killed; the test proves nothing";
  auto resumed = run_command(train + run);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_TRUE(same_bytes(f.dir + "/full/export/model.safetensors", run + "/export/model.safetensors"))
      << "resumed run's final weights differ from the uninterrupted run's";
  const auto a = read_jsonl(f.dir + "/full/metrics.jsonl"), b = read_jsonl(run + "/metrics.jsonl");
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i]["loss"], b[i]["loss"]) << "step " << i + 1;
}

// Killed while the final export is being written (every file complete in the staging directory
// beside run/export, nothing yet in place): the run directory holds no export, and the same command
// again writes the uninterrupted run's bytes and leaves no staging directory behind. `scorch export
// --force` killed at the same point leaves the existing output directory exactly as it was, and
// its rerun replaces it whole.
TEST(SftRun, KilledDuringExportResumesToTheSameExportAndDamagesNothing) {
  Fixture f = make_job("sft-kill-export", 4, 2);
  const std::string train = "train " + f.config + " --run-dir ";
  auto r = run_scorch(train + f.dir + "/full");
  ASSERT_EQ(r.exit_code, 0) << r.output;

  const std::string run = f.dir + "/killed";
  r = scorch::test::run_scorch_killed_at("export", train + run);
  ASSERT_EQ(r.exit_code, scorch::test::kKilledExitCode) << "the export kill point was not reached\n" << r.output;
  EXPECT_FALSE(fs::exists(run + "/export"));
  EXPECT_EQ(scorch::test::partial_files(run).size(), 1u) << "the killed export's staging directory";
  r = run_scorch(train + run);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(same_bytes(f.dir + "/full/export/model.safetensors", run + "/export/model.safetensors"));
  EXPECT_EQ(scorch::test::files_below(f.dir + "/full/export"), scorch::test::files_below(run + "/export"));
  EXPECT_EQ(scorch::test::partial_files(run), std::vector<std::string>{});
  const auto a = read_jsonl(f.dir + "/full/metrics.jsonl"), b = read_jsonl(run + "/metrics.jsonl");
  ASSERT_EQ(a.size(), 4u);
  ASSERT_EQ(b.size(), a.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i]["loss"], b[i]["loss"]) << "step " << i + 1;

  // Over an existing export (the base model's): the killed command changes none of its files.
  const std::string existing = f.dir + "/existing";
  r = run_scorch("export --model " + f.dir + "/base --out " + existing);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto before = scorch::test::files_below(existing);
  const std::string export_trained = "export --model " + run + "/export --out " + existing + " --force";
  r = scorch::test::run_scorch_killed_at("export", export_trained);
  ASSERT_EQ(r.exit_code, scorch::test::kKilledExitCode) << "the export kill point was not reached\n" << r.output;
  EXPECT_EQ(scorch::test::files_below(existing), before) << "the killed export damaged the existing directory";
  EXPECT_EQ(scorch::test::partial_files(f.dir).size(), 1u) << "the killed export's staging directory";
  r = run_scorch(export_trained);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(same_bytes(run + "/export/model.safetensors", existing + "/model.safetensors"));
  EXPECT_EQ(scorch::test::partial_files(f.dir), std::vector<std::string>{});
}

TEST(SftRun, BadDataIsAUserErrorNamingFileAndLine) {
  Fixture f = make_job("sft-bad", 2, 0);
  std::ofstream(f.dir + "/train.jsonl", std::ios::app) << "{\"prompt\": \"1+1\", \"completion\": 2\n";
  auto r = run_scorch("train " + f.config + " --run-dir " + f.dir + "/run");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("train.jsonl:65"), std::string::npos) << r.output;
}

TEST(SftRun, ResumingWithADifferentModelShapeIsRefused) {
  Fixture f = make_job("sft-shape", 2, 1);
  auto r = run_scorch("train " + f.config + " --run-dir " + f.dir + "/run");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // Another model (hidden 48) pointed at the same checkpoint.
  std::string wider = kTinyModel;
  wider.replace(wider.find("\"hidden_size\": 32"), 17, "\"hidden_size\": 48");
  std::ofstream(f.dir + "/wide.json") << wider;
  r = run_scorch("init-model --config " + f.dir + "/wide.json --out " + f.dir + "/wide --tokenizer " +
                 std::string(SCORCH_SOURCE_DIR) + "/configs/quickstart/tokenizer.model");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_scorch("train " + f.config + " --run-dir " + f.dir + "/run2 --set model.path=" + f.dir +
                 "/wide --resume " + f.dir + "/run/checkpoints/step-000002");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("shape"), std::string::npos) << r.output;
}

// SFT with a LoRA adapter: resuming from a mid-run checkpoint (adapter + its optimizer state) ends
// bitwise identical to the uninterrupted run; the export is a PEFT adapter that `export --merge`
// turns into base + (lora_alpha / r) · B A; bad adapter settings are exit-2 errors.
TEST(SftRun, LoraRunResumesExactlyAndItsAdapterMergesIntoTheBase) {
  Fixture f = make_job("sft-lora", 4, 1,
                       "lora: {enabled: true, r: 4, lora_alpha: 8, lora_dropout: 0.1, target_modules: [q_proj, v_proj, down_proj]}\n");
  const std::string train = "train " + f.config + " --set checkpoint.keep_last=10 --run-dir ";
  auto r = run_scorch(train + f.dir + "/full");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_scorch(train + f.dir + "/resumed --resume " + f.dir + "/full/checkpoints/step-000002");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string adapter = f.dir + "/full/export/adapter_model.safetensors";
  EXPECT_TRUE(same_bytes(adapter, f.dir + "/resumed/export/adapter_model.safetensors"));
  const auto a = read_jsonl(f.dir + "/full/metrics.jsonl"), b = read_jsonl(f.dir + "/resumed/metrics.jsonl");
  ASSERT_EQ(a.size(), 4u);
  ASSERT_EQ(b.size(), 2u);
  EXPECT_EQ(a[3]["loss"], b[1]["loss"]);
  const auto header = scorch::safetensors::read_header(f.dir + "/full/checkpoints/step-000004/model.safetensors");
  EXPECT_EQ(header.size(), 2u * 3 * 2);  // layers x targets x (A, B): the checkpoint holds the adapter only

  r = run_scorch("export --model " + f.dir + "/full/export --out " + f.dir + "/merged --merge");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto base = scorch::safetensors::load(f.dir + "/base/model.safetensors");
  const auto merged = scorch::safetensors::load(f.dir + "/merged/model.safetensors");
  const auto lora = scorch::safetensors::load(adapter);
  ASSERT_EQ(merged.size(), base.size());
  for (const auto& [name, w] : base) {
    const std::string stem = name.substr(0, name.size() - std::string(".weight").size());
    const auto la = lora.find("base_model.model." + stem + ".lora_A.weight");
    at::Tensor expect = w.to(at::kDouble);
    if (la != lora.end()) {
      const at::Tensor lb = lora.at("base_model.model." + stem + ".lora_B.weight");
      ASSERT_GT(lb.abs().max().item<double>(), 0.0) << name;  // trained, not the initial zeros
      expect = expect + 2.0 * lb.to(at::kDouble).matmul(la->second.to(at::kDouble));
    }
    EXPECT_LT((merged.at(name).to(at::kDouble) - expect).abs().max().item<double>(), 1e-6) << name;
  }
  EXPECT_TRUE(fs::exists(f.dir + "/merged/tokenizer.model"));

  // `eval` takes the adapter directory itself (its base + the adapter) and scores what the merged model scores.
  const std::string eval = "eval --data " + f.dir + "/train.jsonl --max-new-tokens 8 --tokenizer " +
                           scorch::test::quickstart_tokenizer() + " --model ";
  r = run_scorch(eval + f.dir + "/full/export --out " + f.dir + "/eval_adapter.json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_scorch(eval + f.dir + "/merged --out " + f.dir + "/eval_merged.json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(nlohmann::json::parse(std::ifstream(f.dir + "/eval_adapter.json")),
            nlohmann::json::parse(std::ifstream(f.dir + "/eval_merged.json")));
  r = run_scorch("train " + f.config + " --run-dir " + f.dir + "/bad --set model.path=" + f.dir + "/full/export");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--merge"), std::string::npos) << r.output;

  r = run_scorch("export --model " + f.dir + "/full/export --out " + f.dir + "/x");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--merge"), std::string::npos) << r.output;
  r = run_scorch(train + f.dir + "/bad_targets --set lora.target_modules=[q_proj,qkv_proj]");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("qkv_proj"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("gate_proj"), std::string::npos) << r.output;
}

// A LoRA run killed while its PEFT adapter export is staged (every file written, nothing in place):
// no export in the run directory, and the same command again writes the uninterrupted run's
// adapter bytes and leaves no staging directory behind.
TEST(SftRun, LoraRunKilledDuringItsAdapterExportResumesToTheSameAdapter) {
  Fixture f = make_job("sft-lora-kill", 3, 3, "lora: {enabled: true, r: 4, lora_alpha: 8, target_modules: [q_proj, v_proj]}\n");
  const std::string train = "train " + f.config + " --run-dir ";
  auto r = run_scorch(train + f.dir + "/full");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string run = f.dir + "/killed";
  r = scorch::test::run_scorch_killed_at("export", train + run);
  ASSERT_EQ(r.exit_code, scorch::test::kKilledExitCode) << "the adapter export kill point was not reached\n" << r.output;
  EXPECT_FALSE(fs::exists(run + "/export"));
  EXPECT_EQ(scorch::test::partial_files(run).size(), 1u) << "the killed export's staging directory";
  r = run_scorch(train + run);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(same_bytes(f.dir + "/full/export/adapter_model.safetensors", run + "/export/adapter_model.safetensors"));
  EXPECT_EQ(scorch::test::files_below(f.dir + "/full/export"), scorch::test::files_below(run + "/export"));
  EXPECT_EQ(scorch::test::partial_files(run), std::vector<std::string>{});
}

// A checkpoint whose weights hold NaN is refused on resume (exit 2), and nothing is exported from it.
TEST(SftRun, ResumingFromNonFiniteWeightsIsRefused) {
  Fixture f = make_job("sft-nan", 2, 1);
  const std::string cmd = "train " + f.config + " --run-dir " + f.dir + "/run";
  auto r = run_scorch(cmd);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string weights = f.dir + "/run/checkpoints/step-000002/model.safetensors";
  scorch::safetensors::Metadata meta;
  auto tensors = scorch::safetensors::load(weights, &meta);
  at::Tensor w = tensors.at("model.layers.0.mlp.up_proj.weight").clone();
  w.view(-1)[5] = std::numeric_limits<float>::quiet_NaN();
  tensors["model.layers.0.mlp.up_proj.weight"] = w;
  scorch::safetensors::save(weights, tensors, meta);
  std::ifstream in(f.dir + "/run/export/model.safetensors", std::ios::binary);
  const std::string exported((std::istreambuf_iterator<char>(in)), {});

  r = run_scorch(cmd);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("model.layers.0.mlp.up_proj.weight"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("NaN"), std::string::npos) << r.output;
  std::ifstream again(f.dir + "/run/export/model.safetensors", std::ios::binary);
  EXPECT_EQ(std::string((std::istreambuf_iterator<char>(again)), {}), exported);
}

// The fused LM head (Transformer::token_logprobs -> lm_head_logprobs) against the unfused one
// (SCORCH_LM_HEAD=unfused: logits, then token_logprobs), and model.gradient_checkpointing: 20
// optimizer steps of packed SFT give the same losses to fp32 round-off.
TEST(SftRun, FusedLmHeadAndCheckpointingGiveTheUnfusedLossesOver20Steps) {
  auto run = [&](const std::string& tag, const std::string& env, const std::string& sets) {
    Fixture f = make_job(tag, 20, 0);
    auto r = run_command(env + " '" + SCORCH_BIN + "' train " + f.config + " --run-dir " + f.dir +
                         "/run --set data.packing=true --set checkpoint.export_final=false" + sets);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    std::vector<double> losses;
    for (const auto& m : read_jsonl(f.dir + "/run/metrics.jsonl")) losses.push_back(m["loss"].get<double>());
    return losses;
  };
  const auto unfused = run("sft-unfused", "SCORCH_LM_HEAD=unfused", "");
  const auto fused = run("sft-fused", "", "");
  const auto ckpt = run("sft-ckpt", "", " --set model.gradient_checkpointing=true");
  ASSERT_EQ(unfused.size(), 20u);
  ASSERT_EQ(fused.size(), 20u);
  ASSERT_EQ(ckpt.size(), 20u);
  double worst = 0, worst_ckpt = 0;
  for (size_t i = 0; i < 20; ++i) {
    worst = std::max(worst, std::abs(fused[i] - unfused[i]) / unfused[i]);
    worst_ckpt = std::max(worst_ckpt, std::abs(ckpt[i] - fused[i]) / fused[i]);
  }
  EXPECT_LT(worst, 1e-5);
  EXPECT_LT(worst_ckpt, 1e-6);
  std::printf("20 SFT steps: fused vs unfused worst relative loss difference %.2e, checkpointing %.2e\n", worst,
              worst_ckpt);
  EXPECT_LT(fused.back(), fused.front() - 0.5);  // it trains: the comparison is not of constants
}

// model.fused_training_ops (the fused RMSNorm / RoPE / SiLU * up with their backward) against the
// eager ops: 10 steps of packed fp32 SFT give the same losses within 1e-5 relative and the same
// gradient norms to fp32 round-off.
TEST(SftRun, FusedTrainingOpsGiveTheEagerLossesAndGradientNorms) {
  auto run = [&](const std::string& tag, const std::string& sets) {
    Fixture f = make_job(tag, 10, 0);
    auto r = run_scorch("train " + f.config + " --run-dir " + f.dir +
                        "/run --set data.packing=true --set checkpoint.export_final=false" + sets);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return read_jsonl(f.dir + "/run/metrics.jsonl");
  };
  const auto eager = run("sft-eager-ops", " --set model.fused_training_ops=false");
  const auto fused = run("sft-fused-ops", "");
  ASSERT_EQ(eager.size(), 10u);
  ASSERT_EQ(fused.size(), 10u);
  double worst_loss = 0, worst_grad = 0;
  for (size_t i = 0; i < 10; ++i) {
    const double le = eager[i]["loss"].get<double>(), lf = fused[i]["loss"].get<double>();
    const double ge = eager[i]["grad_norm"].get<double>(), gf = fused[i]["grad_norm"].get<double>();
    worst_loss = std::max(worst_loss, std::abs(lf - le) / std::abs(le));
    worst_grad = std::max(worst_grad, std::abs(gf - ge) / std::abs(ge));
  }
  std::printf("10 SFT steps: fused vs eager layer ops, worst relative difference: loss %.2e, grad_norm %.2e\n",
              worst_loss, worst_grad);
  EXPECT_LT(worst_loss, 1e-5);
  EXPECT_LT(worst_grad, 1e-4);
  EXPECT_LT(fused.back()["loss"].get<double>(), fused.front()["loss"].get<double>() - 0.3);  // it trains
}

// sft.completion_only_loss: false also trains the prompt tokens (more target tokens per step).
TEST(SftRun, CompletionOnlyLossFalseTrainsThePromptTokensToo) {
  auto first_step_tokens = [](const std::string& tag, const std::string& value) {
    Fixture f = make_job(tag, 1, 0);
    auto r = run_scorch("train " + f.config + " --run-dir " + f.dir + "/run --set checkpoint.export_final=false" +
                        " --set sft.completion_only_loss=" + value);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    const auto metrics = read_jsonl(f.dir + "/run/metrics.jsonl");
    return metrics.empty() ? 0.0 : metrics[0]["num_tokens"].get<double>();
  };
  const double completion_only = first_step_tokens("sft-col-true", "true");
  const double whole = first_step_tokens("sft-col-false", "false");
  EXPECT_GT(completion_only, 0);
  EXPECT_GT(whole, completion_only);
}

// The scorch binary as a user runs it: help, exit codes, and errors without stack traces.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "tests/support/run_cli.h"

using scorch::test::run_scorch;

namespace {
std::string read_file_or_empty(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
}  // namespace

TEST(Cli, HelpListsEverySubcommand) {
  auto r = run_scorch("--help");
  EXPECT_EQ(r.exit_code, 0);
  for (const char* sub : {"train", "generate", "eval", "export", "init-model", "reward", "version"}) {
    EXPECT_NE(r.output.find(sub), std::string::npos) << sub;
  }
  auto t = run_scorch("train --help");
  EXPECT_EQ(t.exit_code, 0);
  EXPECT_NE(t.output.find("--set"), std::string::npos);
  EXPECT_NE(t.output.find("--run-dir"), std::string::npos);
}

TEST(Cli, UnknownSubcommandIsAUserError) {
  auto r = run_scorch("trian cfg.yaml");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("unknown command 'trian'"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("did you mean 'train'"), std::string::npos) << r.output;
}

TEST(Cli, EvalSamplesBadCombinationsAreUserErrorsNamingTheFlag) {
  const std::string base = "eval --model /nonexistent/model --data /nonexistent/eval.jsonl ";
  const std::pair<std::string, std::string> cases[] = {
      {"--samples 0", "--samples must be >= 1"},
      {"--samples 4", "needs --temperature > 0"},
      {"--samples 4 --temperature 1 --attempts 2", "--attempts 1 only"},
  };
  for (const auto& [args, message] : cases) {
    auto r = run_scorch(base + args);
    EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.output;
    EXPECT_NE(r.output.find(message), std::string::npos) << args << "\n" << r.output;
  }
}

TEST(Cli, MissingConfigFileIsAUserErrorWithoutStackTrace) {
  auto r = run_scorch("train /nonexistent/job.yaml");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("cannot read config file '/nonexistent/job.yaml'"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("Exception raised from"), std::string::npos) << r.output;
}

TEST(Cli, UnreadableConfigIsAUserError) {
  const std::string dir = scorch::test::temp_dir("cli");
  auto r = run_scorch("train " + dir);  // a directory is not a readable config file
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("is a directory"), std::string::npos) << r.output;
}

TEST(Cli, DryRunValidatesAndWritesNothing) {
  const std::string dir = scorch::test::temp_dir("cli-dry");
  std::ofstream(dir + "/job.yaml") << "trainer: sft\nmodel:\n  path: m\ndata:\n  train: t.jsonl\nrun_dir: " << dir << "/run\n";
  auto r = run_scorch("train " + dir + "/job.yaml --dry-run --set optim.learning_rate=0.001");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("learning_rate: 0.001"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("is valid"), std::string::npos);
  std::ifstream probe(dir + "/run/config.yaml");
  EXPECT_FALSE(probe.good()) << "--dry-run wrote the run directory";
}

TEST(Cli, VersionPrintsTorchVersion) {
  auto r = run_scorch("version");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.output.find("torch 2.11.0"), std::string::npos) << r.output;
}

// Every shipped job config (configs/**/*.yaml with a `trainer:` key, configs/efficacy/ included; the
// rewards_* files are reward lists, not jobs) passes `train --dry-run`: a README command never fails
// on a stale key.
TEST(ShippedConfigs, EveryJobConfigValidates) {
  const std::string dir = std::string(SCORCH_SOURCE_DIR) + "/configs";
  int checked = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    if (entry.path().extension() != ".yaml") continue;
    std::ifstream in(entry.path());
    const std::string text((std::istreambuf_iterator<char>(in)), {});
    if (text.find("\ntrainer:") == std::string::npos && text.rfind("trainer:", 0) != 0) continue;
    const auto r = run_scorch("train '" + entry.path().string() + "' --dry-run");
    EXPECT_EQ(r.exit_code, 0) << entry.path() << "\n" << r.output;
    EXPECT_NE(r.output.find("is valid"), std::string::npos) << entry.path();
    ++checked;
  }
  EXPECT_GE(checked, 17);  // 8 in configs/, 9 in configs/efficacy/
}

// Flags are checked as strictly as config keys: each bad value is exit 2 with a message naming it,
// before anything is loaded or written.
TEST(Cli, BadFlagValuesAreUserErrorsNamingTheFlag) {
  const std::string dir = scorch::test::temp_dir("cli-flags");
  const std::string model = std::string(SCORCH_SOURCE_DIR) + "/configs/quickstart/model_config.json";
  ASSERT_EQ(run_scorch("init-model --config " + model + " --out " + dir + "/m --tokenizer " + SCORCH_SOURCE_DIR +
                       "/configs/quickstart/tokenizer.model").exit_code, 0);
  std::ofstream(dir + "/s.jsonl") << "{\"prompt\": \"1+1\", \"completion\": \"2\"}\n";
  std::ofstream(dir + "/r.yaml") << "rewards: [{name: exact_match}]\n";
  const std::string m = dir + "/m";
  const std::pair<std::string, std::string> cases[] = {
      {"eval --model " + m + " --data " + dir + "/s.jsonl --batch-size 0", "--batch-size"},
      {"eval --model " + m + " --data " + dir + "/s.jsonl --seed -1", "--seed"},
      {"eval --model " + m + " --data " + dir + "/s.jsonl --temperature 1e30", "--temperature"},
      {"generate --model " + m + " --prompt hi --temperature 1e30", "--temperature: Value 1e30 not in range 0"},
      {"generate --model " + m + " --prompt hi --n 100000000", "--n: Value 100000000 not in range 1 to 1048576"},
      {"generate --model " + m + " --prompt hi --decode-steps cuda_graph", "--decode-steps `cuda_graph` needs a CUDA device"},
      {"generate --model " + m + " --prompt hi --decode-steps dynamic --fused-decode-attention", "static decode steps"},
      {"train " + dir + "/job.yaml --run-dir ''", "--run-dir"},
      {"--bogus", "unknown option '--bogus'"},
      {"make-data --task arith --n 2000000000 --seed 1 --out " + dir + "/d.jsonl", "--n must be in"},
      {"make-data --task arith --n 99999999999999999999 --seed 1 --out " + dir + "/d.jsonl", "--n"},
      {"reward --config " + dir + "/r.yaml --in " + dir + "/s.jsonl --out " + dir + "/s.jsonl", "is the --in file"},
  };
  const std::string samples_before = read_file_or_empty(dir + "/s.jsonl");
  for (const auto& [args, message] : cases) {
    auto r = run_scorch(args);
    EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.output;
    EXPECT_NE(r.output.find(message), std::string::npos) << args << "\n" << r.output;
  }
  EXPECT_EQ(read_file_or_empty(dir + "/s.jsonl"), samples_before);
  EXPECT_FALSE(std::filesystem::exists(dir + "/d.jsonl"));
}

// config.json values that would make a model that cannot work (or cannot be allocated) are refused.
TEST(Cli, AbsurdOrInconsistentModelConfigsAreUserErrors) {
  const std::string dir = scorch::test::temp_dir("cli-cfg");
  const std::string base = R"("model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 4, "rms_norm_eps": 1e-6, "rope_theta": 10000.0)";
  const std::pair<std::string, std::string> cases[] = {
      {R"({"vocab_size": 10000000000000, )" + base + "}", "`vocab_size` must be <="},
      {R"({"vocab_size": 1000, "eos_token_id": 5000, )" + base + "}", "`eos_token_id` holds token id 5000"},
      {R"({"vocab_size": 1000, "bos_token_id": -3, )" + base + "}", "`bos_token_id` holds token id -3"},
      {R"({"vocab_size": 16000000, "hidden_size": 4000000, "intermediate_size": 64, "num_hidden_layers": 2,
          "num_attention_heads": 4, "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "model_type": "llama"})",
       "of memory is available"},
  };
  int i = 0;
  for (const auto& [json, message] : cases) {
    const std::string path = dir + "/c" + std::to_string(i++) + ".json";
    std::ofstream(path) << json;
    auto r = run_scorch("init-model --config " + path + " --out " + dir + "/out");
    EXPECT_EQ(r.exit_code, 2) << json << "\n" << r.output;
    EXPECT_NE(r.output.find(message), std::string::npos) << json << "\n" << r.output;
  }
  EXPECT_FALSE(std::filesystem::exists(dir + "/out"));
}

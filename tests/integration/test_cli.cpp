// The scorch binary as a user runs it: help, exit codes, and errors without stack traces.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "tests/support/run_cli.h"

using scorch::test::run_scorch;

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

// Every shipped job config (configs/*.yaml with a `trainer:` key; the rewards_* files are reward
// lists, not jobs) passes `train --dry-run`: a README command never fails on a stale key.
TEST(ShippedConfigs, EveryJobConfigValidates) {
  const std::string dir = std::string(SCORCH_SOURCE_DIR) + "/configs";
  int checked = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".yaml") continue;
    std::ifstream in(entry.path());
    const std::string text((std::istreambuf_iterator<char>(in)), {});
    if (text.find("\ntrainer:") == std::string::npos && text.rfind("trainer:", 0) != 0) continue;
    const auto r = run_scorch("train '" + entry.path().string() + "' --dry-run");
    EXPECT_EQ(r.exit_code, 0) << entry.path() << "\n" << r.output;
    EXPECT_NE(r.output.find("is valid"), std::string::npos) << entry.path();
    ++checked;
  }
  EXPECT_GE(checked, 4);
}

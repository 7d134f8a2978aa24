// common/: strings, atomic writes, staged directories, kill points, run directories, RNG derivation,
// progress formatting.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "common/error.h"
#include "common/fs.h"
#include "common/kill_point.h"
#include "common/progress.h"
#include "common/rng.h"
#include "common/run_dir.h"
#include "common/strings.h"
#include "tests/support/run_cli.h"

using namespace scorch;

TEST(Strings, EditDistanceMatchesHandComputedCases) {
  EXPECT_EQ(edit_distance(std::string("kitten"), std::string("sitting")), 3u);
  EXPECT_EQ(edit_distance(std::string(""), std::string("abc")), 3u);
  EXPECT_EQ(edit_distance(std::string("flaw"), std::string("lawn")), 2u);
  EXPECT_EQ(edit_distance(std::vector<long>{1, 2, 3}, std::vector<long>{1, 3}), 1u);
}

TEST(Strings, NearestSuggestsTyposButNotUnrelatedWords) {
  const std::vector<std::string> keys{"learning_rate", "weight_decay", "warmup_steps"};
  EXPECT_EQ(nearest("learnig_rate", keys), "learning_rate");
  EXPECT_EQ(nearest("weight_decy", keys), "weight_decay");
  EXPECT_EQ(nearest("zzz", keys), "");
}

TEST(Strings, SplitTrimAffixes) {
  EXPECT_EQ(split("a.b..c", '.'), (std::vector<std::string>{"a", "b", "", "c"}));
  EXPECT_EQ(trim("  x y \n"), "x y");
  EXPECT_TRUE(starts_with("optim.lr", "optim."));
  EXPECT_TRUE(ends_with("norm.weight", ".weight"));
  EXPECT_FALSE(ends_with("a", "abc"));
}

TEST(Strings, JsonNestingDepthCountsBracketsOutsideStringsOnly) {
  EXPECT_EQ(scorch::json_nesting_depth(R"({"a": 1})"), 1u);
  EXPECT_EQ(scorch::json_nesting_depth(R"({"a": [[1], {"b": []}]})"), 4u);
  EXPECT_EQ(scorch::json_nesting_depth(R"({"a": "[[[{{{", "b": "\"[[", "c": "\\"})"), 1u);  // in strings, after \" and \\
  EXPECT_EQ(scorch::json_nesting_depth("7"), 0u);
  EXPECT_EQ(scorch::json_nesting_depth(std::string(5000, '[') + std::string(5000, ']')), 5000u);
}

TEST(AtomicWrite, ReplacesContentAndLeavesNoTempFile) {
  const std::string dir = test::temp_dir("atomic");
  const std::string path = dir + "/file.txt";
  fs::atomic_write(path, "first");
  fs::atomic_write(path, "second");
  EXPECT_EQ(fs::read_file(path), "second");
  size_t files = 0;
  for (auto& e : std::filesystem::directory_iterator(dir)) (void)e, ++files;
  EXPECT_EQ(files, 1u);
}

TEST(AtomicWrite, InterruptedBeforeRenameLeavesOldFileIntact) {
  const std::string dir = test::temp_dir("atomic-crash");
  const std::string path = dir + "/state.json";
  fs::atomic_write(path, "{\"step\": 1}");
  fs::set_fail_before_rename_for_testing(true);
  EXPECT_THROW(fs::atomic_write(path, "{\"step\": 2, truncated"), std::runtime_error);
  fs::set_fail_before_rename_for_testing(false);
  EXPECT_EQ(fs::read_file(path), "{\"step\": 1}");
  for (auto& e : std::filesystem::directory_iterator(dir)) {
    EXPECT_EQ(e.path().filename().string(), "state.json") << "temp file left behind";
  }
}

namespace {
// The id of a process that has exited (and been reaped): no process runs under it now.
pid_t dead_pid() {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  ::waitpid(pid, nullptr, 0);
  return pid;
}
}  // namespace

// A writer killed before its commit() leaves `out.staging.<pid>` (or, killed mid-swap without
// RENAME_EXCHANGE, the old directory moved aside as `out.old.<pid>`): the next writer of `out`
// clears the dead writer's staging directory, puts a lone old directory back, and leaves alone a
// staging directory of a process that still runs.
TEST(StagedDirectory, TheNextWriterClearsWhatAKilledWriterLeft) {
  const std::string dir = test::temp_dir("staged");
  const std::string out = dir + "/out";
  const std::string dead = std::to_string(dead_pid()), live = std::to_string(::getppid());
  fs::make_directories(out + ".staging." + dead);
  fs::atomic_write(out + ".staging." + dead + "/model.safetensors", "half");
  fs::make_directories(out + ".staging." + live);
  fs::make_directories(out + ".old." + dead);
  fs::atomic_write(out + ".old." + dead + "/model.safetensors", "the previous export");
  {
    fs::StagedDirectory staged(out);
    EXPECT_FALSE(fs::exists(out + ".staging." + dead));
    EXPECT_TRUE(fs::exists(out + ".staging." + live));
    EXPECT_EQ(fs::read_file(out + "/model.safetensors"), "the previous export");
    fs::atomic_write(staged.path() + "/model.safetensors", "new");
    staged.commit();
  }
  EXPECT_EQ(fs::read_file(out + "/model.safetensors"), "new");
  std::set<std::string> names;
  for (auto& e : std::filesystem::directory_iterator(dir)) names.insert(e.path().filename().string());
  EXPECT_EQ(names, (std::set<std::string>{"out", "out.staging." + live}));
}

// SCORCH_KILL_AT=NAME:N kills the process with SIGKILL at the N-th pass through kill_point(NAME)
// and at no other point.
TEST(KillPoint, KillsAtTheNamedPointsNthPassOnly) {
  const std::string dir = test::temp_dir("kill-point");
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::setenv("SCORCH_KILL_AT", "export:2", 1);
    kill_point("export-other");
    kill_point("checkpoint");
    kill_point("export");
    std::ofstream(dir + "/passed-first") << "1";
    kill_point("export");
    std::ofstream(dir + "/passed-second") << "1";
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status)) << "exited with " << WEXITSTATUS(status);
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
  EXPECT_TRUE(fs::exists(dir + "/passed-first"));
  EXPECT_FALSE(fs::exists(dir + "/passed-second"));
}

TEST(ReadFile, MissingFileAndDirectoryAreUserErrors) {
  const std::string dir = test::temp_dir("read");
  try {
    fs::read_file(dir + "/nope.yaml", "config file");
    FAIL();
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("no such file"), std::string::npos);
  }
  EXPECT_THROW(fs::read_file(dir, "config file"), UserError);
}

TEST(RunDir, SameConfigResumesDifferentConfigIsRefused) {
  const std::string root = test::temp_dir("rundir");
  const std::string path = root + "/run";
  RunDir first = prepare_run_dir(path, "trainer: sft\nseed: 1\n");
  EXPECT_FALSE(first.resuming);
  RunDir again = prepare_run_dir(path, "trainer: sft\nseed: 1\n");
  EXPECT_TRUE(again.resuming);
  fs::atomic_write(path + "/metrics.jsonl", "{\"step\": 1}\n");  // the job has started
  try {
    prepare_run_dir(path, "trainer: sft\nseed: 2\n");
    FAIL() << "another job's run directory was accepted";
  } catch (const UserError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("belongs to another job"), std::string::npos) << msg;
    EXPECT_NE(msg.find("line 2"), std::string::npos) << msg;
  }
  EXPECT_EQ(fs::read_file(path + "/config.yaml"), "trainer: sft\nseed: 1\n") << "the other job's config was damaged";
}

// A job that failed while starting (only its config.yaml written) does not block the corrected
// config; as soon as it has written metrics, checkpoints or an export, it does.
TEST(RunDir, AJobThatNeverStartedTakesTheCorrectedConfig) {
  const std::string path = test::temp_dir("rundir-unstarted") + "/run";
  prepare_run_dir(path, "trainer: sft\nlora: {enabled: true}\n");
  RunDir fixed = prepare_run_dir(path, "trainer: sft\nlora: {enabled: false}\n");
  EXPECT_FALSE(fixed.resuming);
  EXPECT_EQ(fs::read_file(path + "/config.yaml"), "trainer: sft\nlora: {enabled: false}\n");
  for (const char* artifact : {"/checkpoints", "/export"}) {
    const std::string started = test::temp_dir(std::string("rundir-started") + (artifact + 1)) + "/run";
    prepare_run_dir(started, "seed: 1\n");
    fs::make_directories(started + artifact);
    EXPECT_THROW(prepare_run_dir(started, "seed: 2\n"), UserError) << artifact;
    EXPECT_EQ(fs::read_file(started + "/config.yaml"), "seed: 1\n") << artifact;
  }
}

TEST(Rng, DerivedSeedsAreDeterministicAndDistinctPerTag) {
  EXPECT_EQ(rng::derive(42, {rng::kTagData, 3}), rng::derive(42, {rng::kTagData, 3}));
  std::set<uint64_t> seen;
  for (uint64_t tag = 0; tag < 64; ++tag) seen.insert(rng::derive(42, {tag}));
  seen.insert(rng::derive(43, {0}));
  EXPECT_EQ(seen.size(), 65u);
  auto a = rng::engine(7, {rng::kTagSampling});
  auto b = rng::engine(7, {rng::kTagSampling});
  for (int i = 0; i < 10; ++i) EXPECT_EQ(a(), b());
}

TEST(Progress, DurationFormatting) {
  EXPECT_EQ(ProgressBar::format_duration(5), "5s");
  EXPECT_EQ(ProgressBar::format_duration(185), "3m05s");
  EXPECT_EQ(ProgressBar::format_duration(3720), "1h02m");
  EXPECT_EQ(ProgressBar::format_duration(-1), "?");
}

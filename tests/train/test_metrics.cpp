// metrics.jsonl / samples.jsonl: one parsable object per line, flushed at once, truncated on resume
// so a step never appears twice; only rank 0 writes; TimeSplits accumulates phase times.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <thread>

#include "common/fs.h"
#include "train/metrics.h"

namespace scorch {
namespace {
namespace stdfs = std::filesystem;

void remove_tree(const std::string& path) { scorch::fs::remove_all(path); }  // never std::filesystem's (common/fs.h)

class Metrics : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (stdfs::temp_directory_path() / ("scorch_metrics_" + std::to_string(::getpid()) + "_" +
                                            ::testing::UnitTest::GetInstance()->current_test_info()->name()))
               .string();
    remove_tree(dir_);
    stdfs::create_directories(dir_);
  }
  void TearDown() override { remove_tree(dir_); }

  std::vector<nlohmann::json> read_lines(const std::string& file) const {
    std::vector<nlohmann::json> out;
    std::istringstream in(fs::read_file(dir_ + "/" + file));
    std::string line;
    while (std::getline(in, line)) out.push_back(nlohmann::json::parse(line));  // throws if torn
    return out;
  }
  std::string dir_;
};

TEST_F(Metrics, EachLogIsOneFlushedJsonLineWithStepAndNonFiniteAsNull) {
  MetricsLogger m(dir_, 0);
  m.log(1, std::map<std::string, double>{{metric::kLoss, 2.5}, {metric::kLearningRate, 1e-5}});
  // Readable before the logger is destroyed: every line is flushed.
  auto lines = read_lines("metrics.jsonl");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0]["step"], 1);
  EXPECT_EQ(lines[0]["loss"], 2.5);
  EXPECT_EQ(lines[0]["learning_rate"], 1e-5);
  EXPECT_EQ(fs::read_file(dir_ + "/metrics.jsonl").substr(0, 9), "{\"step\":1");  // step first
  m.log(2, std::map<std::string, double>{{metric::kGradNorm, std::numeric_limits<double>::quiet_NaN()},
                                         {metric::reward_mean("math_answer"), 0.75}});
  m.log(3, nlohmann::json{{"loss", 1.0}, {"eval_accuracy", 0.5}});
  lines = read_lines("metrics.jsonl");
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_TRUE(lines[1]["grad_norm"].is_null());
  EXPECT_EQ(lines[1]["rewards/math_answer/mean"], 0.75);
  EXPECT_EQ(lines[2]["step"], 3);
  EXPECT_EQ(lines[2]["eval_accuracy"], 0.5);
}

TEST_F(Metrics, ResumeDropsLinesAfterTheResumedStepAndATornLastLine) {
  {
    MetricsLogger m(dir_, 0);
    for (int64_t s = 1; s <= 5; ++s) m.log(s, std::map<std::string, double>{{"loss", 10.0 - s}});
  }
  std::ofstream(dir_ + "/metrics.jsonl", std::ios::app) << "{\"step\": 6, \"lo";  // crash mid-line
  {
    MetricsLogger resumed(dir_, 0, /*keep_through_step=*/3);
    auto lines = read_lines("metrics.jsonl");
    ASSERT_EQ(lines.size(), 3u);
    EXPECT_EQ(lines.back()["step"], 3);
    resumed.log(4, std::map<std::string, double>{{"loss", 0.5}});
  }
  auto lines = read_lines("metrics.jsonl");
  ASSERT_EQ(lines.size(), 4u);
  for (size_t i = 0; i < lines.size(); ++i) EXPECT_EQ(lines[i]["step"], static_cast<int64_t>(i + 1));
  EXPECT_EQ(lines[3]["loss"], 0.5);
  MetricsLogger fresh(dir_, 0, -1);  // a fresh start keeps nothing
  EXPECT_TRUE(read_lines("metrics.jsonl").empty());
}

TEST_F(Metrics, OnlyRankZeroWrites) {
  MetricsLogger m(dir_, 1);
  m.log(1, std::map<std::string, double>{{"loss", 1.0}});
  SamplesLogger s(dir_, 2);
  s.log(1, nlohmann::json{{"completion", "x"}});
  EXPECT_FALSE(fs::exists(dir_ + "/metrics.jsonl"));
  EXPECT_FALSE(fs::exists(dir_ + "/samples.jsonl"));
}

TEST_F(Metrics, SamplesLoggerWritesOneLinePerSampleAndTruncatesOnResume) {
  {
    SamplesLogger s(dir_, 0);
    s.log(1, nlohmann::json{{"prompt", "1+1"}, {"completion", "\\boxed{2}"}, {"reward", 1.0}});
    s.log(2, nlohmann::json{{"prompt", "2+2"}, {"completion", "5"}, {"reward", 0.0}});
  }
  SamplesLogger resumed(dir_, 0, 1);
  const auto lines = read_lines("samples.jsonl");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0]["step"], 1);
  EXPECT_EQ(lines[0]["completion"], "\\boxed{2}");
}

TEST(TimeSplits, AccumulatesPhasesAndTakeResets) {
  TimeSplits t;
  {
    auto scope = t.measure("generation");
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
  }
  {
    auto scope = t.measure("generation");
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  t.add("reward", 0.25);
  EXPECT_GE(t.seconds("generation"), 0.04);
  EXPECT_LT(t.seconds("generation"), 5.0);
  const auto taken = t.take("time/");
  EXPECT_EQ(taken.size(), 2u);
  EXPECT_EQ(taken.at("time/reward"), 0.25);
  EXPECT_GE(taken.at("time/generation"), 0.04);
  EXPECT_EQ(t.seconds("generation"), 0.0);
  Stopwatch w;
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_GE(w.seconds(), 0.005);
}

}  // namespace
}  // namespace scorch

// `scorch reward` end to end: the binary (SCORCH_BIN) on small files written by the test.
// No std::filesystem here: the torch wheel's libtorch.so exports its own std::filesystem::remove_all,
// which segfaults when called from a binary linked against it (seen with torch 2.11.0).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace {

struct Result {
  int rc = -1;
  std::string output;
};

Result run(const std::string& args) {
  const std::string cmd = std::string(SCORCH_BIN) + " reward " + args + " 2>&1";
  Result r;
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) r.output.append(buf, n);
  const int status = pclose(pipe);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

class RewardCli : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string root = std::string(SCORCH_BINARY_DIR) + "/test_tmp";
    ::mkdir(root.c_str(), 0755);
    dir_ = root + "/reward_cli_" + std::to_string(::getpid()) + "_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    remove_dir();
    ASSERT_EQ(::mkdir(dir_.c_str(), 0755), 0) << dir_;
  }
  void TearDown() override { remove_dir(); }
  void remove_dir() const { ASSERT_EQ(std::system(("rm -rf '" + dir_ + "'").c_str()), 0); }
  std::string write(const std::string& name, const std::string& text) {
    const std::string p = path(name);
    std::ofstream(p) << text;
    return p;
  }
  std::vector<nlohmann::json> read_jsonl(const std::string& name) {
    std::ifstream in(path(name));
    std::vector<nlohmann::json> out;
    std::string line;
    while (std::getline(in, line))
      if (!line.empty()) out.push_back(nlohmann::json::parse(line));
    return out;
  }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  static bool exists(const std::string& p) { return ::access(p.c_str(), F_OK) == 0; }
  std::string dir_;
};

TEST_F(RewardCli, WritesWeightedTotalAndComponentsPerLineAndPrintsASummary) {
  const auto cfg = write("r.yaml",
                         "rewards:\n"
                         "  - name: math_answer\n"
                         "    weight: 1.0\n"
                         "  - name: format\n"
                         "    weight: 0.5\n"
                         "    params: {boxed_count: 1}\n");
  const auto in = write("in.jsonl",
                        "{\"id\": 1, \"prompt\": \"2+2?\", \"completion\": \"\\\\boxed{4}\", \"answer\": \"4\"}\n"
                        "{\"id\": 2, \"prompt\": \"2+3?\", \"completion\": \"it is 6\", \"answer\": 5}\n"
                        "\n"
                        "{\"id\": 3, \"prompt\": \"1/2?\", \"completion\": \"\\\\boxed{0.5}\"}\n");
  const Result r = run("--config " + cfg + " --in " + in + " --out " + path("out.jsonl"));
  ASSERT_EQ(r.rc, 0) << r.output;
  const auto lines = read_jsonl("out.jsonl");
  ASSERT_EQ(lines.size(), 3u);
  // Input fields are kept; reward = 1.0 * math + 0.5 * format.
  EXPECT_EQ(lines[0]["id"], 1);
  EXPECT_EQ(lines[0]["answer"], "4");
  EXPECT_DOUBLE_EQ(lines[0]["reward"].get<double>(), 1.0 + 0.5);
  EXPECT_DOUBLE_EQ(lines[0]["rewards"]["math_answer"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(lines[0]["rewards"]["format"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(lines[1]["reward"].get<double>(), 0.0);  // wrong, and no box
  // No gold answer: math_answer cannot score it, so neither can the total.
  EXPECT_TRUE(lines[2]["reward"].is_null());
  EXPECT_TRUE(lines[2]["rewards"]["math_answer"].is_null());
  EXPECT_DOUBLE_EQ(lines[2]["rewards"]["format"].get<double>(), 1.0);
  EXPECT_NE(r.output.find("math_answer"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("rewards/math_answer/nan_count = 1"), std::string::npos) << r.output;
}

TEST_F(RewardCli, GroupFieldFormsTheGroupsOfSelfConsistencyRewards) {
  const auto in = write("in.jsonl",
                        "{\"prompt\": \"q\", \"completion\": \"\\\\boxed{3}\", \"group\": \"a\"}\n"
                        "{\"prompt\": \"q\", \"completion\": \"\\\\boxed{7}\", \"group\": 1}\n"
                        "{\"prompt\": \"q\", \"completion\": \"\\\\boxed{3}\", \"group\": \"a\"}\n"
                        "{\"prompt\": \"q\", \"completion\": \"\\\\boxed{4}\", \"group\": \"a\"}\n"
                        "{\"prompt\": \"q\", \"completion\": \"\\\\boxed{4}\"}\n");
  Result r = run("--config " + write("m.yaml", "rewards: [{name: majority_vote}]\n") + " --in " + in + " --out " + path("m.jsonl"));
  ASSERT_EQ(r.rc, 0) << r.output;
  auto lines = read_jsonl("m.jsonl");
  ASSERT_EQ(lines.size(), 5u);
  // Group "a" votes 3,3,4 -> label 3; group 1 and the line without `group` are groups of one.
  std::vector<double> expected = {1, 1, 1, 0, 1};
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_DOUBLE_EQ(lines[i]["reward"].get<double>(), expected[i]) << i;
  EXPECT_FALSE(lines[0].contains("advantage_offset"));
  EXPECT_NE(r.output.find("scored 5 samples in 3 groups"), std::string::npos) << r.output;
  // soft_consistency with kappa 0.9: group "a" (majority 2/3) scores 0 with offset -delta (0.5 by
  // default); a group of one is unanimous: weight 1, no offset.
  r = run("--config " + write("s.yaml", "rewards: [{name: soft_consistency, params: {kappa: 0.9}}]\n") + " --in " + in +
          " --out " + path("s.jsonl"));
  ASSERT_EQ(r.rc, 0) << r.output;
  lines = read_jsonl("s.jsonl");
  expected = {0, 1, 0, 0, 1};
  const std::vector<double> offsets = {-0.5, 0, -0.5, -0.5, 0};
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_DOUBLE_EQ(lines[i]["reward"].get<double>(), expected[i]) << i;
    EXPECT_DOUBLE_EQ(lines[i]["advantage_offset"].get<double>(), offsets[i]) << i;
  }
}

TEST_F(RewardCli, ConfigErrorsExitTwoNamingTheKeyPath) {
  const auto in = write("in.jsonl", "{\"prompt\": \"q\", \"completion\": \"1\", \"answer\": \"1\"}\n");
  const auto out = path("out.jsonl");
  Result r = run("--config " + write("a.yaml", "rewards:\n  - name: math_anser\n") + " --in " + in + " --out " + out);
  EXPECT_EQ(r.rc, 2) << r.output;
  EXPECT_NE(r.output.find("a.yaml:2"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("did you mean `math_answer`"), std::string::npos) << r.output;
  r = run("--config " + write("b.yaml", "rewards:\n  - name: math_answer\n    params:\n      boxd: true\n") + " --in " + in + " --out " + out);
  EXPECT_EQ(r.rc, 2) << r.output;
  EXPECT_NE(r.output.find("b.yaml:4"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("`rewards[0].params.boxd`"), std::string::npos) << r.output;
  r = run("--config " + write("c.yaml", "rewards:\n  - name: math_answer\n    params: {rel_tol: -1}\n") + " --in " + in + " --out " + out);
  EXPECT_EQ(r.rc, 2) << r.output;
  EXPECT_NE(r.output.find("rewards[0].params.rel_tol"), std::string::npos) << r.output;
  r = run("--config " + write("d.yaml", "reward:\n  - name: math_answer\n") + " --in " + in + " --out " + out);
  EXPECT_EQ(r.rc, 2) << r.output;
  EXPECT_NE(r.output.find("did you mean `rewards`"), std::string::npos) << r.output;
  EXPECT_FALSE(exists(out));
}

TEST_F(RewardCli, MalformedSamplesExitTwoNamingTheLine) {
  const auto cfg = write("r.yaml", "rewards: [{name: math_answer}]\n");
  Result r = run("--config " + cfg + " --in " + write("bad.jsonl", "{\"prompt\": \"q\", \"completion\": \"1\"}\n{oops\n") +
                 " --out " + path("o.jsonl"));
  EXPECT_EQ(r.rc, 2) << r.output;
  EXPECT_NE(r.output.find("bad.jsonl:2"), std::string::npos) << r.output;
  r = run("--config " + cfg + " --in " + write("nocomp.jsonl", "{\"prompt\": \"q\"}\n") + " --out " + path("o.jsonl"));
  EXPECT_EQ(r.rc, 2) << r.output;
  EXPECT_NE(r.output.find("`completion`"), std::string::npos) << r.output;
  r = run("--config " + cfg + " --in " + path("missing.jsonl") + " --out " + path("o.jsonl"));
  EXPECT_EQ(r.rc, 2) << r.output;
}

TEST_F(RewardCli, SelfJudgingRewardNeedsAModelDirectory) {
  const auto cfg = write("r.yaml", "rewards: [{name: math_answer}, {name: self_verify, weight: 0.5}]\n");
  const auto in = write("in.jsonl", "{\"prompt\": \"q\", \"completion\": \"1\", \"answer\": \"1\"}\n");
  Result r = run("--config " + cfg + " --in " + in + " --out " + path("o.jsonl"));
  EXPECT_EQ(r.rc, 2) << r.output;
  EXPECT_NE(r.output.find("self_verify needs --model DIR"), std::string::npos) << r.output;
  // A directory without a model/tokenizer is a user error naming it (the model-backed judge loads it).
  r = run("--config " + cfg + " --in " + in + " --out " + path("o.jsonl") + " --model " + dir_);
  EXPECT_EQ(r.rc, 2) << r.output;
  EXPECT_NE(r.output.find(dir_), std::string::npos) << r.output;
}

TEST_F(RewardCli, ListShowsEveryRewardWithItsParams) {
  const Result r = run("--list");
  ASSERT_EQ(r.rc, 0) << r.output;
  for (const char* s : {"math_answer", "majority_vote", "soft_consistency", "self_rubric (needs --model)", "max_length", "kappa"})
    EXPECT_NE(r.output.find(s), std::string::npos) << s;
}

}  // namespace

// majority_vote (TTRL/SRT) and soft_consistency (RESTRAIN) on groups whose votes are counted by hand.
#include <gtest/gtest.h>

#include <cmath>

#include "rewards/reward.h"

namespace scorch::rewards {
namespace {

struct Group {
  std::vector<std::string> completions;
  std::string gold;  // "" = none
};

RewardBatch groups(const std::vector<Group>& gs) {
  RewardBatch b;
  for (size_t g = 0; g < gs.size(); ++g) {
    for (const auto& c : gs[g].completions) {
      RewardSample s;
      s.prompt = "Question " + std::to_string(g);
      s.completion = c;
      s.group = static_cast<int64_t>(g);
      if (!gs[g].gold.empty()) s.fields["answer"] = gs[g].gold;
      b.samples.push_back(s);
    }
  }
  b.index_groups();
  return b;
}

RewardSpec spec(const std::string& name, const std::string& params = "{}") {
  RewardSpec s;
  s.name = name;
  s.params = parse_reward_params(params);
  return s;
}

TEST(MajorityVote, RewardsTheMostFrequentEquivalentAnswerWithDiagnostics) {
  RewardSet set({spec("majority_vote")});
  const auto out = set.score(groups({
      // 4 and 4.0 tie with 5 and 5 (2 votes each): the earliest first occurrence (4) wins.
      {{"\\boxed{4}", "The answer is 4.0", "\\boxed{5}", "no idea", "\\boxed{5}"}, "5"},
      // 1/2 and 0.5 are one answer with 2 votes.
      {{"\\boxed{1/2}", "\\boxed{0.5}", "\\boxed{3}"}, "0.5"},
      // Nothing parses: no pseudo-label, every member 0.
      {{"nothing", "nothing either"}, ""},
  }));
  EXPECT_EQ(out.components[0], (std::vector<double>{1, 1, 0, 0, 0, 1, 1, 0, 0, 0}));
  const auto& m = out.metrics;
  EXPECT_DOUBLE_EQ(m.at("rewards/majority_vote/majority_ratio"), (2.0 / 5.0 + 2.0 / 3.0) / 2.0);
  EXPECT_DOUBLE_EQ(m.at("rewards/majority_vote/label_accuracy"), 0.5);
  // Group 1: gold rewards 0,0,1,0,1 vs pseudo 1,1,0,0,0 agree once; group 2 agrees 3 of 3.
  EXPECT_DOUBLE_EQ(m.at("rewards/majority_vote/reward_accuracy"), 4.0 / 8.0);
  EXPECT_EQ(m.at("rewards/majority_vote/no_label_groups"), 1.0);
}

TEST(MajorityVote, TiesGoToTheAnswerSeenFirstAndUnparseableNeverWins) {
  RewardSet set({spec("majority_vote")});
  const auto out = set.score(groups({{{"\\boxed{5}", "\\boxed{4}", "\\boxed{4}", "\\boxed{5}"}, ""},
                                     {{"blah", "blah", "blah", "\\boxed{9}"}, ""}}));
  EXPECT_EQ(out.components[0], (std::vector<double>{1, 0, 0, 1, 0, 0, 0, 1}));
  EXPECT_TRUE(std::isnan(out.metrics.at("rewards/majority_vote/label_accuracy")));  // no gold anywhere
}

TEST(SoftConsistency, GaussianWeightsOfFrequencyAndSelfPenalisation) {
  RewardSet set({spec("soft_consistency", "{center: 1.0, sigma: 0.3, kappa: 0.3, delta: 0.2}")});
  const auto out = set.score(groups({
      {{"\\boxed{4}", "\\boxed{4}", "\\boxed{4}", "\\boxed{7}"}, "4"},  // f = 3/4 and 1/4
      {{"\\boxed{1}", "\\boxed{2}", "\\boxed{3}", "\\boxed{4}"}, ""},   // majority 1/4 < kappa
      {{"\\boxed{9}", "\\boxed{9}", "none", "none"}, ""},               // f = 2/4, unparseable 0
  }));
  const auto g = [](double f) { return std::exp(-(f - 1.0) * (f - 1.0) / (2 * 0.3 * 0.3)); };
  const double w4 = g(0.75) / (g(0.75) + g(0.25)), w7 = g(0.25) / (g(0.75) + g(0.25));
  const std::vector<double> expected = {w4, w4, w4, w7, 0, 0, 0, 0, 1, 1, 0, 0};
  const auto& v = out.components[0];
  ASSERT_EQ(v.size(), expected.size());
  for (size_t i = 0; i < v.size(); ++i) EXPECT_NEAR(v[i], expected[i], 1e-12) << "i=" << i;
  const std::vector<double> offsets = {0, 0, 0, 0, -0.2, -0.2, -0.2, -0.2, 0, 0, 0, 0};
  for (size_t i = 0; i < offsets.size(); ++i) EXPECT_DOUBLE_EQ(out.advantage_offsets[i], offsets[i]) << "i=" << i;
  EXPECT_EQ(out.metrics.at("rewards/soft_consistency/low_consistency_groups"), 1.0);
  EXPECT_DOUBLE_EQ(out.metrics.at("rewards/soft_consistency/label_accuracy"), 1.0);
}

TEST(SoftConsistency, WiderSigmaFlattensTheWeights) {
  const auto run = [](double sigma) {
    RewardSet set({spec("soft_consistency", "{sigma: " + std::to_string(sigma) + ", kappa: 0.0}")});
    return set.score(groups({{{"\\boxed{1}", "\\boxed{1}", "\\boxed{1}", "\\boxed{2}"}, ""}})).components[0];
  };
  const auto narrow = run(0.1), wide = run(100.0);
  EXPECT_GT(narrow[0] - narrow[3], wide[0] - wide[3]);
  EXPECT_NEAR(wide[0], 0.5, 1e-4);  // a flat Gaussian weighs both answers equally
}

}  // namespace
}  // namespace scorch::rewards

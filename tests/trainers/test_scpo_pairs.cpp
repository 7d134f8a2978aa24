// ScPO's pair choice on hand-made votes (scpo_pairs.h): the most- and least-voted answers, the
// threshold τ·k (inclusive), ties for the top and the bottom, unparseable responses, unanimous
// groups, equivalent answers voting together, and the weight (V+ − V−)/k.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "trainers/dpo/scpo_pairs.h"

namespace scorch::trainers {
namespace {

TEST(ScpoPairs, ChoosesMostAndLeastVotedAnswersWithTheVoteMarginAsWeight) {
  //                          0    1    2    3    4    5    6    7
  const std::vector<std::string> a = {"5", "7", "5", "9", "5", "7", "5", "5"};
  const ScpoPairChoice c = choose_scpo_pair(a, 0.5);
  EXPECT_EQ(c.verdict, ScpoVerdict::kKept);
  EXPECT_EQ(c.chosen, 0);    // first response of answer 5 (V = 5)
  EXPECT_EQ(c.rejected, 3);  // answer 9 (V = 1) is least voted, not 7 (V = 2)
  EXPECT_EQ(c.top_votes, 5);
  EXPECT_EQ(c.bottom_votes, 1);
  EXPECT_DOUBLE_EQ(c.weight, 4.0 / 8.0);
  EXPECT_EQ(c.chosen_answer, "5");
  EXPECT_EQ(c.rejected_answer, "9");
}

TEST(ScpoPairs, ThresholdIsInclusiveAndAFractionOfTheSamples) {
  const std::vector<std::string> a = {"1", "1", "1", "1", "2", "3", "2", "4"};  // V+ = 4 of 8
  EXPECT_EQ(choose_scpo_pair(a, 0.5).verdict, ScpoVerdict::kKept);            // 4 ≥ 0.5·8
  EXPECT_EQ(choose_scpo_pair(a, 0.6).verdict, ScpoVerdict::kBelowThreshold);  // 4 < 4.8
  EXPECT_DOUBLE_EQ(choose_scpo_pair(a, 0.5).weight, 3.0 / 8.0);               // 4 − 1
}

TEST(ScpoPairs, TopTieGoesToTheFirstFormedAnswerAndEqualVotesGiveNoPair) {
  const std::vector<std::string> three = {"8", "6", "6", "8", "8", "6", "3", "3"};  // 3-3-2
  const ScpoPairChoice c = choose_scpo_pair(three, 0.25);
  EXPECT_EQ(c.verdict, ScpoVerdict::kKept);
  EXPECT_EQ(c.chosen_answer, "8");  // formed first
  EXPECT_EQ(c.rejected_answer, "3");
  EXPECT_DOUBLE_EQ(c.weight, 1.0 / 8.0);
  const std::vector<std::string> half = {"1", "2", "2", "1"};  // 2-2: w = 0 compares nothing
  EXPECT_EQ(choose_scpo_pair(half, 0.5).verdict, ScpoVerdict::kTie);
  // A bottom tie picks the least-voted answer formed first.
  const std::vector<std::string> bottom = {"4", "4", "4", "9", "2"};
  EXPECT_EQ(choose_scpo_pair(bottom, 0.5).rejected, 3);
}

TEST(ScpoPairs, UnparseableResponsesNeitherVoteNorGetChosen) {
  const std::vector<std::string> a = {"", "3", "", "3", "3", "", "", "4"};
  const ScpoPairChoice c = choose_scpo_pair(a, 0.375);  // V+ = 3 ≥ 3
  EXPECT_EQ(c.verdict, ScpoVerdict::kKept);
  EXPECT_EQ(c.chosen, 1);
  EXPECT_EQ(c.rejected, 7);
  EXPECT_DOUBLE_EQ(c.weight, 2.0 / 8.0);  // k counts every sample, answered or not
  EXPECT_EQ(choose_scpo_pair({"", "", ""}, 0.0).verdict, ScpoVerdict::kNoAnswer);
  EXPECT_EQ(choose_scpo_pair({"", "7", "7"}, 0.0).verdict, ScpoVerdict::kUnanimous);
}

TEST(ScpoPairs, EquivalentAnswersVoteTogether) {
  const std::vector<std::string> a = {"0.5", "1/2", "\\frac{1}{2}", "2"};
  const ScpoPairChoice c = choose_scpo_pair(a, 0.75);
  EXPECT_EQ(c.verdict, ScpoVerdict::kKept);
  EXPECT_EQ(c.top_votes, 3);
  EXPECT_DOUBLE_EQ(c.weight, 0.5);
}

TEST(ScpoPairs, StatsReportKeptFractionHistogramAndChosenAccuracy) {
  ScpoPairStats s;
  s.prompts = 4, s.kept = 2, s.with_gold = 2, s.chosen_correct = 1;
  s.margin_histogram[3] = 1, s.margin_histogram[5] = 1;
  const auto j = s.to_json();
  EXPECT_DOUBLE_EQ(j["kept_fraction"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(j["chosen_accuracy"].get<double>(), 0.5);
  EXPECT_EQ(j["vote_margin_histogram"]["5"].get<int>(), 1);
}

}  // namespace
}  // namespace scorch::trainers

// ScPO's pair choice on hand-made votes (scpo_pairs.h): the most- and least-voted answers, the
// threshold τ·k (inclusive), ties for the top and the bottom, unparseable responses, unanimous
// groups, equivalent answers voting together, and the weight (V+ − V−)/k; and the gold-labelled
// pairs (scpo.pairs: gold): first right vs first wrong, the no-answer fallback, their verdicts, and
// the check that every prompt has a gold answer.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/error.h"
#include "data/dataset.h"
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

TEST(ScpoGoldPairs, ChoosesTheFirstRightAndTheFirstWrongAnswerWithWeightOne) {
  //                          0    1    2   3    4    5
  const std::vector<std::string> a = {"7", "5", "", "5", "9", "7"};
  const ScpoPairChoice c = choose_scpo_gold_pair(a, "5");
  EXPECT_EQ(c.verdict, ScpoVerdict::kKept);
  EXPECT_EQ(c.chosen, 1);    // the first "5"
  EXPECT_EQ(c.rejected, 0);  // the first answer other than 5, though 7 is not the least common
  EXPECT_EQ(c.chosen_answer, "5");
  EXPECT_EQ(c.rejected_answer, "7");
  EXPECT_DOUBLE_EQ(c.weight, 1.0);
  EXPECT_EQ(c.top_votes, 2);     // samples with the gold answer
  EXPECT_EQ(c.bottom_votes, 4);  // the rest, the unanswered one included
  // No vote and no threshold: a single right sample among eight still gives a pair.
  const std::vector<std::string> one_right = {"1", "1", "1", "1", "1", "1", "1", "2"};
  const ScpoPairChoice d = choose_scpo_gold_pair(one_right, "2");
  EXPECT_EQ(d.verdict, ScpoVerdict::kKept);
  EXPECT_EQ(d.chosen, 7);
  EXPECT_EQ(d.rejected, 0);
  // The gold is compared with math_answer's comparer: equivalent forms are right.
  const ScpoPairChoice e = choose_scpo_gold_pair({"2", "0.5", "1/2"}, "\\frac{1}{2}");
  EXPECT_EQ(e.chosen, 1);
  EXPECT_EQ(e.rejected, 0);
}

TEST(ScpoGoldPairs, AnUnansweredSampleIsRejectedOnlyWhenNoAnswerIsWrong) {
  // Every answer right: the first unanswered sample is y−.
  const ScpoPairChoice c = choose_scpo_gold_pair({"5", "5", "", "5", ""}, "5");
  EXPECT_EQ(c.verdict, ScpoVerdict::kKept);
  EXPECT_EQ(c.chosen, 0);
  EXPECT_EQ(c.rejected, 2);
  EXPECT_EQ(c.rejected_answer, "");
  // A wrong answer is preferred to an earlier unanswered sample.
  const ScpoPairChoice d = choose_scpo_gold_pair({"", "3", "5"}, "5");
  EXPECT_EQ(d.chosen, 2);
  EXPECT_EQ(d.rejected, 1);
}

TEST(ScpoGoldPairs, AllCorrectAndNoneCorrectGiveNoPairAndHaveTheirOwnVerdicts) {
  const ScpoPairChoice all = choose_scpo_gold_pair({"5", "5.0", "5"}, "5");
  EXPECT_EQ(all.verdict, ScpoVerdict::kAllCorrect);
  EXPECT_EQ(all.chosen, 0);
  EXPECT_EQ(all.rejected, -1);
  EXPECT_DOUBLE_EQ(all.weight, 0.0);
  const ScpoPairChoice none = choose_scpo_gold_pair({"4", "", "6"}, "5");
  EXPECT_EQ(none.verdict, ScpoVerdict::kNoneCorrect);
  EXPECT_EQ(none.chosen, -1);
  EXPECT_EQ(none.rejected, -1);
  EXPECT_EQ(none.top_votes, 0);
  EXPECT_EQ(choose_scpo_gold_pair({"", "", ""}, "5").verdict, ScpoVerdict::kNoneCorrect);
  EXPECT_STREQ(scpo_verdict_name(ScpoVerdict::kAllCorrect), "all_correct");
  EXPECT_STREQ(scpo_verdict_name(ScpoVerdict::kNoneCorrect), "none_correct");
  ScpoPairStats s;
  s.gold_pairs = true;
  s.prompts = 3, s.kept = 1;
  s.verdicts["kept"] = 1, s.verdicts["all_correct"] = 1, s.verdicts["none_correct"] = 1;
  s.margin_histogram[2] = 1;  // gold: kept pairs by how many samples have the gold answer
  const auto j = s.to_json();
  EXPECT_EQ(j["verdicts"]["none_correct"].get<int>(), 1);
  EXPECT_EQ(j["correct_count_histogram"]["2"].get<int>(), 1);
  EXPECT_FALSE(j.contains("vote_margin_histogram"));
}

TEST(ScpoGoldPairs, EveryPromptNeedsAGoldAnswerAndTheErrorNamesFileLineAndFix) {
  std::vector<data::PromptRecord> prompts(4);
  for (size_t i = 0; i < prompts.size(); ++i) prompts[i].line = static_cast<int64_t>(i) + 1, prompts[i].answer = "12";
  EXPECT_NO_THROW(require_gold_answers(prompts, "train.jsonl"));
  prompts[2].answer.reset();  // line 3: no "answer"
  prompts[3].answer = "";     // line 4: an empty one
  try {
    require_gold_answers(prompts, "train.jsonl");
    FAIL() << "no error";
  } catch (const UserError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("train.jsonl:3: this prompt has no gold `answer` (2 of 4 prompts have none)"), std::string::npos) << m;
    EXPECT_NE(m.find("or use `scpo.pairs: vote`"), std::string::npos) << m;
  }
}

}  // namespace
}  // namespace scorch::trainers

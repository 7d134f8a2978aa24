// math_answer: extraction priority, equivalence rules and the traps of ALGORITHMS.md §8, as
// tables written by hand from what a human grader would say.
#include <gtest/gtest.h>

#include <cmath>

#include "rewards/math_answer.h"
#include "rewards/reward.h"

namespace scorch::rewards {
namespace {

// ---------------------------------------------------------------------------------------------
// Equivalence: answers_equal(gold, predicted) on already-extracted answers.
struct EqCase {
  const char* gold;
  const char* pred;
  bool equal;
};

const EqCase kEqCases[] = {
    // integers, signs, whitespace
    {"42", "42", true},
    {"42", "43", false},
    {"-5", "-5", true},
    {"-5", "5", false},
    {"-5", "- 5", true},
    {"-5", "\xE2\x88\x92" "5", true},  // unicode minus
    {"+7", "7", true},
    {"0", "0", true},
    {"0", "0.0001", false},
    // decimals and tolerance (relative 1e-4)
    {"3.14159", "3.1416", true},
    {"3.14159", "3.15", false},
    {"1000", "1000.05", true},
    {"1000", "1000.2", false},
    {"2", "2.0", true},
    {"2", "2.00", true},
    {"2.5", "2.50", true},
    {"0.1", "0.10000001", true},
    {"1e-3", "0.001", true},
    // thousands separators
    {"1,000", "1000", true},
    {"1000", "1,000", true},
    {"1,234,567", "1234567", true},
    {"1234567", "1,234,567.0", true},
    {"1{,}000", "1000", true},
    {"1,000", "100", false},
    // fractions (the trap "0.5" vs "1/2": the same number)
    {"0.5", "1/2", true},
    {"1/2", "0.5", true},
    {"\\frac{1}{2}", "0.5", true},
    {"\\frac{1}{2}", "1/2", true},
    {"\\dfrac{3}{4}", "0.75", true},
    {"\\tfrac{3}{4}", "\\frac{3}{4}", true},
    {"\\frac12", "0.5", true},
    {"-\\frac{2}{3}", "-2/3", true},
    {"\\frac{-2}{3}", "-\\frac{2}{3}", true},
    {"\\frac{2}{3}", "0.67", false},
    {"\\frac{2}{3}", "0.6667", true},
    {"\\frac{1}{3}", "\\frac{1}{4}", false},
    {"2\\frac{1}{2}", "2.5", true},
    {"2\\frac{1}{2}", "5/2", true},
    {"1/0", "1/0", true},  // identical strings, even if not a number
    // percentages: only where the gold has one ("50%" vs "0.5" trap)
    {"50\\%", "50%", true},
    {"50%", "50", true},
    {"50%", "0.5", true},
    {"0.5", "50%", false},
    {"50", "50%", true},
    {"50%", "0.5%", false},
    {"12.5\\%", "0.125", true},
    // LaTeX wrappers: $, \text{}, \left/\right, degrees
    {"5", "$5$", true},
    {"5", "\\$5", true},
    {"5", "5\\text{ cm}", true},
    {"12", "12 \\text{ square units}", true},
    {"9", "9\\text{ cm}^2", true},
    {"\\text{Monday}", "Monday", true},
    {"Monday", "monday", true},
    {"Monday", "Tuesday", false},
    {"30", "30^\\circ", true},
    {"30^{\\circ}", "30", true},
    {"(1,2)", "\\left( 1, 2 \\right)", true},
    {"\\{1,2\\}", "\\{1,2\\}", true},
    // tuples and intervals ("[1,2]" vs "(1,2)" trap)
    {"[1,2]", "(1,2)", false},
    {"(1,2)", "[1,2]", false},
    {"[1,2]", "[1, 2]", true},
    {"(1,2)", "(1,2.0)", true},
    {"(1,2)", "(2,1)", false},
    {"(1,2,3)", "(1,2)", false},
    {"(\\frac{1}{2},3)", "(0.5,3)", true},
    {"[0,\\infty)", "[0, \\infty)", true},
    // simple radicals and pi
    {"\\sqrt{2}", "1.41421", true},
    {"2\\sqrt{3}", "\\sqrt{12}", true},
    {"\\frac{\\sqrt{2}}{2}", "\\sqrt{2}/2", true},
    {"\\sqrt{2}", "\\sqrt{3}", false},
    {"2\\pi", "6.28319", true},
    {"\\pi", "3", false},
    {"\\frac{\\pi}{2}", "\\pi/2", true},
    {"2^{10}", "1024", true},
    {"10^5", "100000", true},
    // variables, answers as equations
    {"5", "x = 5", true},
    {"5", "x=6", false},
    {"y=2x+1", "y=2x+1", true},
    {"y=2x+1", "y=2x+2", false},
    // non-numeric strings
    {"A", "(A)", false},
    {"\\text{(A)}", "(A)", true},
    {"yes", "Yes", true},
    // guards
    {"", "5", false},
    {"5", "", false},
};

TEST(MathAnswerEquivalence, TableOfEqualAndNotEqualPairs) {
  size_t n = 0;
  for (const auto& c : kEqCases) {
    EXPECT_EQ(math::answers_equal(c.gold, c.pred), c.equal) << "gold '" << c.gold << "' vs predicted '" << c.pred << "'";
    ++n;
  }
  EXPECT_GE(n, 80u);
}

TEST(MathAnswerEquivalence, RelativeToleranceIsAParameter) {
  math::CompareOptions strict;
  strict.rel_tol = 0.0;
  EXPECT_FALSE(math::answers_equal("3.14159", "3.1416", strict));
  math::CompareOptions loose;
  loose.rel_tol = 0.01;
  EXPECT_TRUE(math::answers_equal("100", "100.9", loose));
}

TEST(MathAnswerEquivalence, OverlongAnswersAreOnlyComparedAsStrings) {
  math::CompareOptions o;
  o.max_chars = 8;
  EXPECT_FALSE(math::answers_equal("\\frac{1}{2}", "0.50000", o));  // would be numeric-equal
  EXPECT_TRUE(math::answers_equal("\\frac{1}{2}", "\\frac{1}{2}", o));
  // A pathological nesting depth is refused rather than recursed into.
  std::string deep(200, '(');
  deep += "1" + std::string(200, ')');
  EXPECT_FALSE(math::answers_equal("1", deep));
}

TEST(MathAnswerEquivalence, NumbersEvaluateWithPercentFlag) {
  bool percent = false;
  auto v = math::evaluate_number("50%", &percent);
  ASSERT_TRUE(v.has_value());
  EXPECT_DOUBLE_EQ(*v, 50.0);
  EXPECT_TRUE(percent);
  v = math::evaluate_number("\\frac{3}{8}", &percent);
  ASSERT_TRUE(v.has_value());
  EXPECT_DOUBLE_EQ(*v, 0.375);
  EXPECT_FALSE(percent);
  EXPECT_FALSE(math::evaluate_number("(1,2)").has_value());
  EXPECT_FALSE(math::evaluate_number("x+1").has_value());
  EXPECT_FALSE(math::evaluate_number("1/0").has_value());
}

// ---------------------------------------------------------------------------------------------
// Extraction priority.
struct ExtractCase {
  const char* completion;
  const char* answer;  // nullptr = no answer
  math::ExtractedBy by;
};

const ExtractCase kExtractCases[] = {
    {"so the total is \\boxed{42}.", "42", math::ExtractedBy::Boxed},
    {"\\boxed{3} hmm, no: \\boxed{4}", "4", math::ExtractedBy::Boxed},           // two boxes: the last
    {"\\boxed{\\frac{1}{2}}", "\\frac{1}{2}", math::ExtractedBy::Boxed},          // nested braces
    {"\\fbox{7} done", "7", math::ExtractedBy::Boxed},
    {"answer \\boxed 5 end", "5", math::ExtractedBy::Boxed},
    {"\\boxed{12} then \\fbox{13}", "13", math::ExtractedBy::Boxed},
    {"\\boxed{\\text{\\{a\\}}}", "\\text{\\{a\\}}", math::ExtractedBy::Boxed},     // escaped braces
    {"first \\boxed{2}, finally \\boxed{5", nullptr, math::ExtractedBy::None},     // unclosed last box
    {"The answer is 17.", "17", math::ExtractedBy::AnswerPhrase},
    {"So the final answer is $\\frac{2}{3}$. I hope", "$\\frac{2}{3}$", math::ExtractedBy::AnswerPhrase},
    {"THE ANSWER IS: 8\nmore text 9", "8", math::ExtractedBy::AnswerPhrase},
    {"The answer is 42 apples.", "42", math::ExtractedBy::AnswerPhrase},
    {"The answer is 3.5.", "3.5", math::ExtractedBy::AnswerPhrase},
    {"The answer is \\boxed{9}", "9", math::ExtractedBy::Boxed},                   // boxed has priority
    {"Natalia sold 48/2 = 24 clips.\n#### 72", "72", math::ExtractedBy::Gsm8k},
    {"#### 1,000", "1,000", math::ExtractedBy::Gsm8k},
    {"We get 5 then 7 then 12.", "12", math::ExtractedBy::LastNumber},
    {"It costs $1,234.50 in total", "1,234.50", math::ExtractedBy::LastNumber},
    {"the result is -3", "-3", math::ExtractedBy::LastNumber},
    {"5-3 equals 2", "2", math::ExtractedBy::LastNumber},
    {"x = 7-3", "3", math::ExtractedBy::LastNumber},                              // binary minus is no sign
    {"ratio 3/4", "3/4", math::ExtractedBy::LastNumber},
    {"about 50% of them", "50%", math::ExtractedBy::LastNumber},
    {"no digits at all", nullptr, math::ExtractedBy::None},
    {"", nullptr, math::ExtractedBy::None},
};

TEST(MathAnswerExtraction, PriorityIsBoxedThenPhraseThenGsm8kThenLastNumber) {
  for (const auto& c : kExtractCases) {
    const auto e = math::extract_answer(c.completion);
    EXPECT_EQ(static_cast<int>(e.by), static_cast<int>(c.by)) << "completion: " << c.completion;
    if (c.answer) EXPECT_EQ(e.answer, c.answer) << "completion: " << c.completion;
  }
}

TEST(MathAnswerExtraction, StepsCanBeSwitchedOff) {
  const std::string text = "The answer is 8. \\boxed{9} #### 10 and 11";
  math::ExtractOptions o;
  EXPECT_EQ(math::extract_answer(text, o).answer, "9");
  o.boxed = false;
  EXPECT_EQ(math::extract_answer(text, o).answer, "8");
  o.answer_phrase = false;
  EXPECT_EQ(math::extract_answer(text, o).answer, "10 and 11");
  o.gsm8k = false;
  EXPECT_EQ(math::extract_answer(text, o).answer, "11");
  o.last_number = false;
  EXPECT_FALSE(math::extract_answer(text, o).ok());
}

TEST(MathAnswerExtraction, UnclosedBoxIsReportedAndGivesNoAnswer) {
  const auto e = math::extract_answer("so \\boxed{\\frac{1}{2}");
  EXPECT_FALSE(e.ok());
  EXPECT_TRUE(e.unclosed_box);
}

TEST(MathAnswerExtraction, GoldAnswerComesFromSolutionMarkers) {
  EXPECT_EQ(math::gold_answer("Half of 48 is 24.\n#### 72"), "72");
  EXPECT_EQ(math::gold_answer("so it is $\\boxed{\\frac{1}{4}}$."), "\\frac{1}{4}");
  EXPECT_EQ(math::gold_answer("  12 "), "12");
}

// ---------------------------------------------------------------------------------------------
// The reward end to end (extraction + gold-first comparison + params), through the registry.
RewardBatch batch_of(const std::vector<std::pair<std::string, std::string>>& completion_gold,
                     const std::string& prompt = "Solve the problem.") {
  RewardBatch b;
  for (const auto& cg : completion_gold) {
    RewardSample s;
    s.prompt = prompt;
    s.completion = cg.first;
    s.group = static_cast<int64_t>(b.samples.size());
    if (!cg.second.empty()) s.fields["answer"] = cg.second;
    b.samples.push_back(s);
  }
  b.index_groups();
  return b;
}

RewardSpec spec(const std::string& name, const std::string& params_yaml = "{}") {
  RewardSpec s;
  s.name = name;
  s.params = parse_reward_params(params_yaml);
  return s;
}

TEST(MathAnswerReward, TrapsScoreAsAHumanGraderWould) {
  RewardSet set({spec("math_answer")});
  const std::string question = "Tom has 40 apples and buys 2 more. How many apples does he have? 42";
  RewardBatch b = batch_of({
      {"\\boxed{(1,2)}", "[1,2]"},                  // 0: wrong interval type
      {"The answer is 1/2", "0.5"},                // 1: same number
      {"\\boxed{50\\%}", "0.5"},                   // 2: percent where the gold has none
      {"\\boxed{1000}", "1,000"},                  // 3: thousands separator
      {"\\boxed{3} or maybe \\boxed{4}", "3"},     // 4: two boxes: the last counts
      {"\\boxed{3} or maybe \\boxed{4", "4"},      // 5: unclosed brace: no answer
      {question, "42"},                            // 6: echoes the question (whose last number is 42)
      {"Half of 48 is 24. 48 + 24 = 72", "Natalia sold 48/2 = 24.\n#### 72"},  // 7: GSM8K gold
  }, question);
  const auto out = set.score(b);
  const std::vector<double> expected = {0, 1, 0, 1, 0, 0, 0, 1};
  ASSERT_EQ(out.components[0].size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(out.components[0][i], expected[i]) << "sample " << i;
  EXPECT_EQ(out.metrics.at("rewards/math_answer/no_answer"), 2.0);
  EXPECT_EQ(out.metrics.at("rewards/math_answer/echo"), 1.0);
  EXPECT_DOUBLE_EQ(out.metrics.at("rewards/math_answer/accuracy"), 3.0 / 8.0);
}

TEST(MathAnswerReward, MissingGoldIsNaNAndCounted) {
  RewardSet set({spec("math_answer")});
  const auto out = set.score(batch_of({{"\\boxed{1}", ""}, {"\\boxed{2}", "2"}}));
  EXPECT_TRUE(std::isnan(out.components[0][0]));
  EXPECT_EQ(out.components[0][1], 1.0);
  EXPECT_EQ(out.metrics.at("rewards/math_answer/no_gold"), 1.0);
  EXPECT_EQ(out.metrics.at("rewards/math_answer/nan_count"), 1.0);
  EXPECT_EQ(out.metrics.at("rewards/math_answer/mean"), 1.0);  // the NaN is excluded, not a 0
}

TEST(MathAnswerReward, NoAnswerScoresIncorrectByDefaultOrNaNWhenAsked) {
  RewardSet plain({spec("math_answer", "{correct: 2.0, incorrect: -1.0}")});
  auto out = plain.score(batch_of({{"I cannot solve this.", "7"}, {"\\boxed{7}", "7"}, {"\\boxed{8}", "7"}}));
  EXPECT_EQ(out.components[0], (std::vector<double>{-1.0, 2.0, -1.0}));
  RewardSet nan({spec("math_answer", "{no_answer: nan}")});
  out = nan.score(batch_of({{"I cannot solve this.", "7"}, {"\\boxed{7}", "7"}}));
  EXPECT_TRUE(std::isnan(out.components[0][0]));
  EXPECT_EQ(out.components[0][1], 1.0);
  EXPECT_EQ(out.metrics.at("rewards/math_answer/no_answer"), 1.0);
}

TEST(MathAnswerReward, NumericGoldFieldsArePrintedExactly) {
  RewardSet set({spec("math_answer")});
  RewardBatch b = batch_of({{"\\boxed{1,234,567}", ""}, {"\\boxed{1/4}", ""}, {"\\boxed{42}", ""}, {"\\boxed{43}", ""}});
  b.samples[0].fields["answer"] = 1234567.0;
  b.samples[1].fields["answer"] = 0.25;
  b.samples[2].fields["answer"] = 42;
  b.samples[3].fields["answer"] = 42;
  EXPECT_EQ(b.gold(0), "1234567");
  EXPECT_EQ(set.score(b).components[0], (std::vector<double>{1, 1, 1, 0}));
}

TEST(MathAnswerReward, ExtractionStepsAreParams) {
  RewardSet only_boxed({spec("math_answer", "{answer_phrase: false, gsm8k: false, last_number: false}")});
  const auto out = only_boxed.score(batch_of({{"The answer is 7", "7"}, {"\\boxed{7}", "7"}}));
  EXPECT_EQ(out.components[0], (std::vector<double>{0.0, 1.0}));
}

}  // namespace
}  // namespace scorch::rewards

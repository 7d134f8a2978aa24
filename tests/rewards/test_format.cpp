// format / overlong / exact_match rewards on hand-built completions.
#include <gtest/gtest.h>

#include <cmath>

#include "common/error.h"
#include "rewards/reward.h"

namespace scorch::rewards {
namespace {

RewardSpec spec(const std::string& name, const std::string& params) {
  RewardSpec s;
  s.name = name;
  s.params = parse_reward_params(params);
  return s;
}

RewardBatch texts(const std::vector<std::string>& completions) {
  RewardBatch b;
  for (const auto& c : completions) {
    RewardSample s;
    s.completion = c;
    s.group = static_cast<int64_t>(b.samples.size());
    b.samples.push_back(s);
  }
  b.index_groups();
  return b;
}

std::vector<double> score1(const RewardSpec& s, const RewardBatch& b) {
  RewardSet set({s});
  return set.score(b).components[0];
}

TEST(FormatReward, ExactlyOneBoxedAnswer) {
  const auto v = score1(spec("format", "{boxed_count: 1}"),
                        texts({"so \\boxed{3}", "\\boxed{3} and \\boxed{4}", "no box", "\\fbox{2}", "\\boxedx{1}"}));
  EXPECT_EQ(v, (std::vector<double>{1, 0, 0, 1, 0}));
}

TEST(FormatReward, EveryRegexMustMatch) {
  const auto v = score1(spec("format", "{patterns: ['^<think>', 'Answer: [0-9]+$'], pass: 0.5, fail: -0.5}"),
                        texts({"<think>hm</think> Answer: 12", "<think> Answer: x", "Answer: 12"}));
  EXPECT_EQ(v, (std::vector<double>{0.5, -0.5, -0.5}));
}

TEST(FormatReward, TagsOnceEachAndInOrder) {
  const RewardSpec s = spec("format", "{tags: [think, answer]}");
  const auto v = score1(s, texts({"<think>a</think><answer>b</answer>", "<answer>b</answer><think>a</think>",
                                  "<think>a</think><think>c</think><answer>b</answer>", "<think>a<answer>b</answer>",
                                  "<think></think>x<answer>1</answer>"}));
  EXPECT_EQ(v, (std::vector<double>{1, 0, 0, 0, 1}));
  const auto unordered = score1(spec("format", "{tags: [think, answer], tag_order: false}"),
                                texts({"<answer>b</answer><think>a</think>"}));
  EXPECT_EQ(unordered[0], 1.0);
}

TEST(FormatReward, OverlongRegexInputIsNaNNotZero) {
  RewardSet set({spec("format", "{patterns: ['x'], regex_max_chars: 10}")});
  const auto out = set.score(texts({"x", std::string(11, 'x')}));
  EXPECT_EQ(out.components[0][0], 1.0);
  EXPECT_TRUE(std::isnan(out.components[0][1]));
  EXPECT_EQ(out.metrics.at("rewards/format/too_long"), 1.0);
}

// DAPO soft overlong punishment, checked against the piecewise formula written out by hand
// for max_length 10, cache 4: lengths 0..6 -> 0; 7 -> -1/4; 8 -> -2/4; 9 -> -3/4; 10 -> -1; 11 -> -1.
TEST(OverlongReward, RampsLinearlyToMinusOneOverTheCacheWindow) {
  RewardBatch b;
  for (int len : {0, 3, 6, 7, 8, 9, 10, 11, 50}) {
    RewardSample s;
    s.completion = std::string(static_cast<size_t>(len), 'a');
    s.completion_ids.assign(static_cast<size_t>(len), 5);
    s.group = static_cast<int64_t>(b.samples.size());
    b.samples.push_back(s);
  }
  b.index_groups();
  const std::vector<double> expected = {0, 0, 0, -0.25, -0.5, -0.75, -1, -1, -1};
  const auto v = score1(spec("overlong", "{max_length: 10, cache: 4}"), b);
  ASSERT_EQ(v.size(), expected.size());
  for (size_t i = 0; i < v.size(); ++i) EXPECT_DOUBLE_EQ(v[i], expected[i]) << "i=" << i;
  // Character units give the same numbers here (one char per token).
  const auto c = score1(spec("overlong", "{max_length: 10, cache: 4, unit: chars}"), b);
  for (size_t i = 0; i < c.size(); ++i) EXPECT_DOUBLE_EQ(c[i], expected[i]);
}

TEST(OverlongReward, DefaultCacheIsAQuarterAndMissingTokenIdsAreNaN) {
  RewardBatch b = texts({"abc", ""});
  b.samples[1].completion_ids.assign(90, 1);  // 90 of max 100, cache 25: (75 - 90) / 25
  RewardSet set({spec("overlong", "{max_length: 100}")});
  const auto out = set.score(b);
  EXPECT_TRUE(std::isnan(out.components[0][0]));  // text without ids cannot be counted in tokens
  EXPECT_DOUBLE_EQ(out.components[0][1], -15.0 / 25.0);
  EXPECT_EQ(out.metrics.at("rewards/overlong/no_token_ids"), 1.0);
}

TEST(ExactMatchReward, ComparesWithTheGoldAfterNormalisation) {
  RewardBatch b = texts({"  Paris \n", "paris", "\\frac{1}{2}", "x"});
  b.samples[0].fields["answer"] = "Paris";
  b.samples[1].fields["answer"] = "Paris";
  b.samples[2].fields["answer"] = "\\dfrac{1}{2}";
  const auto ws = score1(spec("exact_match", "{}"), b);
  EXPECT_EQ(ws[0], 1.0);
  EXPECT_EQ(ws[1], 0.0);
  EXPECT_EQ(ws[2], 0.0);
  EXPECT_TRUE(std::isnan(ws[3]));  // no gold
  const auto m = score1(spec("exact_match", "{normalize: math}"), b);
  EXPECT_EQ(m[2], 1.0);
  const auto none = score1(spec("exact_match", "{normalize: none}"), b);
  EXPECT_EQ(none[0], 0.0);
}

}  // namespace
}  // namespace scorch::rewards

namespace scorch::rewards {
namespace {

// arith_steps against hand-checked equations: right, wrong, subtraction to a negative, spaces,
// products, no equation at all, and a right final answer reached through wrong steps.
TEST(ArithStepsReward, FractionOfRightEquations) {
  const auto b = texts({"5-3=2. 2+8=10. The answer is \\boxed{10}.",
                        "3+3=6. 6+6=10. 10+1=15. The answer is \\boxed{13}.",
                        "2 - 7 = -5, then -5 + 1 = -4",
                        "4*3=12 and 12*2=25",
                        "The answer is \\boxed{7}."});
  const auto v = score1(spec("arith_steps", "{}"), b);
  ASSERT_EQ(v.size(), 5u);
  EXPECT_DOUBLE_EQ(v[0], 1.0);
  EXPECT_DOUBLE_EQ(v[1], 1.0 / 3.0);
  EXPECT_DOUBLE_EQ(v[2], 1.0);
  EXPECT_DOUBLE_EQ(v[3], 0.5);
  EXPECT_DOUBLE_EQ(v[4], 0.0);
  const auto all = score1(spec("arith_steps", "{all_or_nothing: true, no_steps: -1}"), b);
  EXPECT_EQ(all, (std::vector<double>{1, 0, 1, 0, -1}));
}

TEST(ArithStepsReward, UnknownParamIsRejected) {
  EXPECT_THROW(score1(spec("arith_steps", "{all_or_nothin: true}"), texts({"1+1=2"})), UserError);
}

}  // namespace
}  // namespace scorch::rewards

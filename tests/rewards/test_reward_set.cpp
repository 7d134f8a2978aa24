// RewardSet composition (weights, NaN propagation, offsets, metrics) and strict params checks.
#include <gtest/gtest.h>

#include <cmath>

#include "common/error.h"
#include "config/yaml_binder.h"
#include "rewards/reward.h"

namespace scorch::rewards {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// A reward whose values come from the sample's `fields["v"]` (null = NaN) and whose offset is
// fields["off"]: lets the tests fix every component value by hand.
class FieldReward : public Reward {
 public:
  explicit FieldReward(std::string key) : key_(std::move(key)) {}
  RewardOutput score(const RewardBatch& b) override {
    RewardOutput o;
    for (const auto& s : b.samples) {
      const auto& v = s.fields[key_];
      o.values.push_back(v.is_null() ? kNaN : v.get<double>());
      if (s.fields.contains("off")) o.advantage_offsets.push_back(s.fields["off"].get<double>());
    }
    o.diagnostics["calls"] = 1;
    return o;
  }

 private:
  std::string key_;
};

void register_test_rewards() {
  static bool done = false;
  if (done) return;
  done = true;
  for (const char* key : {"a", "b"}) {
    register_reward(std::string("test_field_") + key,
                    {"test", false, [key](Params& p, const RewardContext&) {
                       p.number("scale", 1.0, 0.0, 10.0);
                       return std::make_unique<FieldReward>(key);
                     }});
  }
}

RewardSpec spec(const std::string& name, double weight, const std::string& params = "{}") {
  RewardSpec s;
  s.name = name;
  s.weight = weight;
  s.params = parse_reward_params(params);
  s.line = 7;
  return s;
}

RewardBatch batch(const std::vector<nlohmann::json>& fields) {
  RewardBatch b;
  for (const auto& f : fields) {
    RewardSample s;
    s.fields = f;
    s.group = static_cast<int64_t>(b.samples.size());
    b.samples.push_back(s);
  }
  b.index_groups();
  return b;
}

TEST(RewardSet, TotalIsTheWeightedSumOfComponents) {
  register_test_rewards();
  RewardSet set({spec("test_field_a", 2.0), spec("test_field_b", -0.5)});
  auto out = set.score(batch({{{"a", 1.0}, {"b", 4.0}}, {{"a", 0.25}, {"b", 0.0}}, {{"a", -1.0}, {"b", 2.0}}}));
  EXPECT_EQ(out.names, (std::vector<std::string>{"test_field_a", "test_field_b"}));
  EXPECT_DOUBLE_EQ(out.total[0], 2.0 * 1.0 - 0.5 * 4.0);
  EXPECT_DOUBLE_EQ(out.total[1], 2.0 * 0.25);
  EXPECT_DOUBLE_EQ(out.total[2], 2.0 * -1.0 - 0.5 * 2.0);
  EXPECT_DOUBLE_EQ(out.metrics.at("rewards/test_field_a/mean"), (1.0 + 0.25 - 1.0) / 3.0);
  EXPECT_DOUBLE_EQ(out.metrics.at("rewards/test_field_b/mean"), 2.0);
  EXPECT_DOUBLE_EQ(out.metrics.at("reward"), (0.0 + 0.5 - 3.0) / 3.0);
  EXPECT_EQ(out.metrics.at("rewards/test_field_a/calls"), 1.0);
}

TEST(RewardSet, NaNComponentMakesTheTotalNaNAndIsExcludedFromMeans) {
  register_test_rewards();
  RewardSet set({spec("test_field_a", 1.0), spec("test_field_b", 1.0)});
  auto out = set.score(batch({{{"a", 1.0}, {"b", nullptr}}, {{"a", 3.0}, {"b", 1.0}}}));
  EXPECT_TRUE(std::isnan(out.total[0]));
  EXPECT_DOUBLE_EQ(out.total[1], 4.0);
  EXPECT_DOUBLE_EQ(out.metrics.at("rewards/test_field_b/mean"), 1.0);
  EXPECT_EQ(out.metrics.at("rewards/test_field_b/nan_count"), 1.0);
  EXPECT_EQ(out.metrics.at("reward_nan_count"), 1.0);
  EXPECT_DOUBLE_EQ(out.metrics.at("reward"), 4.0);
}

TEST(RewardSet, ZeroWeightComponentIsLoggedButAffectsNeitherTotalNorOffsets) {
  register_test_rewards();
  RewardSet set({spec("test_field_a", 1.0), spec("test_field_b", 0.0)});
  auto out = set.score(batch({{{"a", 2.0}, {"b", nullptr}, {"off", -1.0}}}));
  EXPECT_DOUBLE_EQ(out.total[0], 2.0);
  EXPECT_DOUBLE_EQ(out.advantage_offsets[0], -1.0);  // from test_field_a only, not the weight-0 one
  EXPECT_EQ(out.metrics.at("rewards/test_field_b/nan_count"), 1.0);
}

TEST(RewardSet, RepeatedNamesGetNumberedAndOffsetsAreSummed) {
  register_test_rewards();
  RewardSet set({spec("test_field_a", 1.0), spec("test_field_a", 3.0)});
  auto out = set.score(batch({{{"a", 1.0}, {"off", -0.25}}, {{"a", 2.0}, {"off", 0.0}}}));
  EXPECT_EQ(out.names, (std::vector<std::string>{"test_field_a", "test_field_a_2"}));
  EXPECT_DOUBLE_EQ(out.total[1], 8.0);
  EXPECT_DOUBLE_EQ(out.advantage_offsets[0], -0.5);  // two components, unweighted
  EXPECT_DOUBLE_EQ(out.advantage_offsets[1], 0.0);
}

void expect_user_error(const std::function<void()>& f, const std::vector<std::string>& needles) {
  try {
    f();
    FAIL() << "expected a UserError";
  } catch (const UserError& e) {
    for (const auto& n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what() << " lacks " << n;
  }
}

TEST(RewardSetErrors, UnknownRewardNameSuggestsTheNearest) {
  expect_user_error([] { RewardSet({spec("math_anwser", 1.0)}, {}, "r.yaml"); },
                    {"r.yaml:7", "unknown reward `math_anwser`", "did you mean `math_answer`"});
}

TEST(RewardSetErrors, UnknownParamNamesItsKeyPathAndSuggests) {
  expect_user_error([] { RewardSet({spec("math_answer", 1.0, "{boxd: false}")}, {}, "r.yaml"); },
                    {"rewards[0].params.boxd", "did you mean `rewards[0].params.boxed`"});
  expect_user_error([] { RewardSet({spec("format", 1.0, "{boxed_count: 1}"), spec("math_answer", 1.0, "{zzzzzz: 1}")}, {}, "r.yaml"); },
                    {"rewards[1].params.zzzzzz", "valid keys"});
}

TEST(RewardSetErrors, WrongTypeOrRangeIsAUserError) {
  expect_user_error([] { RewardSet({spec("math_answer", 1.0, "{boxed: maybe}")}); }, {"rewards[0].params.boxed", "true or false"});
  expect_user_error([] { RewardSet({spec("math_answer", 1.0, "{rel_tol: 2}")}); }, {"rewards[0].params.rel_tol", "must be in"});
  expect_user_error([] { RewardSet({spec("math_answer", 1.0, "{rel_tol: abc}")}); }, {"rewards[0].params.rel_tol", "number"});
  expect_user_error([] { RewardSet({spec("math_answer", 1.0, "{no_answer: nann}")}); }, {"did you mean `nan`"});
  expect_user_error([] { RewardSet({spec("format", 1.0, "{patterns: ['(unclosed']}")}); }, {"not a valid regex"});
  expect_user_error([] { RewardSet({spec("format", 1.0)}); }, {"needs at least one check"});
  expect_user_error([] { RewardSet({spec("overlong", 1.0)}); }, {"max_length"});
}

TEST(RewardSetErrors, SelfJudgingRewardWithoutJudgeNeedsAModel) {
  expect_user_error([] { RewardSet({spec("self_verify", 1.0)}); }, {"self_verify needs --model DIR"});
  expect_user_error([] { RewardSet({spec("self_rubric", 1.0)}); }, {"self_rubric needs --model DIR"});
}

TEST(RewardSetErrors, ValidationChecksParamsOfSelfJudgingRewardsWithoutAModel) {
  EXPECT_NO_THROW(validate_reward_specs({spec("self_verify", 1.0, "{question: 'OK?'}"), spec("math_answer", 1.0)}));
  expect_user_error([] { validate_reward_specs({spec("self_rubric", 1.0, "{kk: 3}")}, "t.yaml"); },
                    {"rewards[0].params.kk", "did you mean `rewards[0].params.k`"});
  expect_user_error([] { validate_reward_specs({spec("math_answer", 1.0), spec("nope", 1.0)}, "t.yaml"); },
                    {"rewards[1].name", "unknown reward `nope`"});
}

TEST(RewardSpecsParsing, ParsesTheRewardsListLikeTheTrainingConfig) {
  const auto specs =
      parse_reward_specs("rewards:\n  - name: math_answer\n    weight: 2\n  - {name: format, params: {boxed_count: 1}}\n", "x.yaml");
  ASSERT_EQ(specs.size(), 2u);
  EXPECT_EQ(specs[0].name, "math_answer");
  EXPECT_EQ(specs[0].weight, 2.0);
  EXPECT_EQ(specs[0].line, 2);
  EXPECT_EQ(specs[1].weight, 1.0);
  EXPECT_EQ(specs[1].params->node["boxed_count"].as<int>(), 1);
  expect_user_error([] { parse_reward_specs("rewards:\n  - {name: a, wieght: 1}\n", "x.yaml"); },
                    {"rewards[0].wieght", "did you mean `rewards[0].weight`"});
  expect_user_error([] { parse_reward_specs("rewards:\n  - {weight: 1}\n", "x.yaml"); }, {"has no `name`"});
  expect_user_error([] { parse_reward_specs("rewards:\n  - {name: a, weight: x}\n", "x.yaml"); }, {"weight` must be a finite number"});
}

TEST(RewardRegistry, ListsEveryBuiltinWithItsParamsSchema) {
  const auto& reg = reward_registry();
  for (const char* name : {"math_answer", "format", "overlong", "exact_match", "arith_steps", "majority_vote", "soft_consistency",
                           "self_verify", "self_rubric"}) {
    ASSERT_TRUE(reg.count(name)) << name;
    EXPECT_FALSE(reward_params_schema(name).empty()) << name;
  }
  EXPECT_TRUE(reg.at("self_verify").needs_judge);
  EXPECT_FALSE(reg.at("math_answer").needs_judge);
}

TEST(RewardSet, ParamErrorsFromAJobConfigNameItsFileAndLine) {
  const scorch::Config c = scorch::parse_config(
      "trainer: grpo\nmodel: {path: m}\ndata: {train: t.jsonl}\nrewards:\n  - name: math_answer\n    params: {rel_tol: 2}\n",
      "jobs/grpo.yaml");
  expect_user_error([&] { scorch::rewards::validate_reward_specs(c.rewards); },
                    {"jobs/grpo.yaml:6", "rewards[0].params.rel_tol"});
}

}  // namespace
}  // namespace scorch::rewards

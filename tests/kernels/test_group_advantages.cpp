// group_advantages (CPU reference) against hand-computed cases for every mode and scale, the NaN
// and singleton rules, and an independent transcription of TRL's formulas on random rewards.
#include "kernels/ops.h"
#include "tests/kernels/kernel_test_util.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

namespace {

using scorch::test::relative_error;
constexpr double kEps = 1e-4;
const float kNaN = std::numeric_limits<float>::quiet_NaN();

at::Tensor rewards_of(const std::vector<float>& v) { return at::tensor(v, at::kFloat); }

void expect_values(const at::Tensor& got, const std::vector<double>& want, const std::string& what) {
  ASSERT_EQ(got.numel(), static_cast<int64_t>(want.size())) << what;
  for (size_t i = 0; i < want.size(); ++i)
    EXPECT_NEAR(got[i].item<double>(), want[i], 1e-6) << what << " at " << i;
}

// Two groups of four: {1, 0, 1, 0} (mean 0.5, std sqrt(1/3)) and {0, 0, 0, 1} (mean 0.25, std 0.5).
const std::vector<float> kTwoGroups = {1, 0, 1, 0, 0, 0, 0, 1};
const double kStd1 = std::sqrt(1.0 / 3.0), kStd2 = 0.5;

TEST(GroupAdvantages, GrpoGroupScaleDividesByGroupStdPlusEps) {
  auto [adv, mean, std, zero] = scorch::group_advantages(rewards_of(kTwoGroups), 4, "grpo", kEps, "group");
  const double a = 0.5 / (kStd1 + kEps), b = 0.25 / (kStd2 + kEps), c = 0.75 / (kStd2 + kEps);
  expect_values(adv, {a, -a, a, -a, -b, -b, -b, c}, "advantages");
  expect_values(mean, {0.5, 0.25}, "group_mean");
  expect_values(std, {kStd1, kStd2}, "group_std");
  EXPECT_FALSE(zero[0].item<bool>());
  EXPECT_FALSE(zero[1].item<bool>());
}

TEST(GroupAdvantages, GrpoBatchScaleDividesByTheStdOfAllRawRewards) {
  // All eight rewards: mean 3/8, sum of squared deviations 1.875, unbiased variance 1.875 / 7.
  const double batch_std = std::sqrt(1.875 / 7.0);
  auto [adv, mean, std, zero] = scorch::group_advantages(rewards_of(kTwoGroups), 4, "grpo", kEps, "batch");
  const double d = batch_std + kEps;
  expect_values(adv, {0.5 / d, -0.5 / d, 0.5 / d, -0.5 / d, -0.25 / d, -0.25 / d, -0.25 / d, 0.75 / d}, "advantages");
  expect_values(std, {kStd1, kStd2}, "group_std is still the group's own std");
}

TEST(GroupAdvantages, GrpoNoneScaleAndDrGrpoOnlyCentre) {
  const std::vector<double> centred = {0.5, -0.5, 0.5, -0.5, -0.25, -0.25, -0.25, 0.75};
  expect_values(std::get<0>(scorch::group_advantages(rewards_of(kTwoGroups), 4, "grpo", kEps, "none")), centred,
                "grpo/none");
  for (const char* scale : {"group", "batch", "none"})
    expect_values(std::get<0>(scorch::group_advantages(rewards_of(kTwoGroups), 4, "dr_grpo", kEps, scale)),
                  centred, std::string("dr_grpo/") + scale);
}

TEST(GroupAdvantages, RlooSubtractsTheMeanOfTheOtherSamples) {
  // {1,0,1,0}: 1 - (0+1+0)/3 = 2/3, 0 - (1+1+0)/3 = -2/3; {0,0,0,1}: 0 - 1/3, 1 - 0.
  auto [adv, mean, std, zero] = scorch::group_advantages(rewards_of(kTwoGroups), 4, "rloo", kEps, "group");
  const double third = 1.0 / 3.0;
  expect_values(adv, {2 * third, -2 * third, 2 * third, -2 * third, -third, -third, -third, 1.0}, "rloo");
}

TEST(GroupAdvantages, ReinforcePlusPlusDividesByTheBatchStdOfCentredValues) {
  // Centred values: +-0.5 (x4), -0.25 (x3), 0.75: mean 0, sum of squares 1.75, unbiased var 0.25.
  auto [adv, mean, std, zero] = scorch::group_advantages(rewards_of(kTwoGroups), 4, "reinforce_pp", kEps, "group");
  const double d = 0.5 + kEps;
  expect_values(adv, {0.5 / d, -0.5 / d, 0.5 / d, -0.5 / d, -0.25 / d, -0.25 / d, -0.25 / d, 0.75 / d}, "rpp");
}

TEST(GroupAdvantages, NanRewardsAreLeftOutOfTheStatisticsAndGetZero) {
  // {1, NaN, 0, 1}: valid {1, 0, 1}, mean 2/3, unbiased std sqrt(1/3).
  const at::Tensor r = rewards_of({1, kNaN, 0, 1});
  auto [adv, mean, std, zero] = scorch::group_advantages(r, 4, "grpo", kEps, "group");
  const double m = 2.0 / 3.0, s = std::sqrt(1.0 / 3.0) + kEps;
  expect_values(adv, {(1 - m) / s, 0.0, (0 - m) / s, (1 - m) / s}, "grpo");
  expect_values(mean, {m}, "mean");
  expect_values(std, {std::sqrt(1.0 / 3.0)}, "std");
  // rloo over the valid ones: 1 - (0+1)/2, 0 - (1+1)/2.
  expect_values(std::get<0>(scorch::group_advantages(r, 4, "rloo", kEps, "none")), {0.5, 0.0, -1.0, 0.5}, "rloo");
  EXPECT_FALSE(at::isnan(std::get<0>(scorch::group_advantages(r, 4, "reinforce_pp", kEps, "none"))).any().item<bool>());
}

TEST(GroupAdvantages, GroupsWithFewerThanTwoValidRewardsGiveZero) {
  for (const char* mode : {"grpo", "dr_grpo", "rloo", "reinforce_pp"}) {
    // G = 1: singleton groups.
    auto [adv, mean, std, zero] = scorch::group_advantages(rewards_of({0.3f, 1.f, -2.f}), 1, mode, kEps, "group");
    expect_values(adv, {0, 0, 0}, std::string(mode) + " singleton");
    expect_values(mean, {0.3, 1.0, -2.0}, "singleton mean");
    expect_values(std, {0, 0, 0}, "singleton std");
    EXPECT_TRUE(zero.all().item<bool>());
    // One valid reward, and none.
    auto [adv2, mean2, std2, zero2] =
        scorch::group_advantages(rewards_of({kNaN, 2.f, kNaN, kNaN, kNaN, kNaN, kNaN, kNaN}), 4, mode, kEps, "batch");
    expect_values(adv2, {0, 0, 0, 0, 0, 0, 0, 0}, std::string(mode) + " one valid");
    EXPECT_EQ(mean2[0].item<float>(), 2.f);
    EXPECT_TRUE(std::isnan(mean2[1].item<float>())) << "a group without valid rewards has no mean";
    EXPECT_TRUE(zero2.all().item<bool>());
  }
}

TEST(GroupAdvantages, ConstantGroupsAreFlaggedZeroStdAndGetZero) {
  auto [adv, mean, std, zero] = scorch::group_advantages(rewards_of({2, 2, 2, 1, 0, 1}), 3, "grpo", kEps, "group");
  expect_values(adv.slice(0, 0, 3), {0, 0, 0}, "constant group");
  EXPECT_TRUE(zero[0].item<bool>());
  EXPECT_FALSE(zero[1].item<bool>());
}

// TRL's GRPOTrainer / RLOO / REINFORCE++ formulas transcribed with plain tensor ops (no NaNs here).
at::Tensor trl_advantages(const at::Tensor& r, int64_t g, const std::string& mode, const std::string& scale) {
  const at::Tensor r64 = r.to(at::kDouble);
  const at::Tensor grouped = r64.view({-1, g});
  const at::Tensor mean = grouped.mean(1, true);
  const at::Tensor centred = (grouped - mean).flatten();
  if (mode == "dr_grpo") return centred;
  if (mode == "rloo") return (grouped - (grouped.sum(1, true) - grouped) / (g - 1)).flatten();
  if (mode == "reinforce_pp") return centred / (centred.std() + kEps);
  if (scale == "group") {
    const at::Tensor group_std = grouped.std({1}, /*unbiased=*/true, /*keepdim=*/true).expand_as(grouped);
    return centred / (group_std.flatten() + kEps);
  }
  if (scale == "batch") return centred / (r64.std() + kEps);
  return centred;
}

TEST(GroupAdvantages, MatchesAnIndependentTranscriptionOfTrlOnRandomRewards) {
  at::manual_seed(7);
  const int64_t groups = 40, g = 8;
  // Continuous rewards, and 0/1 rewards (so that some groups are constant).
  for (const at::Tensor& r : {at::randn({groups * g}) * 2 + 0.5, (at::rand({groups * g}) < 0.3).to(at::kFloat)}) {
    for (const char* mode : {"grpo", "dr_grpo", "rloo", "reinforce_pp"})
      for (const char* scale : {"group", "batch", "none"}) {
        auto [adv, mean, std, zero] = scorch::group_advantages(r, g, mode, kEps, scale);
        EXPECT_LT(relative_error(adv, trl_advantages(r, g, mode, scale)), 1e-6) << mode << "/" << scale;
        EXPECT_LT(relative_error(mean, r.to(at::kDouble).view({-1, g}).mean(1)), 1e-6);
        const at::Tensor ref_std = r.to(at::kDouble).view({-1, g}).std(1);
        EXPECT_LT(relative_error(std, ref_std), 1e-6);
        EXPECT_TRUE(at::equal(zero, ref_std <= 1e-8));
      }
  }
}

TEST(GroupAdvantages, RejectsBadArgumentsWithAnError) {
  const at::Tensor r = rewards_of({1, 0, 1, 0, 1, 1});
  EXPECT_THROW(scorch::group_advantages(r, 4, "grpo", kEps, "group"), c10::Error);  // 6 % 4 != 0
  EXPECT_THROW(scorch::group_advantages(r, 0, "grpo", kEps, "group"), c10::Error);
  EXPECT_THROW(scorch::group_advantages(r, 2, "ppo", kEps, "group"), c10::Error);
  EXPECT_THROW(scorch::group_advantages(r, 2, "grpo", kEps, "global"), c10::Error);
  EXPECT_THROW(scorch::group_advantages(r.to(at::kDouble), 2, "grpo", kEps, "group"), c10::Error);
  EXPECT_THROW(scorch::group_advantages(r, 2, "grpo", -1.0, "group"), c10::Error);
}

}  // namespace

// SCoRe's objective on fixed tensors (ALGORITHMS.md §7): the reward shaping of the four binary
// outcomes, the routing of per-turn values to the tokens of their turn, the per-turn group
// baseline, the gradient of the Stage I / Stage II loss against an independent float64
// implementation, and the self-correction metrics on a hand-made outcome table.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cmath>
#include <set>
#include <vector>

#include "trainers/common/evaluation.h"
#include "trainers/common/policy_loss.h"
#include "trainers/score/score_rewards.h"

namespace {

using namespace scorch;
using namespace scorch::trainers;

// Four episodes, one per binary outcome: (t1, t2) = (0,1) (1,1) (1,0) (0,0).
const std::vector<double> kR1 = {0, 1, 1, 0}, kR2 = {1, 1, 0, 0};

at::Tensor t64(const std::vector<double>& v) { return at::tensor(v, at::kDouble); }

TEST(ScoreRewards, StageTwoShapingGivesElevenOneMinusTenZeroWithAlphaTen) {
  const at::Tensor r = score_turn_returns(t64(kR1), t64(kR2), 2, 10.0);  // [4, 2]
  ASSERT_EQ(r.sizes(), (at::IntArrayRef{4, 2}));
  const std::vector<double> turn2 = {11, 1, -10, 0};
  for (int i = 0; i < 4; ++i) {
    EXPECT_DOUBLE_EQ(r[i][0].item<double>(), kR1[i]) << i;   // turn 1: r̂(y1)
    EXPECT_DOUBLE_EQ(r[i][1].item<double>(), turn2[i]) << i;  // turn 2: r̂(y2) + α (r̂(y2) − r̂(y1))
  }
  // Non-binary rewards: the same formula.
  const at::Tensor f = score_turn_returns(t64({0.25}), t64({0.75}), 2, 3.0);
  EXPECT_NEAR(f[0][1].item<double>(), 0.75 + 3.0 * 0.5, 1e-6);
}

TEST(ScoreRewards, StageOneRewardsTurnTwoOnlyAndKlIsStrongOnTurnOne) {
  const at::Tensor r = score_turn_returns(t64(kR1), t64(kR2), 1, 10.0);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(r[i][0].item<double>(), 0.0) << i;
    EXPECT_EQ(r[i][1].item<double>(), kR2[i]) << i;
  }
  EXPECT_EQ(score_turn_kl(1, 0.01, 0.1), std::make_pair(0.1, 0.01));   // (β2 on turn 1, β1 on turn 2)
  EXPECT_EQ(score_turn_kl(2, 0.01, 0.1), std::make_pair(0.01, 0.01));  // β1 on both
}

TEST(ScoreRewards, PerTurnValuesGoToTheTokensOfTheirTurnOnly) {
  // Row 0: prompt-free completion region: turn 1 (2 tokens), continuation (2), turn 2 (3), pad (1).
  // Row 1: turn 1 (1 token), continuation (1), turn 2 (1), pad.
  const at::Tensor turns = at::tensor({0, 1, 1, 0, 0, 2, 2, 2, 1, 0, 2, 0, 0, 0, 0, 0}, at::kInt).view({2, 8});
  const at::Tensor per_turn = at::tensor({5.0f, -7.0f, 0.5f, 11.0f}).view({2, 2});
  const at::Tensor routed = route_to_tokens(per_turn, turns);
  const std::vector<float> want = {0, 5, 5, 0, 0, -7, -7, -7, 0.5f, 0, 11, 0, 0, 0, 0, 0};
  for (int64_t k = 0; k < 16; ++k) EXPECT_EQ(routed.view({-1})[k].item<float>(), want[static_cast<size_t>(k)]) << k;
}

TEST(ScoreRewards, ReinforceUsesTheReturnsAndGroupSubtractsThePerTurnGroupBaseline) {
  const at::Tensor returns = score_turn_returns(t64(kR1), t64(kR2), 2, 10.0);  // [[0,11],[1,1],[1,-10],[0,0]]
  EXPECT_TRUE(at::equal(score_turn_advantages(returns, ScorePolicyGradient::kReinforce, 1), returns));
  // Groups of 2: {0,1} and {2,3}; per turn (r − mean) / (unbiased std + 1e-4), in float64 here.
  const at::Tensor a = score_turn_advantages(returns, ScorePolicyGradient::kGroup, 2, AdvantageEstimator::kGrpo, RewardScaling::kGroup);
  const double r[4][2] = {{0, 11}, {1, 1}, {1, -10}, {0, 0}};
  for (int t = 0; t < 2; ++t) {
    for (int g = 0; g < 2; ++g) {
      const double x = r[2 * g][t], y = r[2 * g + 1][t], mean = (x + y) / 2;
      const double sd = std::sqrt(((x - mean) * (x - mean) + (y - mean) * (y - mean)) / 1.0);
      EXPECT_NEAR(a[2 * g][t].item<double>(), (x - mean) / (sd + 1e-4), 1e-5);
      EXPECT_NEAR(a[2 * g + 1][t].item<double>(), (y - mean) / (sd + 1e-4), 1e-5);
    }
  }
  EXPECT_GT(a.abs().sum().item<double>(), 1.0);
}

// The float64 reference of one token's loss derivative with ρ = 1 (μ = 1): l = −A·ρ + β·k3,
// dl/dlogp = −A + β·(1 − exp(ref − logp)); dapo: the sum over active tokens / denominator.
struct Reference {
  double loss = 0;
  std::vector<double> grad;
};

Reference reference_loss(const std::vector<double>& logp, const std::vector<double>& ref, const std::vector<int>& turn,
                         const std::vector<double>& r1, const std::vector<double>& r2, int stage, double alpha,
                         double beta1, double beta2, int64_t T) {
  Reference out;
  out.grad.assign(logp.size(), 0.0);
  double active = 0;
  for (int t : turn) active += t > 0;
  for (size_t k = 0; k < logp.size(); ++k) {
    const size_t row = k / static_cast<size_t>(T);
    if (turn[k] == 0) continue;
    double a, beta;
    if (stage == 1) {
      a = turn[k] == 1 ? 0.0 : r2[row];
      beta = turn[k] == 1 ? beta2 : beta1;
    } else {
      a = turn[k] == 1 ? r1[row] : r2[row] + alpha * (r2[row] - r1[row]);
      beta = beta1;
    }
    const double d = ref[k] - logp[k];
    out.loss += (-a + beta * (std::exp(d) - d - 1.0)) / active;
    out.grad[k] = (-a + beta * (1.0 - std::exp(d))) / active;
  }
  return out;
}

void check_stage(int stage) {
  const int64_t B = 3, T = 7;
  const std::vector<int> turn = {1, 1, 1, 0, 2, 2, 0,    // right -> wrong
                                 1, 1, 0, 0, 2, 2, 2,    // wrong -> right
                                 1, 0, 0, 2, 0, 0, 0};   // right -> right
  const std::vector<double> r1 = {1, 0, 1}, r2 = {0, 1, 1};
  std::vector<double> logp(B * T), ref(B * T);
  for (int64_t k = 0; k < B * T; ++k) {
    logp[k] = -0.3 - 0.17 * static_cast<double>(k % 5) - 0.05 * static_cast<double>(k / 7);
    ref[k] = logp[k] + 0.4 * std::sin(static_cast<double>(k) + 1.0);  // the policy has moved from the reference
  }
  const double alpha = 10, beta1 = 0.01, beta2 = 0.1;

  const at::Tensor turns = at::tensor(turn, at::kInt).view({B, T});
  const at::Tensor returns = score_turn_returns(t64(r1), t64(r2), stage, alpha);
  const auto [k1, k2] = score_turn_kl(stage, beta1, beta2);
  PolicyLossInputs in;
  in.logp = at::tensor(logp, at::kDouble).to(at::kFloat).view({B, T}).requires_grad_(true);
  in.ref_logp = at::tensor(ref, at::kDouble).to(at::kFloat).view({B, T});
  in.advantages = route_to_tokens(score_turn_advantages(returns, ScorePolicyGradient::kReinforce, 1), turns);
  in.kl_coef = route_to_tokens(at::tensor({static_cast<float>(k1), static_cast<float>(k2)}).view({1, 2}).expand({B, 2}), turns);
  in.mask = turns.gt(0);
  PolicyLossOptions o;
  o.loss_type = GrpoLossType::kDapo;
  const double denominator = static_cast<double>(policy_loss_units(in.mask, GrpoLossType::kDapo));
  const PolicyLossOutput out = policy_loss(in, o, denominator);
  out.loss.backward();
  const at::Tensor grad = in.logp.grad().to(at::kDouble).view({-1});

  const Reference want = reference_loss(logp, ref, turn, r1, r2, stage, alpha, beta1, beta2, T);
  EXPECT_NEAR(out.loss.item<double>(), want.loss, 1e-5);
  double turn1_abs = 0;
  for (int64_t k = 0; k < B * T; ++k) {
    EXPECT_NEAR(grad[k].item<double>(), want.grad[static_cast<size_t>(k)], 1e-6) << "stage " << stage << " token " << k;
    if (turn[static_cast<size_t>(k)] == 0) EXPECT_EQ(grad[k].item<double>(), 0.0) << k;
    if (turn[static_cast<size_t>(k)] == 1) turn1_abs += std::abs(grad[k].item<double>());
  }
  EXPECT_GT(turn1_abs, 1e-4);  // the KL term alone (Stage I) or reward + KL (Stage II): never all zeros
}

TEST(ScoreLoss, StageOneGivesTurnOneTokensOnlyTheKlGradientAsAFloat64ReferenceDoes) {
  check_stage(1);
  // And independently of the reference: a turn-1 token's gradient is exactly β2·(1 − e^{ref−logp}) / D,
  // whatever the turn-1 reward was (the first row's turn 1 was right).
}

TEST(ScoreLoss, StageTwoGivesTurnOneTheFirstRewardAndTurnTwoTheShapedOneAsAFloat64ReferenceDoes) {
  check_stage(2);
}

TEST(ScoreLoss, GrpoLossStillTakesOneAdvantagePerSequenceAndRejectsOtherShapes) {
  PolicyLossInputs in;
  in.logp = at::zeros({2, 3}).requires_grad_(true);
  in.mask = at::ones({2, 3}, at::kBool);
  in.advantages = at::zeros({3});
  EXPECT_THROW(policy_loss(in, {}, 1.0), std::invalid_argument);
  in.advantages = at::zeros({2, 2});
  EXPECT_THROW(policy_loss(in, {}, 1.0), std::invalid_argument);
  in.advantages = at::zeros({2, 3});
  in.kl_coef = at::zeros({2, 3});  // without ref_logp
  EXPECT_THROW(policy_loss(in, {}, 1.0), std::invalid_argument);
}

TEST(ScoreMetrics, HandMadeOutcomeTableGivesAccuraciesDeltaAndFlipFractionsOfAllProblems) {
  // (t1, t2): c→c, c→i, i→c, i→c, i→i, i→i, c→c, i→c
  const std::vector<bool> t1 = {true, true, false, false, false, false, true, false};
  const std::vector<bool> t2 = {true, false, true, true, false, false, true, true};
  const scorch::CorrectionCounts c = scorch::correction_metrics(t1, t2);
  EXPECT_DOUBLE_EQ(c.accuracy_t1, 3.0 / 8);
  EXPECT_DOUBLE_EQ(c.accuracy_t2, 5.0 / 8);
  EXPECT_DOUBLE_EQ(c.delta, 2.0 / 8);
  EXPECT_DOUBLE_EQ(c.delta_i_to_c, 3.0 / 8);
  EXPECT_DOUBLE_EQ(c.delta_c_to_i, 1.0 / 8);
  EXPECT_DOUBLE_EQ(c.delta, c.delta_i_to_c - c.delta_c_to_i);
  EXPECT_THROW(scorch::correction_metrics({true}, {}), std::invalid_argument);
}

TEST(ScoreMetrics, TwoAttemptReportJsonHasExactlyTheIssuesKeys) {
  scorch::EvalReport r;
  r.attempts_reported = 2;
  r.n = 8;
  std::set<std::string> keys;
  const nlohmann::json j = r.to_json();
  for (auto& [k, v] : j.items()) keys.insert(k);
  EXPECT_EQ(keys, (std::set<std::string>{"accuracy_t1", "accuracy_t2", "delta", "delta_i_to_c", "delta_c_to_i",
                                         "edit_distance", "changed_fraction", "n"}));
}

}  // namespace

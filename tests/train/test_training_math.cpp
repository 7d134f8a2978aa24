// LR schedules (hand-computed values), global-norm clipping, the non-finite guard, and loss
// normalisation by the optimizer step's global token count (1×8 = 4×2 = 8×1 = float64 reference).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "common/error.h"
#include "config/config.h"
#include "train/gradients.h"
#include "train/loss_norm.h"
#include "train/schedule.h"

namespace scorch {
namespace {

using Type = LrSchedule::Type;

TEST(LrSchedule, ConstantWithWarmupRampsLinearlyFromTheFirstStep) {
  LrSchedule s(Type::Constant, 1.0, 10, 4);
  EXPECT_DOUBLE_EQ(s.lr(0), 0.25);
  EXPECT_DOUBLE_EQ(s.lr(1), 0.5);
  EXPECT_DOUBLE_EQ(s.lr(3), 1.0);
  EXPECT_DOUBLE_EQ(s.lr(4), 1.0);
  EXPECT_DOUBLE_EQ(s.lr(100), 1.0);
  LrSchedule none(Type::Constant, 3e-4, 10);
  EXPECT_DOUBLE_EQ(none.lr(0), 3e-4);
}

TEST(LrSchedule, LinearDecaysToZeroOrToTheMinRatioFloor) {
  LrSchedule s(Type::Linear, 2.0, 10, 2);  // decay over steps 2..10 (8 steps)
  EXPECT_DOUBLE_EQ(s.lr(0), 1.0);
  EXPECT_DOUBLE_EQ(s.lr(1), 2.0);
  EXPECT_DOUBLE_EQ(s.lr(2), 2.0);
  EXPECT_DOUBLE_EQ(s.lr(6), 1.0);    // 2 * (1 - 4/8)
  EXPECT_DOUBLE_EQ(s.lr(9), 0.25);   // 2 * (1 - 7/8)
  EXPECT_DOUBLE_EQ(s.lr(10), 0.0);
  EXPECT_DOUBLE_EQ(s.lr(15), 0.0);   // past the end: clamped, never negative
  LrSchedule floor(Type::Linear, 2.0, 10, 2, 0.0, 0.1);
  EXPECT_DOUBLE_EQ(floor.lr(6), 2.0 * (0.1 + 0.9 * 0.5));
  EXPECT_DOUBLE_EQ(floor.lr(10), 0.2);
  EXPECT_DOUBLE_EQ(floor.lr(0), 1.0);  // the floor does not apply during warmup
}

TEST(LrSchedule, CosineFollowsHalfCosineWithFloor) {
  LrSchedule s(Type::Cosine, 1.0, 10);
  EXPECT_DOUBLE_EQ(s.lr(0), 1.0);
  EXPECT_NEAR(s.lr(2), 0.5 * (1 + 0.8090169943749474), 1e-15);  // cos(pi/5)
  EXPECT_NEAR(s.lr(5), 0.5, 1e-15);
  EXPECT_NEAR(s.lr(10), 0.0, 1e-15);
  LrSchedule floor(Type::Cosine, 1.0, 10, 0, 0.0, 0.2);
  EXPECT_NEAR(floor.lr(5), 0.2 + 0.8 * 0.5, 1e-15);
  EXPECT_NEAR(floor.lr(10), 0.2, 1e-15);
  LrSchedule warm(Type::Cosine, 1.0, 12, 2);  // decay over 10 steps after 2 of warmup
  EXPECT_DOUBLE_EQ(warm.lr(0), 0.5);
  EXPECT_NEAR(warm.lr(7), 0.5, 1e-15);
}

TEST(LrSchedule, WarmupRatioRoundsUpAndStepsTakePrecedence) {
  LrSchedule ratio(Type::Linear, 1.0, 10, 0, 0.15);
  EXPECT_EQ(ratio.warmup_steps(), 2);  // ceil(1.5)
  LrSchedule steps(Type::Linear, 1.0, 10, 3, 0.5);
  EXPECT_EQ(steps.warmup_steps(), 3);
}

TEST(LrSchedule, FromConfigAndJsonRoundTripGiveTheSameCurve) {
  OptimSection o;
  o.learning_rate = 5e-5;
  o.lr_scheduler_type = "cosine";
  o.warmup_ratio = 0.1;
  o.min_lr_ratio = 0.05;
  const LrSchedule s = LrSchedule::from_config(o, 37);
  const LrSchedule back = LrSchedule::from_json(nlohmann::json::parse(s.to_json().dump()));
  for (int64_t step = 0; step <= 40; ++step) EXPECT_EQ(s.lr(step), back.lr(step)) << step;
  EXPECT_EQ(s.warmup_steps(), 4);
  EXPECT_THROW(LrSchedule::parse_type("cosine_with_restarts"), UserError);
  EXPECT_THROW(LrSchedule::from_json(nlohmann::json{{"type", "linear"}}), UserError);
}

std::map<std::string, at::Tensor> params_with_grads(const std::vector<std::vector<float>>& grads) {
  std::map<std::string, at::Tensor> out;
  for (size_t i = 0; i < grads.size(); ++i) {
    at::Tensor p = at::zeros({static_cast<int64_t>(grads[i].size())}).requires_grad_(true);
    p.mutable_grad() = at::tensor(grads[i]);
    out["p" + std::to_string(i)] = p;
  }
  return out;
}

TEST(ClipGradNorm, ScalesAllGradientsByMaxOverGlobalNormAndReturnsThePreClipNorm) {
  auto params = params_with_grads({{3.f, 4.f}, {12.f}});  // global norm sqrt(9 + 16 + 144) = 13
  const double norm = clip_grad_norm(params, 6.5);
  EXPECT_NEAR(norm, 13.0, 1e-6);
  const double coef = 6.5 / (13.0 + 1e-6);
  EXPECT_NEAR(params["p0"].grad()[0].item<double>(), 3.0 * coef, 1e-6);
  EXPECT_NEAR(params["p0"].grad()[1].item<double>(), 4.0 * coef, 1e-6);
  EXPECT_NEAR(params["p1"].grad()[0].item<double>(), 12.0 * coef, 1e-6);

  auto below = params_with_grads({{3.f, 4.f}, {12.f}});
  EXPECT_NEAR(clip_grad_norm(below, 20.0), 13.0, 1e-6);
  EXPECT_EQ(below["p1"].grad()[0].item<float>(), 12.f);
  auto off = params_with_grads({{3.f, 4.f}, {12.f}});
  EXPECT_NEAR(clip_grad_norm(off, 0.0), 13.0, 1e-6);  // 0 = no clipping, norm still measured
  EXPECT_EQ(off["p1"].grad()[0].item<float>(), 12.f);
}

TEST(ClipGradNorm, NonFiniteNormLeavesGradientsUntouchedAndNoGradsGiveZero) {
  auto nan = params_with_grads({{1.f, std::numeric_limits<float>::quiet_NaN()}, {2.f}});
  EXPECT_TRUE(std::isnan(clip_grad_norm(nan, 1.0)));
  EXPECT_EQ(nan["p1"].grad()[0].item<float>(), 2.f);
  auto inf = params_with_grads({{1.f, std::numeric_limits<float>::infinity()}});
  EXPECT_TRUE(std::isinf(clip_grad_norm(inf, 1.0)));
  std::map<std::string, at::Tensor> none{{"p", at::ones({2}).requires_grad_(true)}};
  EXPECT_EQ(clip_grad_norm(none, 1.0), 0.0);
}

TEST(NonFiniteGuard, SkipsNonFiniteStepsDropsGradsAndStopsAfterKInARow) {
  auto params = params_with_grads({{1.f, 2.f}});
  NonFiniteGuard guard(3);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_TRUE(guard.check(1.5, 2.0, params));
  EXPECT_TRUE(params["p0"].grad().defined());  // a good step keeps its gradients
  EXPECT_FALSE(guard.check(nan, 2.0, params));
  EXPECT_FALSE(params["p0"].grad().defined());
  EXPECT_FALSE(guard.check(1.0, inf, params));
  EXPECT_EQ(guard.consecutive(), 2);
  EXPECT_TRUE(guard.check(1.0, 1.0, params));  // a finite step resets the run
  EXPECT_EQ(guard.consecutive(), 0);
  EXPECT_FALSE(guard.check(nan, nan, params));
  EXPECT_FALSE(guard.check(-inf, 1.0, params));

  NonFiniteGuard resumed(3);
  resumed.load_json(nlohmann::json::parse(guard.to_json().dump()));
  EXPECT_EQ(resumed.consecutive(), 2);
  EXPECT_EQ(resumed.total_skipped(), 4);
  EXPECT_THROW(guard.check(nan, 1.0, params), NonFiniteStop);
  EXPECT_EQ(guard.total_skipped(), 5);
  EXPECT_THROW(resumed.check(nan, 1.0, params), NonFiniteStop);

  NonFiniteGuard never(0);
  for (int i = 0; i < 10; ++i) EXPECT_FALSE(never.check(nan, 1.0, params));
}

// ---- loss normalisation ----------------------------------------------------------------------

struct TinyBatch {
  at::Tensor x;        // [B, T, D]
  at::Tensor targets;  // [B, T] int64
  at::Tensor mask;     // [B, T] target-token mask; sample i has (i % 5) + 1 target tokens
};

TinyBatch make_batch() {
  at::Generator gen = at::detail::createCPUGenerator(7);
  const int64_t B = 8, T = 5, D = 4, V = 6;
  TinyBatch b;
  b.x = at::randn({B, T, D}, gen);
  b.targets = at::randint(0, V, {B, T}, gen, at::kLong);
  b.mask = at::zeros({B, T});
  for (int64_t i = 0; i < B; ++i) b.mask[i].narrow(0, 0, (i % 5) + 1).fill_(1.0);
  return b;
}

// Sum over target tokens of the token NLL of a linear LM head w [V, D].
at::Tensor masked_nll_sum(const at::Tensor& w, const at::Tensor& x, const at::Tensor& targets, const at::Tensor& mask) {
  const at::Tensor logp = at::log_softmax(at::matmul(x, w.t()), -1);  // [b, T, V]
  const at::Tensor nll = -logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1);  // [b, T]
  return (nll * mask.to(nll.scalar_type())).sum();
}

at::Tensor accumulated_grad(const at::Tensor& w0, const TinyBatch& b, int64_t micro_batches, bool global_norm) {
  at::Tensor w = w0.clone().requires_grad_(true);
  const int64_t size = b.x.size(0) / micro_batches;
  std::vector<int64_t> counts;
  for (int64_t m = 0; m < micro_batches; ++m) counts.push_back(b.mask.narrow(0, m * size, size).sum().item<int64_t>());
  const double denom = global_token_count(counts);
  for (int64_t m = 0; m < micro_batches; ++m) {
    const at::Tensor loss = masked_nll_sum(w, b.x.narrow(0, m * size, size), b.targets.narrow(0, m * size, size),
                                           b.mask.narrow(0, m * size, size));
    // global: divide by the step's token count; naive: mean per micro-batch, averaged over micro-batches
    const double scale = global_norm ? denom : static_cast<double>(counts[m]) * static_cast<double>(micro_batches);
    (loss / scale).backward();
  }
  return w.grad();
}

TEST(LossNormalisation, SplitsOneByEightFourByTwoEightByOneGiveTheFloat64Gradient) {
  const TinyBatch b = make_batch();
  at::Generator gen = at::detail::createCPUGenerator(9);
  const at::Tensor w0 = at::randn({6, 4}, gen);
  // Reference: the mean NLL over every target token of the batch, in float64.
  at::Tensor w64 = w0.to(at::kDouble).requires_grad_(true);
  (masked_nll_sum(w64, b.x.to(at::kDouble), b.targets, b.mask) / b.mask.sum().item<double>()).backward();
  const at::Tensor ref = w64.grad();
  for (int64_t m : {1, 2, 4, 8}) {
    const at::Tensor g = accumulated_grad(w0, b, m, true);
    EXPECT_LT((g.to(at::kDouble) - ref).abs().max().item<double>(), 1e-6) << m << " micro-batches";
  }
  // The per-micro-batch mean (the old transformers bug) differs once micro-batches hold different
  // token counts: this is what the global denominator fixes.
  const at::Tensor naive = accumulated_grad(w0, b, 4, false);
  EXPECT_GT((naive.to(at::kDouble) - ref).abs().max().item<double>(), 1e-3);
}

class FakeTwoRanks : public Reducer {
 public:
  explicit FakeTwoRanks(double other) : other_(other) {}
  double all_reduce_sum(double v) override {
    ++calls;
    return v + other_;
  }
  int calls = 0;

 private:
  double other_;
};

TEST(LossNormalisation, GlobalTokenCountSumsMicroBatchesAndRanksAndNeverReturnsZero) {
  EXPECT_EQ(global_token_count({3, 4, 5}), 12.0);
  IdentityReducer identity;
  EXPECT_EQ(global_token_count({3, 4, 5}, &identity), 12.0);
  FakeTwoRanks two(30);
  EXPECT_EQ(global_token_count({3, 4, 5}, &two), 42.0);
  EXPECT_EQ(two.calls, 1);  // one collective per step, not one per micro-batch
  EXPECT_EQ(global_token_count({0, 0}), 1.0);
  EXPECT_EQ(global_token_count({}), 1.0);
  EXPECT_THROW(global_token_count({2, -1}), std::invalid_argument);
}

}  // namespace
}  // namespace scorch

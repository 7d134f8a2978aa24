// token_logprobs (CPU reference) against the float64 textbook formula: values on awkward shapes,
// gradients against float64 autograd and finite differences, ignored rows, strided rows and errors.
#include "kernels/ops.h"
#include "tests/kernels/kernel_test_util.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <vector>

namespace {

using scorch::test::naive_logprobs;
using scorch::test::random_targets;
using scorch::test::relative_error;

struct Shape {
  int64_t n, v;
};
// V = 1, V not a multiple of any vector width, a chunk boundary (N * V > one CPU chunk), Qwen's V.
const std::vector<Shape> kShapes = {{1, 1},     {5, 1},      {3, 7},      {1, 1000},
                                    {37, 1000}, {600, 1000}, {2, 151936}, {1, 151936}};
const std::vector<double> kTemperatures = {0.7, 1.0, 1.3};

TEST(TokenLogprobs, MatchesFloat64ReferenceOnAwkwardShapesTemperaturesAndDtypes) {
  at::manual_seed(1);
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    double worst_logp = 0.0, worst_entropy = 0.0;
    for (const Shape& s : kShapes) {
      const at::Tensor logits = (at::randn({s.n, s.v}) * 3.0).to(dtype);
      const at::Tensor targets = random_targets(s.n, s.v);
      for (const double t : kTemperatures) {
        auto [logp, entropy] = scorch::token_logprobs(logits, targets, t, /*with_entropy=*/true);
        auto [ref_logp, ref_entropy] = naive_logprobs(logits.to(at::kDouble), targets, t);
        ASSERT_EQ(logp.scalar_type(), at::kFloat);
        ASSERT_EQ(entropy.scalar_type(), at::kFloat);
        ASSERT_EQ(logp.sizes(), ref_logp.sizes());
        const double e_logp = relative_error(logp, ref_logp), e_entropy = relative_error(entropy, ref_entropy);
        EXPECT_LT(e_logp, 1e-5) << "N=" << s.n << " V=" << s.v << " T=" << t << " " << dtype;
        // V = 1: entropy is exactly 0 and the absolute error is what relative_error reports.
        EXPECT_LT(e_entropy, 1e-5) << "N=" << s.n << " V=" << s.v << " T=" << t << " " << dtype;
        worst_logp = std::max(worst_logp, e_logp);
        worst_entropy = std::max(worst_entropy, e_entropy);
      }
    }
    std::printf("[ info ] %s: worst relative error logp %.2e, entropy %.2e\n", c10::toString(dtype), worst_logp,
                worst_entropy);
  }
}

TEST(TokenLogprobs, WithoutEntropyReturnsAnEmptyEntropyAndTheSameLogp) {
  const at::Tensor logits = at::randn({4, 33});
  const at::Tensor targets = random_targets(4, 33, false);
  auto [logp, entropy] = scorch::token_logprobs(logits, targets, 1.0, false);
  auto [logp2, entropy2] = scorch::token_logprobs(logits, targets, 1.0, true);
  EXPECT_EQ(entropy.numel(), 0);
  EXPECT_TRUE(at::equal(logp, logp2));
  EXPECT_EQ(entropy2.numel(), 4);
}

// Gradient of sum(w_logp * logp + w_entropy * entropy) (random weights) against float64 autograd.
void check_gradient(const Shape& s, double t, at::ScalarType dtype, bool use_logp, bool use_entropy, double tol) {
  const at::Tensor base = (at::randn({s.n, s.v}) * 2.0).to(dtype);
  const at::Tensor targets = random_targets(s.n, s.v);
  const at::Tensor w_logp = at::randn({s.n}), w_entropy = at::randn({s.n});

  at::Tensor logits = base.clone().requires_grad_(true);
  auto [logp, entropy] = scorch::token_logprobs(logits, targets, t, use_entropy);
  at::Tensor loss = at::zeros({}, at::kFloat);
  if (use_logp) loss = loss + (logp * w_logp).sum();
  if (use_entropy) loss = loss + (entropy * w_entropy).sum();
  loss.backward();

  at::Tensor z64 = base.to(at::kDouble).requires_grad_(true);
  auto [ref_logp, ref_entropy] = naive_logprobs(z64, targets, t);
  at::Tensor ref_loss = at::zeros({}, at::kDouble);
  if (use_logp) ref_loss = ref_loss + (ref_logp * w_logp.to(at::kDouble)).sum();
  if (use_entropy) ref_loss = ref_loss + (ref_entropy * w_entropy.to(at::kDouble)).sum();
  ref_loss.backward();

  ASSERT_TRUE(logits.grad().defined());
  EXPECT_EQ(logits.grad().scalar_type(), dtype) << "the gradient is written in the logits' dtype";
  EXPECT_LT(relative_error(logits.grad(), z64.grad()), tol)
      << "N=" << s.n << " V=" << s.v << " T=" << t << " " << dtype << " logp=" << use_logp
      << " entropy=" << use_entropy;
}

TEST(TokenLogprobs, GradientsMatchFloat64Autograd) {
  at::manual_seed(2);
  const std::vector<Shape> shapes = {{1, 1}, {3, 7}, {37, 1000}, {300, 1000}, {2, 151936}};
  for (const Shape& s : shapes)
    for (const double t : kTemperatures) {
      check_gradient(s, t, at::kFloat, true, true, 1e-5);
      // bf16 gradient: the only error is its final rounding to 8 bits of mantissa.
      check_gradient(s, t, at::kBFloat16, true, true, 8e-3);
    }
}

TEST(TokenLogprobs, GradientOfOnlyOneOutputSkipsTheOtherTerm) {
  at::manual_seed(3);
  for (const double t : kTemperatures) {
    check_gradient({9, 100}, t, at::kFloat, /*use_logp=*/true, /*use_entropy=*/false, 1e-5);
    check_gradient({9, 100}, t, at::kFloat, /*use_logp=*/false, /*use_entropy=*/true, 1e-5);
  }
}

TEST(TokenLogprobs, BackwardAgreesWithCentralFiniteDifferences) {
  at::manual_seed(4);
  const double t = 0.8, h = 1e-2;
  const at::Tensor base = at::randn({3, 5});
  const at::Tensor targets = at::tensor({4, -100, 0}, at::kLong);
  const at::Tensor w_logp = at::randn({3}), w_entropy = at::randn({3});
  auto loss_of = [&](const at::Tensor& z) {
    auto [logp, entropy] = scorch::token_logprobs(z, targets, t, true);
    return (logp * w_logp).sum() + (entropy * w_entropy).sum();
  };
  at::Tensor z = base.clone().requires_grad_(true);
  loss_of(z).backward();
  const at::Tensor analytic = z.grad();
  at::Tensor numeric = at::zeros_like(base);
  for (int64_t i = 0; i < base.size(0); ++i)
    for (int64_t j = 0; j < base.size(1); ++j) {
      at::Tensor plus = base.clone(), minus = base.clone();
      plus[i][j] += h;
      minus[i][j] -= h;
      numeric[i][j] = (loss_of(plus).item<double>() - loss_of(minus).item<double>()) / (2 * h);
    }
  EXPECT_LT(relative_error(analytic, numeric), 2e-3) << analytic << numeric;
}

TEST(TokenLogprobs, IgnoredRowsGiveZeroLogpAndNoLogpGradientButKeepTheirEntropy) {
  at::manual_seed(5);
  const at::Tensor base = at::randn({4, 50});
  const at::Tensor targets = at::tensor({3, -100, -1, 49}, at::kLong);
  at::Tensor logits = base.clone().requires_grad_(true);
  auto [logp, entropy] = scorch::token_logprobs(logits, targets, 1.0, true);
  EXPECT_EQ(logp[1].item<float>(), 0.f);
  EXPECT_EQ(logp[2].item<float>(), 0.f);
  EXPECT_NE(logp[0].item<float>(), 0.f);
  auto [ref_logp, ref_entropy] = naive_logprobs(base.to(at::kDouble), targets, 1.0);
  EXPECT_LT(relative_error(entropy, ref_entropy), 1e-5) << "entropy is computed for ignored rows too";
  logp.sum().backward();
  EXPECT_EQ(logits.grad()[1].abs().max().item<float>(), 0.f);
  EXPECT_EQ(logits.grad()[2].abs().max().item<float>(), 0.f);
  EXPECT_GT(logits.grad()[0].abs().max().item<float>(), 0.f);

  at::Tensor logits2 = base.clone().requires_grad_(true);
  auto [logp2, entropy2] = scorch::token_logprobs(logits2, targets, 1.0, true);
  entropy2.sum().backward();
  EXPECT_GT(logits2.grad()[1].abs().max().item<float>(), 0.f) << "the entropy gradient reaches ignored rows";
}

TEST(TokenLogprobs, StridedRowsWithContiguousLastDimensionAreAccepted) {
  at::manual_seed(6);
  const at::Tensor wide = at::randn({6, 40}).to(at::kBFloat16);
  const at::Tensor logits = wide.slice(1, 3, 36);  // [6, 33], row stride 40
  ASSERT_FALSE(logits.is_contiguous());
  const at::Tensor targets = random_targets(6, 33);
  auto [logp, entropy] = scorch::token_logprobs(logits, targets, 1.3, true);
  auto [ref_logp, ref_entropy] = naive_logprobs(logits.to(at::kDouble), targets, 1.3);
  EXPECT_LT(relative_error(logp, ref_logp), 1e-5);
  EXPECT_LT(relative_error(entropy, ref_entropy), 1e-5);
}

TEST(TokenLogprobs, NonContiguousLastDimensionIsAnError) {
  const at::Tensor logits = at::randn({50, 4}).t();  // [4, 50], stride(1) == 4
  EXPECT_THROW(scorch::token_logprobs(logits, random_targets(4, 50), 1.0, false), c10::Error);
}

TEST(TokenLogprobs, RejectsBadInputsWithAnError) {
  const at::Tensor logits = at::randn({3, 10});
  const at::Tensor targets = at::tensor({1, 2, 3}, at::kLong);
  EXPECT_THROW(scorch::token_logprobs(logits, targets, 0.0, false), c10::Error);
  EXPECT_THROW(scorch::token_logprobs(logits, targets, -1.0, false), c10::Error);
  EXPECT_THROW(scorch::token_logprobs(logits.to(at::kDouble), targets, 1.0, false), c10::Error);
  EXPECT_THROW(scorch::token_logprobs(logits, targets.to(at::kInt), 1.0, false), c10::Error);
  EXPECT_THROW(scorch::token_logprobs(logits, at::tensor({1, 2}, at::kLong), 1.0, false), c10::Error);
  EXPECT_THROW(scorch::token_logprobs(logits, at::tensor({1, 10, 3}, at::kLong), 1.0, false), c10::Error);
  EXPECT_THROW(scorch::token_logprobs(logits.reshape({30}), targets, 1.0, false), c10::Error);
  EXPECT_THROW(scorch::token_logprobs(at::randn({3, 0}), targets, 1.0, false), c10::Error);
}

TEST(TokenLogprobs, EmptyBatchGivesEmptyOutputs) {
  auto [logp, entropy] = scorch::token_logprobs(at::randn({0, 11}), at::zeros({0}, at::kLong), 1.0, true);
  EXPECT_EQ(logp.numel(), 0);
  EXPECT_EQ(entropy.numel(), 0);
}

}  // namespace

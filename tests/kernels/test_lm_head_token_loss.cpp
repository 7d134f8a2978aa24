// lm_head_token_loss (kernels/ops.h): a token-separable loss differentiated in the forward, against
// float64 autograd of the whole composition (logits = h W^T, log_softmax, the same per-token loss).
// The losses are non-linear in logp and use the entropy, as GRPO's clipped ratio, k3 KL and entropy
// bonus do, so the per-chunk gradients are not just the coefficients of a weighted sum.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <cstdio>
#include <vector>

#include "kernels/ops.h"
#include "tests/kernels/kernel_test_util.h"

namespace scorch {
namespace {

using test::naive_logprobs;
using test::relative_error;

// ℓ_t = a_t·exp(logp_t − b_t) + 0.3·(exp(r_t − logp_t) − (r_t − logp_t) − 1) − c·entropy_t, masked by
// m_t: a clipped-ratio-like term, a k3 KL term and an entropy bonus. Written once for any dtype.
at::Tensor per_token(const at::Tensor& logp, const at::Tensor& entropy, const at::Tensor& a, const at::Tensor& b,
                     const at::Tensor& r, const at::Tensor& m, double c) {
  const at::Tensor d = r - logp;
  at::Tensor l = a * at::exp(logp - b) + 0.3 * (at::exp(d) - d - 1.0);
  if (entropy.numel() > 0) l = l - c * entropy;
  return l * m;
}

struct Case {
  int64_t n, h, v, chunk;
  double temperature, softcap;
  bool frozen, with_entropy;
};

void check_case(const Case& k) {
  SCOPED_TRACE(::testing::Message() << "n=" << k.n << " h=" << k.h << " v=" << k.v << " chunk=" << k.chunk
                                    << " T=" << k.temperature << " cap=" << k.softcap << " frozen=" << k.frozen
                                    << " entropy=" << k.with_entropy);
  at::manual_seed(7);
  const at::Tensor hidden = test::random_nonzero({k.n, k.h});
  const at::Tensor weight = test::random_nonzero({k.v, k.h}, 0.6);
  const at::Tensor targets = test::random_targets(k.n, k.v);
  const at::Tensor a = at::randn({k.n}), b = at::randn({k.n}) - 2.0, r = at::randn({k.n}) - 2.0;
  const at::Tensor m = (at::rand({k.n}) < 0.8).to(at::kFloat);
  const double c = 0.05;

  std::vector<std::pair<int64_t, int64_t>> calls;
  const TokenLossFn fn = [&](const at::Tensor& logp, const at::Tensor& entropy, int64_t begin, int64_t end) {
    calls.emplace_back(begin, end);
    return per_token(logp, entropy, a.slice(0, begin, end), b.slice(0, begin, end), r.slice(0, begin, end),
                     m.slice(0, begin, end), c)
        .sum();
  };
  const at::Tensor x = hidden.clone().requires_grad_(true);
  const at::Tensor w = weight.clone().requires_grad_(!k.frozen);
  LmHeadTokenLoss out = lm_head_token_loss(x, w, targets, fn, k.temperature, k.with_entropy, k.chunk, k.softcap);
  (out.loss * 1.7).backward();  // the upstream gradient scales the stored ones

  // The chunks cover [0, N) in order.
  ASSERT_FALSE(calls.empty());
  EXPECT_EQ(calls.front().first, 0);
  EXPECT_EQ(calls.back().second, k.n);
  for (size_t i = 1; i < calls.size(); ++i) EXPECT_EQ(calls[i].first, calls[i - 1].second);

  const at::Tensor x64 = hidden.to(at::kDouble).requires_grad_(true);
  const at::Tensor w64 = weight.to(at::kDouble).requires_grad_(!k.frozen);
  at::Tensor z = at::mm(x64, w64.t());
  if (k.softcap > 0) z = at::tanh(z / k.softcap) * k.softcap;
  auto [logp64, entropy64] = naive_logprobs(z, targets, k.temperature);
  const at::Tensor ent64 = k.with_entropy ? entropy64 : at::empty({0}, at::kDouble);
  const at::Tensor ref = per_token(logp64, ent64, a.to(at::kDouble), b.to(at::kDouble), r.to(at::kDouble),
                                   m.to(at::kDouble), c)
                             .sum();
  (ref * 1.7).backward();

  EXPECT_FALSE(out.logp.requires_grad());
  EXPECT_LT(relative_error(out.loss, ref.detach()), 1e-5);
  EXPECT_LT(relative_error(out.logp, logp64.detach()), 1e-5);
  if (k.with_entropy) EXPECT_LT(relative_error(out.entropy, entropy64.detach()), 1e-5);
  const double err_h = relative_error(x.grad(), x64.grad());
  EXPECT_LT(err_h, 1e-5);
  double err_w = 0;
  if (k.frozen) {
    EXPECT_FALSE(w.grad().defined());
  } else {
    err_w = relative_error(w.grad(), w64.grad());
    EXPECT_LT(err_w, 1e-5);
  }
  std::printf("  n=%lld v=%lld chunk=%lld T=%.1f cap=%.0f %s%s: grad_hidden rel %.1e, grad_weight rel %.1e\n",
              static_cast<long long>(k.n), static_cast<long long>(k.v), static_cast<long long>(k.chunk),
              k.temperature, k.softcap, k.frozen ? "frozen" : "trained", k.with_entropy ? " +entropy" : "", err_h,
              err_w);
}

TEST(LmHeadTokenLoss, NonLinearLossWithEntropyMatchesFloat64Autograd) {
  // V not a multiple of the chunk, N = 1, a chunk larger than N, the automatic chunk, temperature
  // != 1, soft cap, trained and frozen weight, with and without the entropy.
  const std::vector<Case> cases = {
      {1, 8, 11, 4, 1.0, 0.0, false, true},      {37, 16, 1000, 8, 0.7, 0.0, false, true},
      {37, 16, 1000, 8, 0.7, 0.0, true, true},   {20, 12, 257, 0, 1.3, 5.0, false, true},
      {20, 12, 257, 64, 1.0, 0.0, false, false}, {29, 8, 97, 5, 1.0, 4.0, true, false},
  };
  for (const Case& k : cases) check_case(k);
}

TEST(LmHeadTokenLoss, TiedWeightsSumTheEmbeddingAndHeadGradients) {
  at::manual_seed(3);
  const at::Tensor emb = test::random_nonzero({23, 8});
  const at::Tensor ids = at::randint(0, 23, {12}, at::kLong);
  const at::Tensor targets = at::randint(0, 23, {12}, at::kLong);
  const at::Tensor e = emb.clone().requires_grad_(true);
  const at::Tensor hidden = at::tanh(e.index_select(0, ids) * 1.5);
  const TokenLossFn fn = [](const at::Tensor& logp, const at::Tensor&, int64_t, int64_t) {
    return (logp * logp).sum();  // non-linear: the gradient depends on the chunk's own values
  };
  lm_head_token_loss(hidden, e, targets, fn, 1.0, false, 5).loss.backward();
  const at::Tensor e64 = emb.to(at::kDouble).requires_grad_(true);
  auto [logp64, unused] = naive_logprobs(at::mm(at::tanh(e64.index_select(0, ids) * 1.5), e64.t()), targets, 1.0);
  (logp64 * logp64).sum().backward();
  EXPECT_LT(relative_error(e.grad(), e64.grad()), 1e-5);
}

TEST(LmHeadTokenLoss, Bf16MatchesTheRecomputingOpOnTheSameLogits) {
  // bf16 inputs: the same bf16 logits reduced by the same kernel as lm_head_logprobs, so logp is
  // bit-equal; the gradients are the same fp32 sums rounded to bf16.
  at::manual_seed(4);
  const at::Tensor hidden = test::random_nonzero({40, 64}).to(at::kBFloat16);
  const at::Tensor weight = test::random_nonzero({3001, 64}, 0.2).to(at::kBFloat16);
  const at::Tensor targets = test::random_targets(40, 3001);
  const TokenLossFn fn = [](const at::Tensor& logp, const at::Tensor& entropy, int64_t, int64_t) {
    return (at::exp(logp) - 0.1 * entropy).sum();
  };
  const at::Tensor x1 = hidden.clone().requires_grad_(true), w1 = weight.clone().requires_grad_(true);
  LmHeadTokenLoss fused = lm_head_token_loss(x1, w1, targets, fn, 0.9, true, 16);
  fused.loss.backward();
  const at::Tensor x2 = hidden.clone().requires_grad_(true), w2 = weight.clone().requires_grad_(true);
  auto [logp, entropy] = lm_head_logprobs(x2, w2, targets, 0.9, true, 16);
  fn(logp, entropy, 0, 40).backward();
  EXPECT_TRUE(at::equal(fused.logp, logp.detach()));
  EXPECT_EQ(x1.grad().scalar_type(), at::kBFloat16);
  EXPECT_EQ(w1.grad().scalar_type(), at::kBFloat16);
  EXPECT_LT(relative_error(x1.grad(), x2.grad()), 1e-2);
  EXPECT_LT(relative_error(w1.grad(), w2.grad()), 1e-2);
}

TEST(LmHeadTokenLoss, UnderNoGradItOnlyEvaluates) {
  at::manual_seed(5);
  const at::Tensor x = test::random_nonzero({9, 8}).requires_grad_(true);
  const at::Tensor w = test::random_nonzero({31, 8});
  const at::Tensor targets = test::random_targets(9, 31);
  const TokenLossFn fn = [](const at::Tensor& logp, const at::Tensor&, int64_t, int64_t) { return -logp.sum(); };
  at::Tensor grad_mode_loss = lm_head_token_loss(x, w, targets, fn, 1.0, false, 4).loss;
  at::NoGradGuard no_grad;
  LmHeadTokenLoss out = lm_head_token_loss(x, w, targets, fn, 1.0, false, 4);
  EXPECT_FALSE(out.loss.requires_grad());
  EXPECT_EQ(out.loss.item<float>(), grad_mode_loss.item<float>());
  auto [logp, unused] = lm_head_logprobs(x, w, targets, 1.0, false, 4);
  EXPECT_TRUE(at::equal(out.logp, logp));
}

TEST(LmHeadTokenLoss, RefusesABadLossFnAndASecondBackward) {
  const at::Tensor x = test::random_nonzero({4, 8}).requires_grad_(true);
  const at::Tensor w = test::random_nonzero({10, 8});
  const at::Tensor t = test::random_targets(4, 10, false);
  const TokenLossFn per_token_vector = [](const at::Tensor& logp, const at::Tensor&, int64_t, int64_t) {
    return logp;  // [R], not the chunk's sum
  };
  EXPECT_THROW(
      {
        try {
          lm_head_token_loss(x, w, t, per_token_vector, 1.0, false, 2);
        } catch (const c10::Error& e) {
          EXPECT_NE(std::string(e.what()).find("one-element floating tensor"), std::string::npos) << e.what();
          throw;
        }
      },
      c10::Error);
  EXPECT_THROW(lm_head_token_loss(x, w, t, TokenLossFn(), 1.0), c10::Error);
  const TokenLossFn fn = [](const at::Tensor& logp, const at::Tensor&, int64_t, int64_t) { return logp.sum(); };
  at::Tensor loss = lm_head_token_loss(x, w, t, fn, 1.0).loss;
  loss.backward({}, /*retain_graph=*/true);
  EXPECT_THROW(
      {
        try {
          loss.backward();
        } catch (const c10::Error& e) {
          EXPECT_NE(std::string(e.what()).find("differentiable once"), std::string::npos) << e.what();
          throw;
        }
      },
      c10::Error);
}

}  // namespace
}  // namespace scorch

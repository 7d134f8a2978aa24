// The sampler on fixed distributions: top-p keeps the smallest set with mass >= p, top-k keeps the
// k largest, the draw follows the (truncated) distribution, logprobs are the full-vocabulary
// temperature-scaled log-softmax, and parameter validation names the bad field.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "common/error.h"
#include "kernels/ops.h"
#include "rollout/sampling.h"
#include "rollout_fixtures.h"

namespace scorch {
namespace {

TEST(TopP, KeepsTheSmallestSetWhoseMassReachesP) {
  // Shuffled distribution; masses are exact binary fractions so the boundary cases are exact.
  const at::Tensor probs = at::tensor({0.0625, 0.25, 0.0625, 0.5, 0.125}, at::kFloat).view({1, 5});
  auto kept = [&](double p) {
    const at::Tensor m = top_p_keep_mask(probs, p).view({-1});
    std::vector<int64_t> idx;
    for (int64_t i = 0; i < 5; ++i) if (m[i].item<bool>()) idx.push_back(i);
    return idx;
  };
  EXPECT_EQ(kept(0.3), (std::vector<int64_t>{3}));           // 0.5 >= 0.3
  EXPECT_EQ(kept(0.5), (std::vector<int64_t>{3}));           // exactly reaches p
  EXPECT_EQ(kept(0.51), (std::vector<int64_t>{1, 3}));       // 0.75
  EXPECT_EQ(kept(0.75), (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(kept(0.76), (std::vector<int64_t>{1, 3, 4}));    // 0.875
  EXPECT_EQ(kept(0.9).size(), 4u);                           // 0.9375 with one of the tied 0.0625
  EXPECT_EQ(kept(1.0).size(), 5u);
  EXPECT_EQ(kept(1e-6), (std::vector<int64_t>{3}));          // the top token is always kept
}

TEST(TopP, RowsAreIndependent) {
  const at::Tensor probs = at::tensor({0.7, 0.2, 0.1, 0.1, 0.2, 0.7}, at::kFloat).view({2, 3});
  const at::Tensor m = top_p_keep_mask(probs, 0.8);
  EXPECT_TRUE(at::equal(m, at::tensor({1, 1, 0, 0, 1, 1}, at::kInt).view({2, 3}).to(at::kBool)));
}

TEST(TopK, KeepsTheKLargestPerRow) {
  const at::Tensor logits = at::tensor({1.0, 5.0, 3.0, -2.0, 4.0, 0.0, 2.0, 9.0}, at::kFloat).view({2, 4});
  const at::Tensor f = top_k_filter(logits, 2);
  const at::Tensor finite = at::isfinite(f);
  EXPECT_TRUE(at::equal(finite, at::tensor({0, 1, 1, 0, 1, 0, 0, 1}, at::kInt).view({2, 4}).to(at::kBool)));
  EXPECT_TRUE(at::equal(top_k_filter(logits, 0), logits));
  EXPECT_TRUE(at::equal(top_k_filter(logits, 4), logits));
}

TEST(Sampler, GreedyIsArgmaxWithTemperatureOneLogprob) {
  const at::Tensor logits = at::randn({6, 50}, at::TensorOptions().dtype(at::kFloat));
  SamplingParams p;
  p.temperature = 0;
  at::Generator g = make_sampling_generator(1, at::kCPU);
  const SampledTokens s = sample_next_tokens(logits, p, g);
  EXPECT_TRUE(at::equal(s.tokens, logits.argmax(-1)));
  const at::Tensor ref = logits.to(at::kDouble).log_softmax(-1).gather(-1, s.tokens.unsqueeze(-1)).squeeze(-1);
  EXPECT_LE((s.logprobs.to(at::kDouble) - ref).abs().max().item<double>(), 1e-6);
}

TEST(Sampler, TopPAndTopKDrawOnlyKeptTokensAndReportFullVocabularyLogprobs) {
  at::manual_seed(3);
  const at::Tensor logits = at::randn({1, 40}, at::kFloat).mul(2).expand({4000, 40}).contiguous();
  SamplingParams p;
  p.temperature = 0.8;
  p.top_p = 0.6;
  p.top_k = 10;
  at::Generator g = make_sampling_generator(11, at::kCPU);
  const SampledTokens s = sample_next_tokens(logits, p, g);
  const at::Tensor z = logits.select(0, 0) / 0.8;                                   // [V]
  const at::Tensor after_k = top_k_filter(z.view({1, -1}), 10);
  const at::Tensor allowed = top_p_keep_mask(after_k.softmax(-1), 0.6).view({-1});  // [V]
  const at::Tensor drawn_allowed = allowed.index_select(0, s.tokens);
  EXPECT_TRUE(drawn_allowed.all().item<bool>());
  EXPECT_GE(std::get<0>(at::_unique(s.tokens)).size(0), 2);  // it really samples (p = 0.6 keeps several here)
  const at::Tensor ref = z.to(at::kDouble).log_softmax(-1).index_select(0, s.tokens);
  EXPECT_LE((s.logprobs.to(at::kDouble) - ref).abs().max().item<double>(), 1e-5);
}

TEST(Sampler, SameSeedSameDrawsDifferentSeedDifferentDraws) {
  const at::Tensor logits = at::randn({64, 30}, at::kFloat);
  SamplingParams p;
  at::Generator a = make_sampling_generator(5, at::kCPU), b = make_sampling_generator(5, at::kCPU),
                c = make_sampling_generator(6, at::kCPU);
  const at::Tensor ta = sample_next_tokens(logits, p, a).tokens;
  EXPECT_TRUE(at::equal(ta, sample_next_tokens(logits, p, b).tokens));
  EXPECT_FALSE(at::equal(ta, sample_next_tokens(logits, p, c).tokens));
}

// The inverse-CDF draw on its own: unnormalised weights with zeros inside and at both ends.
// Frequencies match w / sum(w) (chi-square), a zero-weight token is never drawn.
TEST(InverseCdfDraw, FollowsUnnormalisedWeightsAndNeverDrawsAZeroWeight) {
  const std::vector<double> w = {0.0, 3.0, 0.0, 0.5, 1.5, 0.0, 0.0, 2.0, 1.0, 0.0};
  const int64_t n = 40000, V = static_cast<int64_t>(w.size());
  const at::Tensor probs = at::tensor(w, at::kDouble).to(at::kFloat).view({1, V}).expand({n, V}).contiguous();
  at::Generator g = make_sampling_generator(7, at::kCPU);
  const at::Tensor tokens = inverse_cdf_draw(probs, g);
  ASSERT_EQ(tokens.sizes(), at::IntArrayRef({n}));
  const test::WeightFit fit = test::fit_to_weights(tokens, w);
  EXPECT_EQ(fit.zero_weight_draws, 0);
  EXPECT_LT(fit.chi_square, 20.52);  // chi-square, 5 degrees of freedom, 99.9% quantile
  // Power: the same counts are rejected against a slightly different distribution.
  EXPECT_GT(test::fit_to_weights(tokens, {0.0, 2.7, 0.0, 0.6, 1.6, 0.0, 0.0, 2.1, 1.0, 0.0}).chi_square, 20.52);
}

// Rows where all the mass sits on the first or the last token, and a Qwen-sized vocabulary where
// one token near the end holds half the mass behind 151k tiny ones: the float64 running sum keeps
// that token's share at 0.5 (a float32 sum over 151k entries would drift).
TEST(InverseCdfDraw, SingleMassRowsAndALargeVocabularyTail) {
  at::Generator g = make_sampling_generator(3, at::kCPU);
  at::Tensor edge = at::zeros({2000, 64}, at::kFloat);
  edge.narrow(0, 0, 1000).select(1, 0).fill_(1e-30f);   // a tiny but positive single mass
  edge.narrow(0, 1000, 1000).select(1, 63).fill_(5.0f);
  const at::Tensor t = inverse_cdf_draw(edge, g);
  EXPECT_TRUE(t.narrow(0, 0, 1000).eq(0).all().item<bool>());
  EXPECT_TRUE(t.narrow(0, 1000, 1000).eq(63).all().item<bool>());

  const int64_t V = 151936, rows = 100, calls = 10, heavy = V - 7;  // 1000 draws, 100 rows at a time
  at::Tensor probs = at::full({1, V}, 0.5 / (V - 1), at::kFloat);
  probs[0][heavy] = 0.5f;
  const at::Tensor batch = probs.expand({rows, V}).contiguous();
  std::vector<at::Tensor> parts;
  for (int64_t c = 0; c < calls; ++c) parts.push_back(inverse_cdf_draw(batch, g));
  const at::Tensor drawn = at::cat(parts);
  const double share = drawn.eq(heavy).to(at::kDouble).mean().item<double>();
  // Binomial(1000, 0.5): standard deviation 0.0158; 4.5 sigma bound.
  EXPECT_NEAR(share, 0.5, 0.071);
  EXPECT_TRUE(drawn.lt(V).all().item<bool>());
}

// The fused sampler (scorch::sample_tokens + token_logprobs; CUDA's path without top-k / top-p),
// here through the ops' CPU code: frequencies follow softmax(logits / T) (chi-square, at two
// temperatures), a -inf logit is never drawn, and the log-probs are the float64 log-softmax.
TEST(FusedSampler, FollowsTheTemperatureSoftmaxAndNeverDrawsAMaskedToken) {
  const std::vector<double> w = {0.0, 3.0, 0.0, 0.5, 1.5, 0.0, 0.0, 2.0, 1.0, 0.0};
  const int64_t n = 40000, V = static_cast<int64_t>(w.size());
  const at::Tensor row = at::tensor(w, at::kDouble).log().to(at::kFloat).view({1, V});  // log 0 = -inf
  const at::Tensor logits = row.expand({n, V}).contiguous();
  for (double t : {1.0, 0.5}) {
    SamplingParams p;
    p.temperature = t;
    at::Generator g = make_sampling_generator(13, at::kCPU);
    const SampledTokens s = sample_next_tokens_fused(logits, p, g);
    std::vector<double> wt;
    for (double x : w) wt.push_back(std::pow(x, 1.0 / t));  // softmax(log w / T) = w^(1/T) / sum
    const test::WeightFit fit = test::fit_to_weights(s.tokens, wt);
    EXPECT_EQ(fit.zero_weight_draws, 0) << "T " << t;
    EXPECT_LT(fit.chi_square, 20.52) << "T " << t;  // 5 degrees of freedom, 99.9% quantile
    EXPECT_GT(test::fit_to_weights(s.tokens, t == 1.0 ? std::vector<double>{0, 2.7, 0, 0.6, 1.6, 0, 0, 2.1, 1, 0}
                                                       : w).chi_square, 20.52) << "T " << t;  // power
    const at::Tensor ref = (row.to(at::kDouble) / t).log_softmax(-1).view({-1}).index_select(0, s.tokens);
    EXPECT_LE((s.logprobs.to(at::kDouble) - ref).abs().max().item<double>(), 1e-6) << "T " << t;
  }
  SamplingParams greedy;
  greedy.temperature = 0;
  at::Generator g = make_sampling_generator(1, at::kCPU);
  const at::Tensor r = at::randn({6, 50}, at::kFloat);
  const SampledTokens s = sample_next_tokens_fused(r, greedy, g);
  EXPECT_TRUE(at::equal(s.tokens, r.argmax(-1)));
  const at::Tensor ref = r.to(at::kDouble).log_softmax(-1).gather(-1, s.tokens.unsqueeze(-1)).squeeze(-1);
  EXPECT_LE((s.logprobs.to(at::kDouble) - ref).abs().max().item<double>(), 1e-6);
  SamplingParams top_p;
  top_p.top_p = 0.9;
  EXPECT_THROW(sample_next_tokens_fused(r, top_p, g), std::invalid_argument);
}

// sample_tokens for given uniforms is the first token whose float64 cumulative softmax mass
// exceeds u (a float64 reference computed here); bf16 logits draw as their fp32 values do. The op
// weighs in fp32, so a token may differ only where u lies within 1e-6 of a boundary of the reference.
TEST(FusedSampler, GivenUniformsDrawTheFirstTokenPastUOfTheFloat64Cdf) {
  at::manual_seed(21);
  const int64_t B = 64, V = 1000;
  for (auto dtype : {at::kFloat, at::kBFloat16}) {
    for (double t : {1.0, 0.7}) {
      const at::Tensor logits = (at::randn({B, V}) * 3).to(dtype);
      const at::Tensor u = at::rand({B}, at::kDouble);
      const at::Tensor tokens = scorch::sample_tokens(logits, u, t);
      const at::Tensor cdf = (logits.to(at::kDouble) / t).softmax(-1).cumsum(-1);  // [B, V]
      int64_t near_boundary = 0;
      for (int64_t b = 0; b < B; ++b) {
        const double ub = u[b].item<double>();
        const int64_t ref = at::searchsorted(cdf[b], at::scalar_tensor(ub, at::kDouble), false, true).item<int64_t>();
        const int64_t got = tokens[b].item<int64_t>();
        if (got == ref) continue;
        // A mismatch is only allowed across one boundary that u nearly touches.
        ASSERT_LE(std::abs(got - ref), 1) << "row " << b;
        const double edge = cdf[b][std::min(got, ref)].item<double>();
        EXPECT_LT(std::abs(edge - ub), 1e-6) << "row " << b;
        ++near_boundary;
      }
      EXPECT_LE(near_boundary, 1);
    }
  }
  // Rows are independent: a row's token depends on its logits and its uniform only.
  const at::Tensor logits = at::randn({8, 300});
  const at::Tensor u = at::rand({8}, at::kDouble);
  const at::Tensor all = scorch::sample_tokens(logits, u, 1.0);
  for (int64_t b = 0; b < 8; ++b) {
    EXPECT_EQ(scorch::sample_tokens(logits.narrow(0, b, 1), u.narrow(0, b, 1), 1.0).item<int64_t>(),
              all[b].item<int64_t>());
  }
}

// u = 0 draws the first token of positive weight, u just below 1 the last; a row with a NaN, a
// +inf or only -inf logits gets -1 (the engine's error); bad arguments are errors naming the problem.
TEST(FusedSampler, EdgeUniformsNanRowsAndBadArguments) {
  const float inf = std::numeric_limits<float>::infinity();
  at::Tensor logits = at::tensor({-inf, 0.5f, 1.0f, -inf, 2.0f, -inf, -inf, 0.f, -inf, 3.0f, -inf, -inf}).view({3, 4});
  logits[2][1] = std::numeric_limits<float>::quiet_NaN();
  const at::Tensor first = scorch::sample_tokens(logits, at::zeros({3}, at::kDouble), 1.0);
  EXPECT_EQ(first[0].item<int64_t>(), 1);
  EXPECT_EQ(first[1].item<int64_t>(), 0);
  EXPECT_EQ(first[2].item<int64_t>(), -1);
  const at::Tensor last = scorch::sample_tokens(logits, at::full({3}, 1.0 - std::ldexp(1.0, -53), at::kDouble), 1.0);
  EXPECT_EQ(last[0].item<int64_t>(), 2);
  EXPECT_EQ(last[1].item<int64_t>(), 3);
  const at::Tensor none = at::full({1, 5}, -inf);
  EXPECT_EQ(scorch::sample_tokens(none, at::full({1}, 0.5, at::kDouble), 1.0).item<int64_t>(), -1);
  const at::Tensor plus_inf = at::tensor({0.5f, inf, 1.0f}).view({1, 3});
  EXPECT_EQ(scorch::sample_tokens(plus_inf, at::full({1}, 0.5, at::kDouble), 1.0).item<int64_t>(), -1);

  const at::Tensor ok = at::randn({2, 5});
  EXPECT_THROW(scorch::sample_tokens(ok, at::rand({3}, at::kDouble), 1.0), c10::Error);        // one u per row
  EXPECT_THROW(scorch::sample_tokens(ok, at::rand({2}, at::kFloat), 1.0), c10::Error);         // float64 u
  EXPECT_THROW(scorch::sample_tokens(ok, at::rand({2}, at::kDouble), 0.0), c10::Error);        // T > 0
  EXPECT_THROW(scorch::sample_tokens(ok.view({10}), at::rand({10}, at::kDouble), 1.0), c10::Error);  // [N, V]
  EXPECT_THROW(scorch::sample_tokens(ok.t(), at::rand({5}, at::kDouble), 1.0), c10::Error);    // last dim strided
}

TEST(SamplingParams, BadValuesAreUserErrorsNamingTheField) {
  auto fails_with = [](SamplingParams p, const std::string& word) {
    try {
      validate_sampling_params(p);
    } catch (const UserError& e) {
      return std::string(e.what()).find(word) != std::string::npos;
    }
    return false;
  };
  SamplingParams p;
  EXPECT_NO_THROW(validate_sampling_params(p));
  p = {}; p.n = 0;               EXPECT_TRUE(fails_with(p, "n (samples per prompt)"));
  p = {}; p.temperature = -0.5;  EXPECT_TRUE(fails_with(p, "temperature"));
  p = {}; p.top_p = 0.0;         EXPECT_TRUE(fails_with(p, "top_p"));
  p = {}; p.top_p = 1.5;         EXPECT_TRUE(fails_with(p, "top_p"));
  p = {}; p.top_k = -1;          EXPECT_TRUE(fails_with(p, "top_k"));
  p = {}; p.max_new_tokens = 0;  EXPECT_TRUE(fails_with(p, "max_new_tokens"));
  p = {}; p.stop_strings = {""}; EXPECT_TRUE(fails_with(p, "stop string"));
}

TEST(SamplingParams, EmptyTooLongOrOutOfVocabularyPromptsAreUserErrors) {
  EXPECT_THROW(validate_prompt({}, 0, 16, 10), UserError);
  EXPECT_THROW(validate_prompt(std::vector<int64_t>(16, 1), 0, 16, 10), UserError);
  EXPECT_NO_THROW(validate_prompt(std::vector<int64_t>(15, 1), 0, 16, 10));
  EXPECT_THROW(validate_prompt({1, 10}, 0, 16, 10), UserError);
  EXPECT_THROW(validate_prompt({-1}, 0, 16, 10), UserError);
}

}  // namespace
}  // namespace scorch

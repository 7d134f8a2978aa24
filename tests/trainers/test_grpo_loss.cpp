// The GRPO loss against an independent float64 implementation of TRL's formulas written here with
// plain loops (values, clip/KL/entropy metrics, and gradients by central finite differences of
// the reference), for every loss_type and option; μ = 1 (ratio 1 in value, gradient −A·∇logp);
// and gradient-accumulation invariance (1×8 vs 4×2) for dapo, dr_grpo and grpo.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "config/config.h"
#include "trainers/common/rl_task.h"
#include "trainers/common/policy_loss.h"

namespace scorch::trainers {
namespace {

struct Data {
  int64_t B = 0, T = 0;
  std::vector<double> logp, old, ref, ent, adv;  // [B*T] except adv [B]
  std::vector<int> mask;                         // [B*T]
};

// Values are rounded to fp32 so that the reference sees exactly what the tensors hold.
Data make_data(int64_t B, int64_t T, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> n01(0.0, 1.0);
  std::uniform_real_distribution<double> u01(0.0, 1.0);
  auto f = [](double x) { return static_cast<double>(static_cast<float>(x)); };
  Data d;
  d.B = B, d.T = T;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t len = 1 + static_cast<int64_t>(u01(rng) * (T - 1));  // 1..T-1 active tokens
    d.adv.push_back(f(n01(rng)));
    for (int64_t t = 0; t < T; ++t) {
      const double lp = -0.1 - 3.0 * u01(rng);
      d.logp.push_back(f(lp));
      d.old.push_back(f(lp + 0.3 * n01(rng)));
      d.ref.push_back(f(lp + 0.5 * n01(rng)));
      d.ent.push_back(f(0.1 + 2.0 * u01(rng)));
      d.mask.push_back(t < len ? 1 : 0);
    }
  }
  return d;
}

struct Opts {
  std::string loss_type = "dapo";
  double eps_low = 0.2, eps_high = 0.2, delta = 0, beta = 0, top_q = 1.0, ent_coef = 0;
  bool sequence = false, use_old = false;
  int64_t max_len = 16;
};

// torch.quantile's linear interpolation.
double quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const double pos = q * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (pos - static_cast<double>(lo)) * (v[hi] - v[lo]);
}

struct RefMetrics {
  double low = 0, high = 0, region = 0, kl = 0, entropy = 0;
};

// TRL's _compute_loss, written out token by token. `old` is the π_old used for the ratio (with
// μ = 1 the caller passes the unperturbed logp so that finite differences see ρ's gradient).
double reference_loss(const Data& d, const std::vector<double>& logp, const std::vector<double>& old, const Opts& o,
                      double denominator, RefMetrics* metrics = nullptr) {
  double threshold = -INFINITY;
  if (o.top_q < 1.0) {
    std::vector<double> active;
    for (size_t i = 0; i < d.ent.size(); ++i) if (d.mask[i]) active.push_back(d.ent[i]);
    threshold = quantile(active, 1.0 - o.top_q);
  }
  double total = 0, all_tokens = 0, n_low = 0, n_high = 0, n_region = 0, kl_sum = 0, ent_sum = 0;
  for (int64_t b = 0; b < d.B; ++b) {
    double seq_lw = 0, seq_len = 0;
    for (int64_t t = 0; t < d.T; ++t) {
      const size_t i = static_cast<size_t>(b * d.T + t);
      seq_lw += d.mask[i] * (logp[i] - old[i]);
      seq_len += d.mask[i];
    }
    seq_lw /= std::max(seq_len, 1.0);
    const double A = d.adv[static_cast<size_t>(b)];
    double row = 0;
    for (int64_t t = 0; t < d.T; ++t) {
      const size_t i = static_cast<size_t>(b * d.T + t);
      const double lw = o.sequence ? seq_lw : logp[i] - old[i];
      double c1 = std::exp(lw);
      const double c2 = std::min(std::max(c1, 1.0 - o.eps_low), 1.0 + o.eps_high);
      if (o.delta > 0) c1 = std::min(c1, o.delta);
      double l = -std::min(c1 * A, c2 * A);
      if (o.top_q < 1.0) l *= (d.mask[i] && d.ent[i] >= threshold) ? 1.0 : 0.0;
      const double dk = d.ref[i] - logp[i];
      const double kl = std::exp(dk) - dk - 1.0;
      if (o.beta != 0) l += o.beta * kl;
      l -= o.ent_coef * d.ent[i];
      row += d.mask[i] * l;
      if (d.mask[i]) {
        const bool low = c1 < 1.0 - o.eps_low && A < 0, high = c1 > 1.0 + o.eps_high && A > 0;
        if (!o.sequence) n_low += low, n_high += high, n_region += low || high;
        else if (t == 0) n_low += low, n_high += high, n_region += low || high;  // one per row
        kl_sum += kl, ent_sum += d.ent[i];
      }
    }
    all_tokens += seq_len;
    total += o.loss_type == "grpo" ? row / std::max(seq_len, 1.0) : row;
  }
  if (metrics) {
    const double n = o.sequence ? static_cast<double>(d.B) : std::max(all_tokens, 1.0);
    metrics->low = n_low / n, metrics->high = n_high / n, metrics->region = n_region / n;
    metrics->kl = kl_sum / std::max(all_tokens, 1.0), metrics->entropy = ent_sum / std::max(all_tokens, 1.0);
  }
  double numerator = total;
  if (o.loss_type == "bnpo") numerator = total / std::max(all_tokens, 1.0);
  if (o.loss_type == "dr_grpo") numerator = total / static_cast<double>(o.max_len);
  return numerator / denominator;
}

at::Tensor tensor(const std::vector<double>& v, int64_t B, int64_t T) {
  return at::tensor(v, at::kDouble).reshape({B, T}).to(at::kFloat);
}

GrpoLossType loss_type_of(const std::string& name) {
  GrpoLossType t{};
  EXPECT_TRUE(parse_option(name, t)) << name;
  return t;
}

PolicyLossOptions to_options(const Opts& o) {
  PolicyLossOptions g;
  g.loss_type = loss_type_of(o.loss_type), g.epsilon_low = o.eps_low, g.epsilon_high = o.eps_high, g.delta = o.delta;
  g.beta = o.beta, g.importance_sampling_level = o.sequence ? ImportanceSamplingLevel::kSequence : ImportanceSamplingLevel::kToken;
  g.top_entropy_quantile = o.top_q, g.entropy_coef = o.ent_coef, g.max_completion_length = o.max_len;
  return g;
}

PolicyLossInputs to_inputs(const Data& d, const Opts& o, at::Tensor logp) {
  PolicyLossInputs in;
  in.logp = logp;
  if (o.use_old) in.old_logp = tensor(d.old, d.B, d.T);
  if (o.beta != 0) in.ref_logp = tensor(d.ref, d.B, d.T);
  in.entropy = tensor(d.ent, d.B, d.T);
  in.advantages = at::tensor(d.adv, at::kDouble).to(at::kFloat);
  in.mask = tensor(std::vector<double>(d.mask.begin(), d.mask.end()), d.B, d.T).to(at::kBool);
  return in;
}

void check_against_reference(const Opts& o, uint64_t seed) {
  SCOPED_TRACE(o.loss_type + (o.sequence ? " sequence" : " token") + " old=" + std::to_string(o.use_old) +
               " beta=" + std::to_string(o.beta) + " delta=" + std::to_string(o.delta) +
               " eps_high=" + std::to_string(o.eps_high) + " top_q=" + std::to_string(o.top_q) +
               " ent_coef=" + std::to_string(o.ent_coef));
  const Data d = make_data(5, 7, seed);
  at::Tensor logp = tensor(d.logp, d.B, d.T).requires_grad_(true);
  PolicyLossInputs in = to_inputs(d, o, logp);
  const double denom = static_cast<double>(policy_loss_units(in.mask, loss_type_of(o.loss_type)));
  PolicyLossOutput out = policy_loss(in, to_options(o), denom);
  out.loss.backward();

  const std::vector<double>& old = o.use_old ? d.old : d.logp;
  RefMetrics rm;
  const double expected = reference_loss(d, d.logp, old, o, denom, &rm);
  EXPECT_NEAR(out.loss.item<double>(), expected, 1e-5 * std::max(1.0, std::abs(expected)));
  EXPECT_NEAR(out.numerator.item<double>(), expected * denom, 1e-5 * std::max(1.0, std::abs(expected * denom)));
  EXPECT_NEAR(out.metrics.at("clip_ratio/low_mean"), rm.low, 1e-9);
  EXPECT_NEAR(out.metrics.at("clip_ratio/high_mean"), rm.high, 1e-9);
  EXPECT_NEAR(out.metrics.at("clip_ratio/region_mean"), rm.region, 1e-9);
  EXPECT_NEAR(out.metrics.at("entropy"), rm.entropy, 1e-6);
  if (o.beta != 0) {
    EXPECT_NEAR(out.metrics.at("kl"), rm.kl, 1e-5);
  }

  // d loss / d logp by central differences of the float64 reference (π_old held fixed).
  const at::Tensor grad = logp.grad().to(at::kDouble).reshape({-1});
  const double h = 1e-6;
  for (size_t i = 0; i < d.logp.size(); ++i) {
    std::vector<double> plus = d.logp, minus = d.logp;
    plus[i] += h, minus[i] -= h;
    const double fd = (reference_loss(d, plus, old, o, denom) - reference_loss(d, minus, old, o, denom)) / (2 * h);
    EXPECT_NEAR(grad[static_cast<int64_t>(i)].item<double>(), fd, 2e-5 + 1e-4 * std::abs(fd)) << "token " << i;
  }

  // The per-token form the LM head differentiates in the forward (policy_token_loss), summed over
  // chunks of 3 flattened tokens: the same value and gradients (logp and entropy) as the reference;
  // GSPO's sequence-level ratio and the entropy mask are refused.
  const PolicyLossOptions options = to_options(o);
  PolicyLossInputs terms_in = to_inputs(d, o, at::Tensor());
  if (!policy_loss_is_token_separable(options)) {
    EXPECT_TRUE(o.sequence || o.top_q < 1.0);
    EXPECT_THROW(policy_token_terms(terms_in, options), std::invalid_argument);
    return;
  }
  const PolicyTokenTerms terms = policy_token_terms(terms_in, options);
  const at::Tensor lp = tensor(d.logp, d.B, d.T).reshape({-1}).requires_grad_(true);
  const at::Tensor ent = tensor(d.ent, d.B, d.T).reshape({-1}).requires_grad_(true);
  at::Tensor sum = at::zeros({}, at::kFloat);
  const int64_t n = lp.size(0);
  for (int64_t b = 0; b < n; b += 3) {
    const int64_t e = std::min(n, b + 3);
    sum = sum + policy_token_loss(terms, lp.slice(0, b, e), ent.slice(0, b, e), b, e, options);
  }
  EXPECT_NEAR(sum.item<double>(), expected * denom, 1e-5 * std::max(1.0, std::abs(expected * denom)));
  (sum / denom).backward();
  EXPECT_LT((lp.grad().to(at::kDouble) - grad).abs().max().item<double>(), 1e-6);
  for (size_t i = 0; i < d.ent.size(); ++i) {
    Data plus = d, minus = d;
    plus.ent[i] += h, minus.ent[i] -= h;
    const double fd = (reference_loss(plus, d.logp, old, o, denom) - reference_loss(minus, d.logp, old, o, denom)) / (2 * h);
    const double got = ent.grad().defined() ? ent.grad()[static_cast<int64_t>(i)].item<double>() : 0.0;
    EXPECT_NEAR(got, fd, 2e-5 + 1e-4 * std::abs(fd)) << "entropy of token " << i;
  }
}

TEST(GrpoLoss, EveryLossTypeAndOptionMatchesTheFloat64TrlReference) {
  uint64_t seed = 1;
  for (const std::string lt : {"grpo", "bnpo", "dr_grpo", "dapo"}) {
    for (bool sequence : {false, true}) {
      std::vector<Opts> variants;
      Opts base;
      base.loss_type = lt, base.sequence = sequence;
      variants.push_back(base);                                                 // μ = 1
      Opts old = base; old.use_old = true; variants.push_back(old);             // μ > 1: clipping active
      Opts hi = old; hi.eps_high = 0.28; variants.push_back(hi);                // clip-higher
      Opts delta = hi; delta.delta = 1.3; variants.push_back(delta);            // two-sided
      Opts kl = old; kl.beta = 0.04; variants.push_back(kl);                    // k3 KL
      Opts ent = old; ent.top_q = 0.4; variants.push_back(ent);                 // top entropy tokens
      Opts bonus = old; bonus.ent_coef = 0.01; variants.push_back(bonus);       // entropy bonus
      Opts all = delta; all.beta = 0.02; all.top_q = 0.6; all.ent_coef = 0.003; variants.push_back(all);
      for (const Opts& o : variants) check_against_reference(o, seed++);
    }
  }
}

TEST(GrpoLoss, WithOneIterationTheRatioIsOneAndTheGradientIsMinusAdvantageTimesGradLogp) {
  const Data d = make_data(4, 6, 77);
  Opts o;
  o.loss_type = "dapo";
  at::Tensor logp = tensor(d.logp, d.B, d.T).requires_grad_(true);
  PolicyLossInputs in = to_inputs(d, o, logp);
  const double denom = static_cast<double>(policy_loss_units(in.mask, GrpoLossType::kDapo));
  PolicyLossOutput out = policy_loss(in, to_options(o), denom);
  out.loss.backward();
  // Value: ratio 1 everywhere, so loss = −Σ_i A_i·|y_i| / tokens; gradient −A_i·mask / tokens.
  double tokens = 0, value = 0;
  for (int64_t b = 0; b < d.B; ++b) {
    for (int64_t t = 0; t < d.T; ++t) {
      const int m = d.mask[static_cast<size_t>(b * d.T + t)];
      tokens += m, value -= m * d.adv[static_cast<size_t>(b)];
    }
  }
  EXPECT_DOUBLE_EQ(tokens, denom);
  EXPECT_NEAR(out.loss.item<double>(), value / tokens, 1e-6);
  for (int64_t b = 0; b < d.B; ++b) {
    for (int64_t t = 0; t < d.T; ++t) {
      const int m = d.mask[static_cast<size_t>(b * d.T + t)];
      EXPECT_NEAR(logp.grad()[b][t].item<double>(), -m * d.adv[static_cast<size_t>(b)] / tokens, 1e-7);
    }
  }
  EXPECT_EQ(out.metrics.at("clip_ratio/region_mean"), 0.0);
}

TEST(GrpoLoss, DapoDrGrpoAndGrpoGradientsDoNotDependOnTheMicroBatchSplit) {
  for (const std::string lt : {"dapo", "dr_grpo", "grpo"}) {
    SCOPED_TRACE(lt);
    const Data d = make_data(8, 9, 5);
    Opts o;
    o.loss_type = lt, o.use_old = true, o.beta = 0.04, o.eps_high = 0.28;
    // 1 × 8
    at::Tensor a = tensor(d.logp, d.B, d.T).requires_grad_(true);
    PolicyLossInputs in = to_inputs(d, o, a);
    const double denom_full = static_cast<double>(policy_loss_units(in.mask, loss_type_of(lt)));
    policy_loss(in, to_options(o), denom_full).loss.backward();
    // 4 × 2: the denominator sums the micro-batches' units, as the training loop does.
    at::Tensor b = tensor(d.logp, d.B, d.T).requires_grad_(true);
    PolicyLossInputs all = to_inputs(d, o, b);
    double denom = 0;
    for (int64_t i = 0; i < 4; ++i) denom += policy_loss_units(all.mask.slice(0, 2 * i, 2 * i + 2), loss_type_of(lt));
    EXPECT_DOUBLE_EQ(denom, denom_full);
    double loss_sum = 0;
    for (int64_t i = 0; i < 4; ++i) {
      PolicyLossInputs mb;
      auto s = [&](const at::Tensor& x) { return x.slice(0, 2 * i, 2 * i + 2); };
      mb.logp = s(b), mb.old_logp = s(all.old_logp), mb.ref_logp = s(all.ref_logp), mb.entropy = s(all.entropy);
      mb.advantages = s(all.advantages), mb.mask = s(all.mask);
      PolicyLossOutput out = policy_loss(mb, to_options(o), denom);
      out.loss.backward();
      loss_sum += out.loss.item<double>();
    }
    EXPECT_TRUE(at::allclose(a.grad(), b.grad(), 1e-5, 1e-7));
    EXPECT_GT(a.grad().abs().sum().item<double>(), 0.0);
  }
}

TEST(GrpoLoss, UnitsFollowTheLossType) {
  const at::Tensor mask = at::tensor({1, 1, 0, 1, 0, 0}, at::kLong).reshape({2, 3}).to(at::kBool);
  EXPECT_EQ(policy_loss_units(mask, GrpoLossType::kDapo), 3);
  EXPECT_EQ(policy_loss_units(mask, GrpoLossType::kGrpo), 2);
  EXPECT_EQ(policy_loss_units(mask, GrpoLossType::kDrGrpo), 2);
  EXPECT_EQ(policy_loss_units(mask, GrpoLossType::kBnpo), 1);
  GrpoLossType unknown{};
  EXPECT_FALSE(parse_option("ppo", unknown));  // no such loss_type: refused by name at config load
}

// generation.decode_steps / fused_decode_attention / lookahead reach the rollout engine's options,
// with their documented defaults, from YAML and from --set.
TEST(RlStep, GenerationKeysReachTheEngineOptions) {
  const char* base = "trainer: grpo\nmodel:\n  path: m\ndata:\n  train: t.jsonl\n";
  const EngineOptions defaults = rollout_engine_options(parse_config(base, "job.yaml"));
  EXPECT_EQ(defaults.decode_steps, DecodeSteps::kAuto);
  EXPECT_FALSE(defaults.fused_decode_attention);
  EXPECT_TRUE(defaults.lookahead);
  const EngineOptions set = rollout_engine_options(parse_config(
      std::string(base) + "generation:\n  decode_steps: static\n  fused_decode_attention: true\n", "job.yaml",
      {"generation.lookahead=false"}));
  EXPECT_EQ(set.decode_steps, DecodeSteps::kStatic);
  EXPECT_TRUE(set.fused_decode_attention);
  EXPECT_FALSE(set.lookahead);
}

}  // namespace
}  // namespace scorch::trainers

// The DPO losses against an independent float64 implementation of TRL's formulas written here
// with plain loops (dpo_loss.h lists them): every loss type, label smoothing (cDPO, robust), ipo's
// length averaging, the sft/NLL term (token mean; ScPO's per-sequence mean), pair weights,
// combinations with weights, the metrics, and gradients by central finite differences of the
// reference. Relative errors are reported on failure.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "common/error.h"
#include "trainers/dpo/dpo_loss.h"

namespace scorch::trainers {
namespace {

struct Pairs {
  std::vector<double> c, r, rc, rr, lc, lr, w;  // policy/ref sums, lengths, weights  [B]
};

Pairs make_pairs(int B, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  auto f = [](double x) { return static_cast<double>(static_cast<float>(x)); };  // what fp32 tensors hold
  Pairs p;
  for (int i = 0; i < B; ++i) {
    p.lc.push_back(1 + static_cast<int>(u(rng) * 20)), p.lr.push_back(1 + static_cast<int>(u(rng) * 20));
    p.c.push_back(f(-p.lc.back() * (0.2 + 2 * u(rng)))), p.r.push_back(f(-p.lr.back() * (0.2 + 2 * u(rng))));
    p.rc.push_back(f(p.c.back() + 3 * (u(rng) - 0.5))), p.rr.push_back(f(p.r.back() + 3 * (u(rng) - 0.5)));
    p.w.push_back(f(0.1 + u(rng)));
  }
  return p;
}

double log_sigmoid(double x) { return x >= 0 ? -std::log1p(std::exp(-x)) : x - std::log1p(std::exp(x)); }

// TRL's batch loss in float64: Σ_k weight_k · term_k (see dpo_loss.h).
double reference_loss(const Pairs& p, const DpoLossOptions& o, bool use_weights) {
  const size_t B = p.c.size();
  bool ipo = false;
  for (const auto& [n, w] : o.losses) ipo |= n == "ipo";
  double total = 0;
  for (const auto& [name, weight] : o.losses) {
    double sum = 0, tokens = 0;
    for (size_t i = 0; i < B; ++i) {
      const double wi = use_weights ? p.w[i] : 1.0;
      double c = p.c[i], r = p.r[i], rc = p.rc[i], rr = p.rr[i];
      if (ipo) c /= p.lc[i], rc /= p.lc[i], r /= p.lr[i], rr /= p.lr[i];
      const double h = (c - rc) - (r - rr), b = o.beta, e = o.label_smoothing;
      double l = 0;
      if (name == "sigmoid") l = -(1 - e) * log_sigmoid(b * h) - e * log_sigmoid(-b * h);
      if (name == "robust") l = (-(1 - e) * log_sigmoid(b * h) + e * log_sigmoid(-b * h)) / (1 - 2 * e);
      if (name == "hinge") l = std::max(0.0, 1 - b * h);
      if (name == "ipo") l = (h - 1 / (2 * b)) * (h - 1 / (2 * b));
      if (name == "sft") {
        if (o.sft_per_sequence) l = -p.c[i] / p.lc[i];
        else sum += -p.c[i] * wi, tokens += p.lc[i];
      }
      if (name != "sft" || o.sft_per_sequence) sum += wi * l;
    }
    total += weight * (name == "sft" && !o.sft_per_sequence ? sum / tokens : sum / static_cast<double>(B));
  }
  return total;
}

at::Tensor t(const std::vector<double>& v) { return at::tensor(v, at::kDouble).to(at::kFloat); }

DpoLossInputs inputs(const Pairs& p, bool use_weights) {
  DpoLossInputs in;
  in.chosen_logps = t(p.c).requires_grad_(true), in.rejected_logps = t(p.r).requires_grad_(true);
  in.ref_chosen_logps = t(p.rc), in.ref_rejected_logps = t(p.rr);
  in.chosen_lengths = t(p.lc), in.rejected_lengths = t(p.lr);
  if (use_weights) in.weights = t(p.w);
  return in;
}

void expect_matches(const DpoLossOptions& o, bool use_weights, uint64_t seed) {
  const Pairs p = make_pairs(7, seed);
  DpoLossInputs in = inputs(p, use_weights);
  DpoLossOutput out = dpo_loss(in, o);
  const double want = reference_loss(p, o, use_weights), got = out.loss.item<double>();
  const double rel = std::abs(got - want) / std::max(1e-12, std::abs(want));
  EXPECT_LT(rel, 2e-6) << "loss " << got << " vs float64 " << want << " (rel err " << rel << ")";
  ASSERT_GT(std::abs(want), 1e-3);  // never a test on zeros
  // Gradients w.r.t. the policy sums by central differences of the float64 reference.
  out.loss.backward();
  // An input no term uses (rejected under sft alone) gets no gradient: zero.
  auto grad = [](const at::Tensor& x) { return x.grad().defined() ? x.grad().to(at::kDouble) : at::zeros_like(x, at::kDouble); };
  const at::Tensor gc = grad(in.chosen_logps), gr = grad(in.rejected_logps);
  for (size_t i = 0; i < p.c.size(); ++i) {
    for (int which = 0; which < 2; ++which) {
      Pairs plus = p, minus = p;
      const double step = 1e-4;
      (which == 0 ? plus.c : plus.r)[i] += step, (which == 0 ? minus.c : minus.r)[i] -= step;
      const double fd = (reference_loss(plus, o, use_weights) - reference_loss(minus, o, use_weights)) / (2 * step);
      const double g = (which == 0 ? gc : gr)[static_cast<int64_t>(i)].item<double>();
      EXPECT_NEAR(g, fd, 1e-4 + 1e-3 * std::abs(fd)) << (which == 0 ? "d/dchosen " : "d/drejected ") << i;
    }
  }
}

DpoLossOptions opts(std::vector<std::pair<std::string, double>> losses, double beta = 0.1, double eps = 0.0) {
  DpoLossOptions o;
  o.losses = std::move(losses), o.beta = beta, o.label_smoothing = eps;
  return o;
}

TEST(DpoLoss, SigmoidMatchesTrl) { expect_matches(opts({{"sigmoid", 1}}, 0.5), false, 1); }
TEST(DpoLoss, SigmoidWithLabelSmoothingIsConservativeDpo) { expect_matches(opts({{"sigmoid", 1}}, 0.3, 0.1), false, 2); }
TEST(DpoLoss, RobustMatchesTrl) { expect_matches(opts({{"robust", 1}}, 0.3, 0.2), false, 3); }
TEST(DpoLoss, HingeMatchesTrl) { expect_matches(opts({{"hinge", 1}}, 0.7), false, 4); }
TEST(DpoLoss, IpoUsesLengthAveragedLogRatios) { expect_matches(opts({{"ipo", 1}}, 0.4), false, 5); }
TEST(DpoLoss, SftIsTheTokenMeanNllOfChosen) { expect_matches(opts({{"sft", 1}}), false, 6); }
TEST(DpoLoss, CombinedLossesAreWeightedSums) { expect_matches(opts({{"sigmoid", 0.7}, {"hinge", 0.2}, {"sft", 0.5}}, 0.2), false, 7); }
TEST(DpoLoss, IpoAmongLossesAveragesEveryLogProbAsTrlDoes) { expect_matches(opts({{"sigmoid", 1}, {"ipo", 0.5}}, 0.2), false, 8); }
TEST(DpoLoss, PairWeightsScaleEachPair) { expect_matches(opts({{"sigmoid", 1}, {"sft", 1}}, 0.5), true, 9); }

TEST(DpoLoss, ScpoLossIsWeightedSigmoidPlusLengthNormalisedNll) {
  DpoLossOptions o = opts({{"sigmoid", 1}, {"sft", 1.0}}, 0.5);
  o.sft_per_sequence = true;
  expect_matches(o, true, 10);
  // And written out as ALGORITHMS.md §3 states it, pair by pair.
  const Pairs p = make_pairs(5, 11);
  double want = 0;
  for (size_t i = 0; i < p.c.size(); ++i) {
    const double h = (p.c[i] - p.rc[i]) - (p.r[i] - p.rr[i]);
    want += -p.w[i] * log_sigmoid(0.5 * h) - (1.0 * p.w[i] / p.lc[i]) * p.c[i];
  }
  want /= static_cast<double>(p.c.size());
  EXPECT_NEAR(dpo_loss(inputs(p, true), o).loss.item<double>(), want, 2e-6 * std::abs(want));
}

TEST(DpoLoss, MetricsUseTrlNamesAndDefinitions) {
  const Pairs p = make_pairs(9, 12);
  const DpoLossOutput out = dpo_loss(inputs(p, false), opts({{"sigmoid", 1}}, 0.25));
  double rc = 0, rr = 0, acc = 0, lc = 0, lr = 0;
  for (size_t i = 0; i < p.c.size(); ++i) {
    const double a = 0.25 * (p.c[i] - p.rc[i]), b = 0.25 * (p.r[i] - p.rr[i]);
    rc += a, rr += b, acc += a > b, lc += p.c[i], lr += p.r[i];
  }
  const double n = static_cast<double>(p.c.size());
  EXPECT_NEAR(out.metrics.at("rewards/chosen"), rc / n, 1e-6);
  EXPECT_NEAR(out.metrics.at("rewards/rejected"), rr / n, 1e-6);
  EXPECT_NEAR(out.metrics.at("rewards/margins"), (rc - rr) / n, 1e-6);
  EXPECT_DOUBLE_EQ(out.metrics.at("rewards/accuracies"), acc / n);
  EXPECT_GT(acc, 0.0);
  EXPECT_LT(acc, n);  // the fixture has both outcomes
  EXPECT_NEAR(out.metrics.at("logps/chosen"), lc / n, 1e-4);
  EXPECT_NEAR(out.metrics.at("logps/rejected"), lr / n, 1e-4);
}

TEST(DpoLoss, ParsesCommaListsWeightsAndRpoAlpha) {
  auto l = parse_dpo_losses("sigmoid, sft", {1.0, 0.25}, 0.5);
  ASSERT_EQ(l.size(), 3u);
  EXPECT_EQ(l[1].first, "sft");
  EXPECT_DOUBLE_EQ(l[1].second, 0.25);
  EXPECT_EQ(l[2].first, "sft");
  EXPECT_DOUBLE_EQ(l[2].second, 0.5);
  EXPECT_THROW(parse_dpo_losses("sigmoid,kto", {}, 0), UserError);
  EXPECT_THROW(parse_dpo_losses("sigmoid", {1, 2}, 0), UserError);
}

}  // namespace
}  // namespace scorch::trainers

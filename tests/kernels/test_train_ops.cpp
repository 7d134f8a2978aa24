// The backward of the fused layer ops on CPU (fused_rms_norm, fused_add_rms_norm, fused_rope,
// silu_mul, silu_and_mul): every gradient against autograd on the float64 formula (computed in fp32
// and rounded once, so within the dtype's rounding of it) and against autograd on transformers'
// eager composition in the dtype (which rounds after every op: within a few of the dtype's ulps), on
// odd sizes, strided views (q / k as transposed projections), broadcast tables, bf16 / fp16 / fp32;
// a finite-difference check in fp32; the weight gradient's sum the same bits with 1 and 2 threads;
// silu_mul's forward bit-equal to at::silu(gate) * up. The CUDA kernels' code is checked against
// these CPU ops in test_kernels_emulated.cpp.
#include "kernels/ops.h"
#include "tests/kernels/decode_ops_reference.h"
#include "tests/kernels/kernel_test_util.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace {

using scorch::test::hf_rms_norm;
using scorch::test::hf_rope;
using scorch::test::random_nonzero;
using scorch::test::relative_error;

constexpr double kEps = 1e-6;
const std::vector<at::ScalarType> kDtypes = {at::kFloat, at::kBFloat16, at::kHalf};

// Against the float64 gradient: the op rounds once (half an ulp of the dtype, relative to the largest
// element), plus fp32 arithmetic; the composition rounds after each of its ops.
double f64_tolerance(at::ScalarType dtype) {
  return dtype == at::kFloat ? 2e-6 : dtype == at::kBFloat16 ? 8e-3 : 1e-3;
}
double composition_tolerance(at::ScalarType dtype) {
  return dtype == at::kFloat ? 1e-5 : dtype == at::kBFloat16 ? 4e-2 : 5e-3;
}

at::Tensor leaf(const at::Tensor& t) { return t.detach().clone().requires_grad_(true); }
at::Tensor leaf64(const at::Tensor& t) { return t.detach().to(at::kDouble).requires_grad_(true); }

// Worst relative errors per (op, dtype), printed by each test.
struct Report {
  double vs_f64 = 0, composition_vs_f64 = 0;
  void add(double op_error, double composition_error) {
    vs_f64 = std::max(vs_f64, op_error);
    composition_vs_f64 = std::max(composition_vs_f64, composition_error);
  }
  void print(const char* what, at::ScalarType dtype) const {
    std::printf("[ info ] %s %s: worst gradient error vs float64 %.2e (the eager composition's %.2e)\n", what,
                c10::toString(dtype), vs_f64, composition_vs_f64);
  }
};

// --- RMSNorm ---------------------------------------------------------------------------------

struct NormCase {
  std::vector<int64_t> shape;
  int64_t pad;  // > 0: x is a narrow of rows pad wider (strided rows)
};

TEST(FusedTrainOps, RmsNormGradientsMatchFloat64AndTheEagerComposition) {
  at::manual_seed(3);
  // (Not N = 1: there the gradient is eps / (h^2 + eps) of the others, pure cancellation.)
  // Odd sizes, the hidden size of Qwen2.5-0.5B, a per-head q norm ([B, T, heads, D] over D), strided rows.
  const std::vector<NormCase> cases = {{{5, 7, 33}, 0}, {{2, 3, 896}, 0}, {{2, 5, 14, 64}, 0}, {{9, 31}, 3},
                                       {{1, 3}, 0}};
  for (const at::ScalarType dtype : kDtypes) {
    Report report;
    for (const NormCase& c : cases) {
      std::vector<int64_t> wide = c.shape;
      wide.back() += c.pad;
      const int64_t n = c.shape.back();
      const at::Tensor x_base = random_nonzero(wide, 2.0).to(dtype);
      const at::Tensor x_val = x_base.narrow(-1, 0, n);
      const at::Tensor w_val = (1 + 0.4 * random_nonzero({n})).to(dtype);
      const at::Tensor dy = random_nonzero(c.shape).to(dtype);
      const std::string where = std::string(c10::toString(dtype)) + " " + c10::str(c.shape) + " pad " +
                                std::to_string(c.pad);

      at::Tensor xb = leaf(x_base), w = leaf(w_val);
      const at::Tensor y = scorch::fused_rms_norm(xb.narrow(-1, 0, n), w, kEps);
      y.backward(dy);
      {
        c10::NoGradGuard no_grad;
        EXPECT_TRUE(at::equal(y, scorch::fused_rms_norm(x_val, w_val, kEps))) << where << ": the forward changed";
      }
      const at::Tensor gx = xb.grad().narrow(-1, 0, n);
      EXPECT_TRUE(xb.grad().narrow(-1, n, c.pad).eq(0).all().item<bool>()) << where;

      at::Tensor x64 = leaf64(x_val), w64 = leaf64(w_val);
      scorch::test::rms_norm_f64(x64, w64, kEps).backward(dy.to(at::kDouble));
      at::Tensor xe = leaf(x_val), we = leaf(w_val);
      hf_rms_norm(xe, we, kEps).backward(dy);

      const double ex = relative_error(gx, x64.grad()), ew = relative_error(w.grad(), w64.grad());
      EXPECT_LE(ex, f64_tolerance(dtype)) << where << " grad_x";
      EXPECT_LE(ew, f64_tolerance(dtype) * (dtype == at::kFloat ? 1 : 2)) << where << " grad_weight";
      EXPECT_LE(relative_error(gx, xe.grad()), composition_tolerance(dtype)) << where << " grad_x vs eager";
      EXPECT_LE(relative_error(w.grad(), we.grad()), composition_tolerance(dtype)) << where << " grad_weight vs eager";
      report.add(std::max(ex, ew), std::max(relative_error(xe.grad(), x64.grad()), relative_error(we.grad(), w64.grad())));
      EXPECT_EQ(w.grad().scalar_type(), dtype);
    }
    report.print("fused_rms_norm", dtype);
  }
}

TEST(FusedTrainOps, AddRmsNormGradientsFlowToBothInputsFromBothOutputs) {
  at::manual_seed(4);
  for (const at::ScalarType dtype : kDtypes) {
    Report report;
    for (const std::vector<int64_t>& shape : {std::vector<int64_t>{3, 5, 37}, std::vector<int64_t>{2, 4, 896}}) {
      const int64_t n = shape.back();
      const at::Tensor h_val = random_nonzero(shape, 2.0).to(dtype), d_val = random_nonzero(shape).to(dtype);
      const at::Tensor w_val = (1 + 0.4 * random_nonzero({n})).to(dtype);
      const at::Tensor g_sum = random_nonzero(shape).to(dtype), g_y = random_nonzero(shape).to(dtype);
      // Both outputs used, only y, only the sum (the last layer's residual stream).
      for (const int used : {3, 2, 1}) {
        const std::string where = std::string(c10::toString(dtype)) + " " + c10::str(shape) + " outputs " +
                                  std::to_string(used);
        at::Tensor h = leaf(h_val), d = leaf(d_val), w = leaf(w_val);
        auto [sum, y] = scorch::fused_add_rms_norm(h, d, w, kEps);
        at::Tensor loss = at::zeros({}, at::kDouble);
        if (used & 1) loss = loss + (sum.to(at::kDouble) * g_sum.to(at::kDouble)).sum();
        if (used & 2) loss = loss + (y.to(at::kDouble) * g_y.to(at::kDouble)).sum();
        loss.backward();

        at::Tensor h64 = leaf64(h_val), d64 = leaf64(d_val), w64 = leaf64(w_val);
        const at::Tensor s64 = h64 + d64;
        at::Tensor loss64 = at::zeros({}, at::kDouble);
        if (used & 1) loss64 = loss64 + (s64 * g_sum.to(at::kDouble)).sum();
        // The norm of the rounded sum, as the op (and the eager composition) normalise it.
        if (used & 2) {
          const at::Tensor s_rounded = s64 + (sum.detach().to(at::kDouble) - s64).detach();
          loss64 = loss64 + (scorch::test::rms_norm_f64(s_rounded, w64, kEps) * g_y.to(at::kDouble)).sum();
        }
        loss64.backward();
        at::Tensor he = leaf(h_val), de = leaf(d_val), we = leaf(w_val);
        const at::Tensor se = he + de;
        at::Tensor loss_e = at::zeros({}, at::kDouble);
        if (used & 1) loss_e = loss_e + (se.to(at::kDouble) * g_sum.to(at::kDouble)).sum();
        if (used & 2) loss_e = loss_e + (hf_rms_norm(se, we, kEps).to(at::kDouble) * g_y.to(at::kDouble)).sum();
        loss_e.backward();

        const double eh = relative_error(h.grad(), h64.grad()), ed = relative_error(d.grad(), d64.grad());
        EXPECT_LE(eh, f64_tolerance(dtype)) << where << " grad_h";
        EXPECT_TRUE(at::equal(h.grad(), d.grad())) << where << ": d sum / d h = d sum / d delta";
        EXPECT_LE(relative_error(h.grad(), he.grad()), composition_tolerance(dtype)) << where << " grad_h vs eager";
        if (used & 2) {
          EXPECT_LE(relative_error(w.grad(), w64.grad()), 2 * f64_tolerance(dtype)) << where << " grad_weight";
          EXPECT_LE(relative_error(w.grad(), we.grad()), composition_tolerance(dtype)) << where;
        } else {
          EXPECT_FALSE(w.grad().defined() && w.grad().ne(0).any().item<bool>()) << where << ": no path to the weight";
        }
        report.add(std::max(eh, ed), relative_error(he.grad(), h64.grad()));
      }
    }
    report.print("fused_add_rms_norm", dtype);
  }
}

// --- RoPE ------------------------------------------------------------------------------------

TEST(FusedTrainOps, RopeGradientOfTransposedProjectionsMatchesFloat64AndTheEagerComposition) {
  at::manual_seed(5);
  struct Case {
    int64_t B, T, heads, D, table_batch;
  };
  // q [B, H, T, D] and k [B, KV, T, D] as the training forward makes them: views of [B, T, heads * D].
  const std::vector<Case> cases = {{2, 7, 14, 64, 2}, {3, 5, 2, 64, 1}, {1, 9, 3, 10, 1}, {2, 1, 1, 2, 2}};
  for (const at::ScalarType dtype : kDtypes) {
    Report report;
    for (const Case& c : cases) {
      const std::string where = std::string(c10::toString(dtype)) + " B=" + std::to_string(c.B) + " T=" +
                                std::to_string(c.T) + " heads=" + std::to_string(c.heads) + " D=" + std::to_string(c.D);
      const at::Tensor p_val = random_nonzero({c.B, c.T, c.heads * c.D}, 2.0).to(dtype);
      // Tables whose halves differ (the backward must not assume sin[:D/2] == sin[D/2:]).
      const at::Tensor cos = random_nonzero({c.table_batch, 1, c.T, c.D}).to(dtype);
      const at::Tensor sin = random_nonzero({c.table_batch, 1, c.T, c.D}).to(dtype);
      const at::Tensor g = random_nonzero({c.B, c.heads, c.T, c.D}).to(dtype);
      auto heads_of = [&](const at::Tensor& p) { return p.view({c.B, c.T, c.heads, c.D}).transpose(1, 2); };

      at::Tensor p = leaf(p_val);
      const at::Tensor out = scorch::fused_rope(heads_of(p), cos, sin);
      EXPECT_TRUE(at::equal(out, hf_rope(heads_of(p_val), cos, sin))) << where << ": the forward changed";
      out.backward(g);
      at::Tensor p64 = leaf64(p_val);
      scorch::test::rope_f64(heads_of(p64), cos, sin).backward(g.to(at::kDouble));
      at::Tensor pe = leaf(p_val);
      hf_rope(heads_of(pe), cos, sin).backward(g);
      const double e = relative_error(p.grad(), p64.grad());
      EXPECT_LE(e, f64_tolerance(dtype)) << where;
      EXPECT_LE(relative_error(p.grad(), pe.grad()), composition_tolerance(dtype)) << where << " vs eager";
      report.add(e, relative_error(pe.grad(), p64.grad()));
    }
    report.print("fused_rope", dtype);
  }
}

// --- SiLU * up -------------------------------------------------------------------------------

TEST(FusedTrainOps, SiluMulForwardIsBitEqualToTheEagerPair) {
  at::manual_seed(6);
  c10::NoGradGuard no_grad;
  for (const at::ScalarType dtype : kDtypes) {
    for (const std::vector<int64_t>& shape :
         {std::vector<int64_t>{3, 5, 4864}, std::vector<int64_t>{7, 33}, std::vector<int64_t>{1, 1, 1},
          std::vector<int64_t>{2, 9, 1001}}) {
      const at::Tensor gate = random_nonzero(shape, 3.0).to(dtype), up = random_nonzero(shape).to(dtype);
      EXPECT_TRUE(at::equal(scorch::silu_mul(gate, up), at::silu(gate) * up)) << dtype << " " << c10::str(shape);
      // Strided views: the two halves of one projection.
      std::vector<int64_t> wide = shape;
      wide.back() *= 2;
      const at::Tensor gu = random_nonzero(wide, 3.0).to(dtype);
      const int64_t inter = shape.back();
      EXPECT_TRUE(at::equal(scorch::silu_mul(gu.narrow(-1, 0, inter), gu.narrow(-1, inter, inter)),
                            scorch::silu_and_mul(gu)))
          << dtype << " " << c10::str(shape) << " halves";
    }
  }
}

TEST(FusedTrainOps, SiluMulGradientsMatchFloat64AndTheEagerComposition) {
  at::manual_seed(7);
  for (const at::ScalarType dtype : kDtypes) {
    Report report;
    for (const std::vector<int64_t>& shape :
         {std::vector<int64_t>{3, 5, 4864}, std::vector<int64_t>{7, 33}, std::vector<int64_t>{2, 9, 1001}}) {
      const std::string where = std::string(c10::toString(dtype)) + " " + c10::str(shape);
      const at::Tensor g_val = random_nonzero(shape, 3.0).to(dtype), u_val = random_nonzero(shape).to(dtype);
      const at::Tensor dy = random_nonzero(shape).to(dtype);
      at::Tensor gate = leaf(g_val), up = leaf(u_val);
      scorch::silu_mul(gate, up).backward(dy);
      at::Tensor g64 = leaf64(g_val), u64 = leaf64(u_val);
      (g64 / (1.0 + at::exp(-g64)) * u64).backward(dy.to(at::kDouble));
      at::Tensor ge = leaf(g_val), ue = leaf(u_val);
      (at::silu(ge) * ue).backward(dy);
      const double eg = relative_error(gate.grad(), g64.grad()), eu = relative_error(up.grad(), u64.grad());
      EXPECT_LE(eg, f64_tolerance(dtype)) << where << " grad_gate";
      EXPECT_LE(eu, f64_tolerance(dtype)) << where << " grad_up";
      EXPECT_LE(relative_error(gate.grad(), ge.grad()), composition_tolerance(dtype)) << where << " vs eager";
      EXPECT_LE(relative_error(up.grad(), ue.grad()), composition_tolerance(dtype)) << where << " vs eager";
      report.add(std::max(eg, eu), std::max(relative_error(ge.grad(), g64.grad()), relative_error(ue.grad(), u64.grad())));

      // silu_and_mul on [gate, up] concatenated: the same gradients, side by side.
      at::Tensor gu = leaf(at::cat({g_val, u_val}, -1));
      scorch::silu_and_mul(gu).backward(dy);
      EXPECT_TRUE(at::equal(gu.grad(), at::cat({gate.grad(), up.grad()}, -1))) << where << " silu_and_mul";
    }
    report.print("silu_mul", dtype);
  }
}

// --- finite differences, determinism, errors ---------------------------------------------------

// d/dt L(x + t v) at t = 0 by central differences in fp32 (L = sum(out * probe) in float64) against
// sum(grad * v) from the backward.
double directional_mismatch(const std::function<at::Tensor(const at::Tensor&)>& f, const at::Tensor& x,
                            const at::Tensor& probe) {
  const at::Tensor v = random_nonzero(x.sizes());
  at::Tensor xg = leaf(x);
  (f(xg).to(at::kDouble) * probe).sum().backward();
  const double analytic = (xg.grad().to(at::kDouble) * v.to(at::kDouble)).sum().item<double>();
  c10::NoGradGuard no_grad;
  const double step = 1e-2;
  auto loss = [&](double t) { return (f(x + t * v).to(at::kDouble) * probe).sum().item<double>(); };
  const double numeric = (loss(step) - loss(-step)) / (2 * step);
  return std::abs(analytic - numeric) / std::max(std::abs(numeric), 1e-3);
}

TEST(FusedTrainOps, GradientsAgreeWithFiniteDifferencesInFp32) {
  at::manual_seed(8);
  const at::Tensor x = random_nonzero({3, 11}), w = (1 + 0.3 * random_nonzero({11})).to(at::kFloat);
  const at::Tensor probe = random_nonzero({3, 11}).to(at::kDouble);
  const double norm_x = directional_mismatch([&](const at::Tensor& t) { return scorch::fused_rms_norm(t, w, kEps); },
                                             x, probe);
  const double norm_w = directional_mismatch([&](const at::Tensor& t) { return scorch::fused_rms_norm(x, t, kEps); },
                                             w, probe);
  const at::Tensor up = random_nonzero({3, 11});
  const double silu_gate = directional_mismatch([&](const at::Tensor& t) { return scorch::silu_mul(t, up); }, x, probe);
  const double silu_up = directional_mismatch([&](const at::Tensor& t) { return scorch::silu_mul(x, t); }, up, probe);
  const at::Tensor q = random_nonzero({1, 2, 3, 6}), cos = random_nonzero({1, 1, 3, 6}), sin = random_nonzero({1, 1, 3, 6});
  const at::Tensor rope_probe = random_nonzero({1, 2, 3, 6}).to(at::kDouble);
  const double rope = directional_mismatch([&](const at::Tensor& t) { return scorch::fused_rope(t, cos, sin); }, q,
                                           rope_probe);
  std::printf("[ info ] fp32 finite differences (step 1e-2), relative mismatch: rms_norm x %.1e, weight %.1e; "
              "silu_mul gate %.1e, up %.1e; rope %.1e\n", norm_x, norm_w, silu_gate, silu_up, rope);
  for (const double m : {norm_x, norm_w, silu_gate, silu_up, rope}) EXPECT_LE(m, 2e-3);
}

// grad_weight sums over every row: per block of rows (a function of the shape), then the blocks in
// order, so the number of threads changes nothing.
TEST(FusedTrainOps, WeightGradientIsTheSameBitsWithAnyNumberOfThreads) {
  at::manual_seed(9);
  const int threads = at::get_num_threads();
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    const at::Tensor x = random_nonzero({4, 300, 896}).to(dtype), dy = random_nonzero({4, 300, 896}).to(dtype);
    const at::Tensor w_val = (1 + 0.3 * random_nonzero({896})).to(dtype);
    std::vector<at::Tensor> grads;
    for (const int n : {1, 2, 3}) {
      at::set_num_threads(n);
      at::Tensor w = leaf(w_val);
      scorch::fused_rms_norm(x, w, kEps).backward(dy);
      grads.push_back(w.grad());
    }
    at::set_num_threads(threads);
    EXPECT_TRUE(at::equal(grads[0], grads[1]) && at::equal(grads[0], grads[2])) << dtype;
  }
}

}  // namespace

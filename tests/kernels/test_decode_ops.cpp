// The decode-step ops on CPU (fused_rms_norm, fused_add_rms_norm, fused_rope, silu_and_mul) against
// the float64 formulas (accuracy) and against transformers' ATen compositions (rounding: bit-equal,
// up to one ulp on a small fraction of elements where the op sums in another order or ATen's exp
// differs), on decode and awkward shapes, strided views, broadcast tables; when they record a
// backward; errors (their backward: test_train_ops.cpp).
#include "kernels/ops.h"
#include "tests/kernels/decode_ops_reference.h"
#include "tests/kernels/kernel_test_util.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace {

using scorch::test::hf_rms_norm;
using scorch::test::hf_rope;
using scorch::test::hf_silu_and_mul;
using scorch::test::random_nonzero;
using scorch::test::relative_error;
using scorch::test::ulp_diff;
using scorch::test::UlpDiff;

constexpr double kEps = 1e-6;
const std::vector<at::ScalarType> kDtypes = {at::kFloat, at::kBFloat16, at::kHalf};

// Accuracy against float64: fp32 is a few roundings of 2^-24; bf16 / fp16 two roundings of their own.
double f64_tolerance(at::ScalarType dtype) {
  return dtype == at::kFloat ? 1e-6 : dtype == at::kBFloat16 ? 1.6e-2 : 2e-3;
}

at::Tensor rms_weight(int64_t n, at::ScalarType dtype) { return (1.0 + 0.5 * random_nonzero({n})).to(dtype); }

// Running worst case per dtype, printed at the end of a test.
struct Worst {
  double rel = 0.0, composition_rel = 0.0;  // the op's and the ATen composition's error vs float64
  int64_t differing = 0, numel = 0, max_ulps = 0;
  void add(double e, const UlpDiff& d, double composition_e = 0.0) {
    rel = std::max(rel, e);
    composition_rel = std::max(composition_rel, composition_e);
    differing += d.differing;
    numel += d.numel;
    max_ulps = std::max(max_ulps, d.max_ulps);
  }
  void print(const char* op, at::ScalarType dtype) const {
    std::printf("[ info ] %s %s: worst relative error vs float64 %.2e (the ATen composition's %.2e); vs the "
                "composition %ld of %ld elements differ (%.1e), by at most %ld ulp\n",
                op, c10::toString(dtype), rel, composition_rel, static_cast<long>(differing),
                static_cast<long>(numel), numel ? static_cast<double>(differing) / numel : 0.0,
                static_cast<long>(max_ulps));
  }
};

// The bound on differences from the composition where the op reduces in another order: the mean of
// squares may differ by an ulp of fp32. That moves dtype(h * r) of a bf16 / fp16 row by one ulp where
// its fp32 value lies that close to a rounding boundary (rare), and the weight multiply (|w| up to ~3
// here) can turn that ulp into two; in fp32 it moves many of the row's values by a few ulp.
void expect_close_to_composition(const UlpDiff& d, at::ScalarType dtype, const std::string& where) {
  if (dtype == at::kFloat) {
    EXPECT_LE(d.max_ulps, 4) << where << ": " << d.str();
  } else {
    EXPECT_LE(d.max_ulps, 2) << where << ": " << d.str();
    EXPECT_LE(d.fraction(), 1e-3) << where << ": " << d.str();
  }
}

struct RowsShape {
  std::vector<int64_t> sizes;  // [..., N]
};
// Decode shapes (batch 1..256 rows of Qwen2.5-0.5B's 896 and 4096), N = 1, odd N, a 3-d input.
const std::vector<RowsShape> kNormShapes = {{{1, 1}},    {{1, 7}},    {{1, 896}},    {{7, 896}},   {{64, 896}},
                                            {{256, 896}}, {{3, 4096}}, {{2, 5, 256}}, {{1, 4097}}, {{33, 129}}};

std::string shape_str(at::IntArrayRef s, at::ScalarType dtype) {
  return std::string(c10::str(s)) + " " + c10::toString(dtype);
}

// y = an RMS norm of `input`: against the float64 norm (relative error) and transformers'
// composition `composed` (ulps), folded into `worst`.
void expect_rms_norm_result(const at::Tensor& y, const at::Tensor& input, const at::Tensor& w, const at::Tensor& composed,
                            at::ScalarType dtype, const std::string& where, Worst& worst) {
  const at::Tensor f64 = scorch::test::rms_norm_f64(input, w, kEps);
  const double e = relative_error(y, f64);
  EXPECT_LE(e, f64_tolerance(dtype)) << where;
  const UlpDiff d = ulp_diff(y, composed);
  expect_close_to_composition(d, dtype, where);
  worst.add(e, d, relative_error(composed, f64));
}

TEST(FusedRmsNorm, MatchesFloat64AndTransformersCompositionOnDecodeShapes) {
  at::manual_seed(21);
  for (const at::ScalarType dtype : kDtypes) {
    Worst worst;
    for (const RowsShape& s : kNormShapes) {
      const at::Tensor x = random_nonzero(s.sizes, 2.0).to(dtype);
      const at::Tensor w = rms_weight(s.sizes.back(), dtype);
      const at::Tensor y = scorch::fused_rms_norm(x, w, kEps);
      const std::string where = shape_str(x.sizes(), dtype);
      ASSERT_EQ(y.scalar_type(), dtype) << where;
      ASSERT_EQ(y.sizes(), x.sizes()) << where;
      ASSERT_TRUE(y.is_contiguous()) << where;
      expect_rms_norm_result(y, x, w, hf_rms_norm(x, w, kEps), dtype, where, worst);
    }
    worst.print("fused_rms_norm", dtype);
  }
}

TEST(FusedRmsNorm, StridedAndNonCollapsibleInputsGiveTheContiguousResult) {
  at::manual_seed(22);
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    const at::Tensor w = rms_weight(96, dtype);
    const at::Tensor wide = random_nonzero({9, 130}).to(dtype);
    const at::Tensor rows = wide.slice(1, 17, 17 + 96);  // row stride 130, a view
    const at::Tensor transposed = random_nonzero({96, 9}).to(dtype).t();  // last-dim stride 9: copied
    const at::Tensor nested = random_nonzero({4, 6, 96}).to(dtype).transpose(0, 1);  // [6, 4, 96], not collapsible
    for (const at::Tensor& x : {rows, transposed, nested}) {
      ASSERT_FALSE(x.is_contiguous());
      const at::Tensor y = scorch::fused_rms_norm(x, w, 1e-5);
      EXPECT_TRUE(y.is_contiguous());
      EXPECT_TRUE(at::equal(y, scorch::fused_rms_norm(x.contiguous(), w, 1e-5))) << shape_str(x.sizes(), dtype);
    }
    // A strided weight (a slice of a wider buffer) is read correctly too.
    const at::Tensor w_wide = rms_weight(192, dtype), w_strided = w_wide.slice(0, 0, 192, 2);
    EXPECT_TRUE(at::equal(scorch::fused_rms_norm(rows, w_strided, 1e-5),
                          scorch::fused_rms_norm(rows, w_strided.contiguous(), 1e-5)));
  }
}

TEST(FusedAddRmsNorm, SumIsTheDtypeAddAndYIsTheRmsNormOfTheSum) {
  at::manual_seed(23);
  for (const at::ScalarType dtype : kDtypes) {
    Worst worst;
    for (const RowsShape& s : kNormShapes) {
      const at::Tensor h = random_nonzero(s.sizes, 3.0).to(dtype), delta = random_nonzero(s.sizes).to(dtype);
      const at::Tensor w = rms_weight(s.sizes.back(), dtype);
      auto [sum, y] = scorch::fused_add_rms_norm(h, delta, w, kEps);
      const std::string where = shape_str(h.sizes(), dtype);
      ASSERT_TRUE(sum.is_contiguous() && y.is_contiguous()) << where;
      EXPECT_TRUE(at::equal(sum, h + delta)) << where << ": the residual add is PyTorch's add in the dtype";
      EXPECT_TRUE(at::equal(y, scorch::fused_rms_norm(sum, w, kEps))) << where;
      expect_rms_norm_result(y, sum, w, hf_rms_norm(h + delta, w, kEps), dtype, where, worst);
    }
    worst.print("fused_add_rms_norm", dtype);
  }
  // Strided h and delta.
  const at::Tensor wide = random_nonzero({5, 200}).to(at::kBFloat16);
  const at::Tensor h = wide.slice(1, 0, 64), delta = wide.slice(1, 100, 164);
  const at::Tensor w = rms_weight(64, at::kBFloat16);
  auto [sum, y] = scorch::fused_add_rms_norm(h, delta, w, kEps);
  EXPECT_TRUE(at::equal(sum, h + delta));
  EXPECT_TRUE(at::equal(y, scorch::fused_rms_norm(h + delta, w, kEps)));
}

// [B, M, T, D] views as the model makes them: q of a fused qkv projection [B, T, (M + 2K) * D],
// viewed as heads, transposed to [B, M + 2K, T, D] and narrowed to the M query heads.
at::Tensor projected_heads(int64_t b, int64_t m, int64_t t, int64_t d, at::ScalarType dtype) {
  const int64_t kv = 2;
  const at::Tensor proj = random_nonzero({b, t, (m + 2 * kv) * d}, 2.0).to(dtype);
  return proj.view({b, t, m + 2 * kv, d}).transpose(1, 2).narrow(1, 0, m);
}

// cos / sin of random positions, as LlamaRotaryEmbedding computes them: [B, T, D] unsqueezed to
// [B, 1, T, D] (the angle of column i + D/2 is the one of column i).
std::pair<at::Tensor, at::Tensor> rope_tables(int64_t b, int64_t t, int64_t d, at::ScalarType dtype) {
  const at::Tensor inv_freq = 1.0 / at::pow(10000.0, at::arange(0, d, 2, at::kFloat) / d);
  const at::Tensor positions = at::randint(0, 4096, {b, t}, at::kFloat);
  const at::Tensor freqs = positions.unsqueeze(-1) * inv_freq;  // [B, T, D/2]
  const at::Tensor emb = at::cat({freqs, freqs}, -1);
  return {emb.cos().to(dtype).unsqueeze(1), emb.sin().to(dtype).unsqueeze(1)};
}

struct RopeShape {
  int64_t b, m, t, d;
};

TEST(FusedRope, EqualsTransformersCompositionBitForBitAndMatchesFloat64) {
  at::manual_seed(24);
  // Decode (T = 1) at batch 1 / 64, prefill, D = 2, and Qwen's D = 64 / 128.
  const std::vector<RopeShape> shapes = {{1, 14, 1, 64}, {64, 16, 1, 64}, {2, 3, 17, 128}, {1, 1, 5, 2}, {3, 2, 9, 64}};
  for (const at::ScalarType dtype : kDtypes) {
    double worst = 0.0;
    for (const RopeShape& s : shapes) {
      const at::Tensor x = projected_heads(s.b, s.m, s.t, s.d, dtype);
      ASSERT_EQ(x.is_contiguous(), s.b == 1 && s.t == 1) << "a strided view (trivially contiguous at B = T = 1)";
      auto [cos, sin] = rope_tables(s.b, s.t, s.d, dtype);
      const at::Tensor out = scorch::fused_rope(x, cos, sin);
      const std::string where = shape_str(x.sizes(), dtype);
      ASSERT_TRUE(out.is_contiguous()) << where;
      ASSERT_EQ(out.sizes(), x.sizes()) << where;
      const UlpDiff d = ulp_diff(out, hf_rope(x, cos, sin));
      EXPECT_EQ(d.differing, 0) << where << ": " << d.str();
      const double e = relative_error(out, scorch::test::rope_f64(x, cos, sin));
      EXPECT_LE(e, f64_tolerance(dtype)) << where;
      worst = std::max(worst, e);
      // Random tables (column i + D/2 unrelated to column i) and random x: still bit-equal.
      const at::Tensor rc = random_nonzero({s.b, 1, s.t, s.d}).to(dtype), rs = random_nonzero({s.b, 1, s.t, s.d}).to(dtype);
      EXPECT_TRUE(at::equal(scorch::fused_rope(x, rc, rs), hf_rope(x, rc, rs))) << where << " (random tables)";
    }
    std::printf("[ info ] fused_rope %s: bit-equal to the composition; worst relative error vs float64 %.2e\n",
                c10::toString(dtype), worst);
  }
}

TEST(FusedRope, BroadcastTablesAreRead) {
  at::manual_seed(25);
  const at::ScalarType dtype = at::kBFloat16;
  const at::Tensor x = projected_heads(4, 3, 6, 64, dtype);
  auto [cos1, sin1] = rope_tables(1, 6, 64, dtype);  // [1, 1, T, D]: one set of positions for the batch
  const at::Tensor expected = hf_rope(x, cos1, sin1);
  EXPECT_TRUE(at::equal(scorch::fused_rope(x, cos1, sin1), expected)) << "size-1 batch dimension";
  EXPECT_TRUE(at::equal(scorch::fused_rope(x, cos1.expand({4, 1, 6, 64}), sin1.expand({4, 1, 6, 64})), expected))
      << "stride-0 batch dimension (expand)";
  // One position for every token ([B, 1, 1, D]) and a table that is itself a strided view.
  const at::Tensor cos_t = cos1.narrow(2, 2, 1), sin_t = sin1.narrow(2, 2, 1);
  EXPECT_TRUE(at::equal(scorch::fused_rope(x, cos_t, sin_t), hf_rope(x, cos_t, sin_t))) << "size-1 T";
  const at::Tensor wide_cos = random_nonzero({4, 1, 6, 100}).to(dtype).narrow(3, 10, 64);
  const at::Tensor wide_sin = random_nonzero({4, 1, 6, 100}).to(dtype).narrow(3, 30, 64);
  EXPECT_TRUE(at::equal(scorch::fused_rope(x, wide_cos, wide_sin), hf_rope(x, wide_cos, wide_sin))) << "strided tables";
}

TEST(SiluAndMul, MatchesTransformersCompositionAndFloat64) {
  at::manual_seed(26);
  // Qwen2.5-0.5B's I = 4864 at batch 1 / 8 / 64, I = 1, odd I, a 3-d input, a strided one.
  const std::vector<std::vector<int64_t>> shapes = {{1, 2 * 4864}, {8, 2 * 4864}, {64, 2 * 4864}, {1, 2}, {3, 5, 2 * 7}, {9, 2 * 333}};
  for (const at::ScalarType dtype : kDtypes) {
    Worst worst;
    auto check = [&](const at::Tensor& gu) {
      const at::Tensor out = scorch::silu_and_mul(gu);
      const std::string where = shape_str(gu.sizes(), dtype);
      ASSERT_TRUE(out.is_contiguous()) << where;
      ASSERT_EQ(out.size(-1), gu.size(-1) / 2) << where;
      const at::Tensor f64 = scorch::test::silu_and_mul_f64(gu), composed = hf_silu_and_mul(gu);
      const double e = relative_error(out, f64);
      EXPECT_LE(e, f64_tolerance(dtype)) << where;
      const UlpDiff d = ulp_diff(out, composed);
      // Both sides compute g / (1 + exp(-g)) in fp32 and round alike; the only difference is which exp
      // (Sleef or std::exp) each element gets, which can move an fp32 result by an ulp and, rarely, a
      // bf16 / fp16 one.
      EXPECT_LE(d.max_ulps, 1) << where << ": " << d.str();
      EXPECT_LE(d.fraction(), dtype == at::kFloat ? 2e-2 : 1e-3) << where << ": " << d.str();
      worst.add(e, d, relative_error(composed, f64));
    };
    for (const auto& sizes : shapes) check(random_nonzero(sizes, 3.0).to(dtype));
    const at::Tensor wide = random_nonzero({6, 3000}, 3.0).to(dtype);
    check(wide.slice(1, 5, 5 + 2 * 1000));  // row stride 3000
    worst.print("silu_and_mul", dtype);
  }
}

// --- inference only, errors --------------------------------------------------------------------

void expect_error_containing(const std::function<void()>& fn, const std::string& needle, const std::string& what) {
  try {
    fn();
    ADD_FAILURE() << what << ": no error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what_without_backtrace()).find(needle), std::string::npos)
        << what << ": the message should contain '" << needle << "': " << e.what_without_backtrace();
  }
}

// The layer ops record a backward when an input requires grad (test_train_ops.cpp checks it); the
// RoPE tables are constants: tables that require grad are refused. Without grad mode nothing is recorded.
TEST(DecodeOps, RecordABackwardOnlyWhereAGradientIsWanted) {
  const at::Tensor x = at::randn({2, 8}), w = at::ones({8}), gu = at::randn({2, 8});
  const at::Tensor q = at::randn({1, 2, 3, 8}), cos = at::randn({1, 1, 3, 8}), sin = at::randn({1, 1, 3, 8});
  const at::Tensor xg = x.clone().requires_grad_(true), wg = w.clone().requires_grad_(true);
  ASSERT_TRUE(c10::GradMode::is_enabled());
  EXPECT_TRUE(scorch::fused_rms_norm(xg, w, kEps).requires_grad());
  EXPECT_TRUE(scorch::fused_rms_norm(x, wg, kEps).requires_grad());
  EXPECT_TRUE(std::get<1>(scorch::fused_add_rms_norm(x, xg, w, kEps)).requires_grad());
  EXPECT_TRUE(scorch::fused_rope(q.clone().requires_grad_(true), cos, sin).requires_grad());
  EXPECT_TRUE(scorch::silu_and_mul(gu.clone().requires_grad_(true)).requires_grad());
  EXPECT_TRUE(scorch::silu_mul(gu, gu.clone().requires_grad_(true)).requires_grad());
  expect_error_containing([&] { scorch::fused_rope(q, cos, sin.clone().requires_grad_(true)); },
                          "cos / sin require grad", "sin");
  // Grad mode on but nothing requires grad: fine, and nothing is recorded.
  EXPECT_FALSE(scorch::fused_rms_norm(x, w, kEps).requires_grad());
  {
    // The generation path: parameters require grad, grad mode is off.
    at::NoGradGuard no_grad;
    EXPECT_TRUE(at::equal(scorch::fused_rms_norm(xg, wg, kEps), scorch::fused_rms_norm(x, w, kEps)));
    EXPECT_FALSE(std::get<1>(scorch::fused_add_rms_norm(xg, x, wg, kEps)).requires_grad());
    EXPECT_FALSE(scorch::silu_and_mul(gu.clone().requires_grad_(true)).requires_grad());
    EXPECT_NO_THROW(scorch::fused_rope(q, cos, sin.clone().requires_grad_(true)));
  }
  {
    at::InferenceMode inference;
    EXPECT_NO_THROW(scorch::fused_rope(q, cos, sin));
  }
}

TEST(DecodeOps, RejectBadShapesDtypesAndArguments) {
  const at::Tensor x = at::randn({3, 8}), w = at::ones({8});
  expect_error_containing([&] { scorch::fused_rms_norm(x, at::ones({7}), kEps); }, "weight must be [N] = [8]", "weight");
  expect_error_containing([&] { scorch::fused_rms_norm(x, at::ones({1, 8}), kEps); }, "weight must be", "2-d weight");
  expect_error_containing([&] { scorch::fused_rms_norm(x, w.to(at::kBFloat16), kEps); }, "weight is BFloat16",
                          "mixed dtypes");
  expect_error_containing([&] { scorch::fused_rms_norm(x.to(at::kDouble), w.to(at::kDouble), kEps); },
                          "bfloat16, float16 or float32", "float64");
  expect_error_containing([&] { scorch::fused_rms_norm(at::ones({3, 8}, at::kInt), w.to(at::kInt), kEps); },
                          "bfloat16, float16 or float32", "int");
  expect_error_containing([&] { scorch::fused_rms_norm(at::randn({}), at::ones({1}), kEps); }, "0-dim", "scalar");
  expect_error_containing([&] { scorch::fused_rms_norm(at::randn({3, 0}), at::ones({0}), kEps); }, "empty", "N = 0");
  expect_error_containing([&] { scorch::fused_rms_norm(x, w, -1e-6); }, "eps", "negative eps");
  expect_error_containing([&] { scorch::fused_add_rms_norm(x, at::randn({3, 1}), w, kEps); }, "delta must have h's shape",
                          "broadcast delta");
  expect_error_containing([&] { scorch::fused_add_rms_norm(x, x.to(at::kHalf), w, kEps); }, "delta is Half", "delta dtype");

  const at::Tensor q = at::randn({2, 3, 4, 8}), cos = at::randn({2, 1, 4, 8}), sin = at::randn({2, 1, 4, 8});
  expect_error_containing([&] { scorch::fused_rope(q.flatten(0, 1), cos, sin); }, "x must be [B, M, T, D]", "3-d x");
  expect_error_containing([&] { scorch::fused_rope(at::randn({2, 3, 4, 7}), cos.narrow(3, 0, 7), sin.narrow(3, 0, 7)); },
                          "must be even", "odd D");
  expect_error_containing([&] { scorch::fused_rope(at::randn({2, 3, 8, 4}).transpose(2, 3), cos, sin); },
                          "last dimension of x must be contiguous", "transposed x");
  expect_error_containing([&] { scorch::fused_rope(q, at::randn({2, 3, 4, 8}), sin); }, "cos must be [B, 1, T, D]",
                          "cos with heads");
  expect_error_containing([&] { scorch::fused_rope(q, cos, at::randn({3, 1, 4, 8})); }, "sin must be [B, 1, T, D]",
                          "sin batch");
  expect_error_containing([&] { scorch::fused_rope(q, cos, at::randn({2, 1, 8, 4}).transpose(2, 3)); },
                          "last dimension of sin must be contiguous", "transposed sin");
  expect_error_containing([&] { scorch::fused_rope(q, cos.to(at::kBFloat16), sin); }, "cos is BFloat16", "cos dtype");

  expect_error_containing([&] { scorch::silu_and_mul(at::randn({3, 7})); }, "even", "odd 2I");
  expect_error_containing([&] { scorch::silu_and_mul(at::randn({3, 0})); }, "even and >= 2", "empty");
  expect_error_containing([&] { scorch::silu_and_mul(at::randn({})); }, "0-dim", "scalar");
  expect_error_containing([&] { scorch::silu_and_mul(at::randn({2, 4}, at::kDouble)); }, "bfloat16, float16 or float32",
                          "float64");
}

TEST(DecodeOps, EmptyBatchesGiveEmptyOutputs) {
  EXPECT_EQ(scorch::fused_rms_norm(at::randn({0, 8}), at::ones({8}), kEps).sizes(), at::IntArrayRef({0, 8}));
  auto [sum, y] = scorch::fused_add_rms_norm(at::randn({2, 0, 8}), at::randn({2, 0, 8}), at::ones({8}), kEps);
  EXPECT_EQ(sum.numel(), 0);
  EXPECT_EQ(y.sizes(), at::IntArrayRef({2, 0, 8}));
  EXPECT_EQ(scorch::fused_rope(at::randn({0, 2, 3, 4}), at::randn({0, 1, 3, 4}), at::randn({0, 1, 3, 4})).numel(), 0);
  EXPECT_EQ(scorch::silu_and_mul(at::randn({0, 6})).sizes(), at::IntArrayRef({0, 3}));
}

}  // namespace

// rope_kv_write against its definition: fused_rope of the q and k heads (itself bit-equal to the
// transformers composition) and two index_copy_ calls at the slot, bit for bit, for a strided qkv
// (the transposed view of a projection output, as the model passes it) and broadcast tables; the
// other slots of the caches are untouched. Bad arguments and a gradient are errors.
TEST(RopeKvWrite, EqualsFusedRopeAndIndexCopyAtTheSlot) {
  at::manual_seed(31);
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    const int64_t B = 3, H = 4, KV = 2, D = 16, S = 10;
    // [B, 1, H + 2KV, D] projection output viewed as [B, H + 2KV, 1, D]: strided dims 0 and 1.
    const at::Tensor proj = random_nonzero({B, 1, (H + 2 * KV) * D}).to(dtype);
    const at::Tensor qkv = proj.view({B, 1, H + 2 * KV, D}).transpose(1, 2);
    for (bool broadcast : {false, true}) {
      const int64_t tb = broadcast ? 1 : B;
      const at::Tensor cos = random_nonzero({tb, 1, 1, D}).to(dtype), sin = random_nonzero({tb, 1, 1, D}).to(dtype);
      at::Tensor k_cache = random_nonzero({B, KV, S, D}).to(dtype), v_cache = random_nonzero({B, KV, S, D}).to(dtype);
      const at::Tensor k_before = k_cache.clone(), v_before = v_cache.clone();
      const at::Tensor slot = at::full({1}, 6, at::kLong);
      c10::NoGradGuard no_grad;
      const at::Tensor q = scorch::rope_kv_write(qkv, cos, sin, k_cache, v_cache, slot, H);
      const at::Tensor qk = scorch::fused_rope(qkv.narrow(1, 0, H + KV), cos, sin);
      const std::string where = std::string(c10::toString(dtype)) + (broadcast ? " broadcast tables" : "");
      ASSERT_EQ(q.sizes(), (std::vector<int64_t>{B, H, 1, D})) << where;
      EXPECT_TRUE(at::equal(q, qk.narrow(1, 0, H))) << where;
      at::Tensor k_ref = k_before.clone(), v_ref = v_before.clone();
      k_ref.index_copy_(2, slot, qk.narrow(1, H, KV));
      v_ref.index_copy_(2, slot, qkv.narrow(1, H + KV, KV));
      EXPECT_TRUE(at::equal(k_cache, k_ref)) << where;
      EXPECT_TRUE(at::equal(v_cache, v_ref)) << where;
    }
  }
  const at::Tensor qkv = at::randn({2, 8, 1, 4}), cos = at::randn({2, 1, 1, 4}), sin = at::randn({2, 1, 1, 4});
  at::Tensor k = at::zeros({2, 2, 5, 4}), v = at::zeros({2, 2, 5, 4});
  const at::Tensor slot = at::full({1}, 1, at::kLong);
  expect_error_containing([&] { scorch::rope_kv_write(qkv, cos, sin, k, v, at::full({1}, 5, at::kLong), 4); },
                          "outside the cache", "slot past the end");
  expect_error_containing([&] { scorch::rope_kv_write(qkv, cos, sin, k, v, slot, 3); }, "do not split", "q_heads");
  expect_error_containing([&] { scorch::rope_kv_write(at::randn({2, 8, 2, 4}), cos, sin, k, v, slot, 4); },
                          "one decode token", "T = 2");
  at::Tensor k_wrong = at::zeros({2, 3, 5, 4});
  expect_error_containing([&] { scorch::rope_kv_write(qkv, cos, sin, k_wrong, v, slot, 4); }, "k_cache must be",
                          "cache heads");
  expect_error_containing([&] { scorch::rope_kv_write(qkv, cos, sin, k, v, slot.to(at::kInt), 4); },
                          "slot must be one int64", "slot dtype");
  expect_error_containing([&] { scorch::rope_kv_write(qkv.clone().requires_grad_(true), cos, sin, k, v, slot, 4); },
                          "rope_kv_write is inference-only", "gradient");
}

// decode_attention on the CPU: its definition (rope_kv_write, then SDPA with grouped-query heads, the
// output transposed to [B, 1, H * D]) bit for bit, the caches written exactly as rope_kv_write writes
// them, and the attention formula in float64 on the roped q and the written caches: GQA groups of 1, 2
// and 7 (the Qwen2.5-0.5B shape), masked slots (left padding, slots not yet used), a mask broadcast
// over the batch, no mask. Bad arguments and a gradient are errors.
TEST(DecodeAttention, CpuEqualsRopeKvWriteThenSdpaAndTheFloat64Formula) {
  at::manual_seed(43);
  struct Shape {
    int64_t B, H, KV, D, S, slot;
  };
  for (const Shape sh : {Shape{3, 4, 4, 16, 10, 6}, Shape{2, 4, 2, 8, 5, 0}, Shape{2, 14, 2, 64, 40, 39}}) {
    for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
      for (int mask_kind = 0; mask_kind < 3; ++mask_kind) {  // per row, broadcast, none
        c10::NoGradGuard no_grad;
        const int64_t B = sh.B, H = sh.H, KV = sh.KV, D = sh.D, S = sh.S;
        const at::Tensor proj = random_nonzero({B, 1, (H + 2 * KV) * D}).to(dtype);
        const at::Tensor qkv = proj.view({B, 1, H + 2 * KV, D}).transpose(1, 2);
        const at::Tensor cos = random_nonzero({B, 1, 1, D}).to(dtype), sin = random_nonzero({B, 1, 1, D}).to(dtype);
        const at::Tensor k0 = random_nonzero({B, KV, S, D}).to(dtype), v0 = random_nonzero({B, KV, S, D}).to(dtype);
        const at::Tensor slot = at::full({1}, sh.slot, at::kLong);
        // Row b sees slots [b, slot] (b left-padding slots masked, none past the new one).
        at::Tensor valid = at::zeros({mask_kind == 1 ? 1 : B, 1, 1, S}, at::kBool);
        for (int64_t b = 0; b < valid.size(0); ++b) {
          const int64_t first = std::min(b, sh.slot);
          valid[b].narrow(-1, first, sh.slot - first + 1).fill_(true);
        }
        const at::Tensor mask = mask_kind == 2 ? at::Tensor()
                                               : at::zeros(valid.sizes(), dtype).masked_fill_(valid.logical_not(), -INFINITY);
        const std::optional<at::Tensor> mask_opt = mask.defined() ? std::optional<at::Tensor>(mask) : std::nullopt;
        const double scale = 1.0 / std::sqrt(static_cast<double>(D));
        const std::string where = std::string(c10::toString(dtype)) + " B=" + std::to_string(B) + " H=" +
                                  std::to_string(H) + " KV=" + std::to_string(KV) + " mask " + std::to_string(mask_kind);

        at::Tensor k = k0.clone(), v = v0.clone();
        const at::Tensor out = scorch::decode_attention(qkv, cos, sin, k, v, slot, mask_opt, H, scale);
        at::Tensor k_ref = k0.clone(), v_ref = v0.clone();
        const at::Tensor q = scorch::rope_kv_write(qkv, cos, sin, k_ref, v_ref, slot, H);
        ASSERT_EQ(out.sizes(), (std::vector<int64_t>{B, 1, H * D})) << where;
        EXPECT_TRUE(at::equal(k, k_ref)) << where;
        EXPECT_TRUE(at::equal(v, v_ref)) << where;
        const at::Tensor sdpa = at::scaled_dot_product_attention(q, k_ref, v_ref, mask_opt, 0.0, false, scale, KV != H)
                                    .transpose(1, 2)
                                    .reshape({B, 1, H * D});
        EXPECT_TRUE(at::equal(out, sdpa)) << where;
        const double e = relative_error(out, scorch::test::decode_attention_f64(q, k_ref, v_ref, mask, scale));
        EXPECT_LE(e, dtype == at::kFloat ? 1e-5 : 1.6e-2) << where;
      }
    }
  }
  const at::Tensor qkv = at::randn({2, 8, 1, 4}), cos = at::randn({2, 1, 1, 4}), sin = at::randn({2, 1, 1, 4});
  at::Tensor k = at::zeros({2, 2, 5, 4}), v = at::zeros({2, 2, 5, 4});
  const at::Tensor slot = at::full({1}, 1, at::kLong);
  const double scale = 0.5;
  expect_error_containing([&] { scorch::decode_attention(qkv, cos, sin, k, v, slot, std::nullopt, 3, scale); },
                          "do not split", "q_heads");
  // 6 query heads + 2 x 1 KV heads is fine; 5 + 2 x ... cannot be grouped: 7 heads = 3 + 2 x 2, 3 % 2 != 0.
  at::Tensor k2 = at::zeros({2, 2, 5, 4}), v2 = at::zeros({2, 2, 5, 4});
  expect_error_containing(
      [&] { scorch::decode_attention(at::randn({2, 7, 1, 4}), cos, sin, k2, v2, slot, std::nullopt, 3, scale); },
      "not a multiple of the 2 KV heads", "ungroupable heads");
  at::Tensor k17 = at::zeros({2, 1, 5, 4}), v17 = at::zeros({2, 1, 5, 4});
  expect_error_containing(
      [&] { scorch::decode_attention(at::randn({2, 19, 1, 4}), cos, sin, k17, v17, slot, std::nullopt, 17, scale); },
      "at most 16 are supported", "17 heads per KV head");
  expect_error_containing(
      [&] { scorch::decode_attention(qkv, cos, sin, k, v, slot, at::zeros({2, 1, 1, 4}), 4, scale); },
      "mask must be additive [B, 1, 1, slots]", "mask over 4 of 5 slots");
  expect_error_containing(
      [&] { scorch::decode_attention(qkv, cos, sin, k, v, slot, at::zeros({2, 1, 1, 5}, at::kDouble), 4, scale); },
      "mask is Double but qkv is Float", "mask dtype");
  expect_error_containing([&] { scorch::decode_attention(qkv, cos, sin, k, v, slot, std::nullopt, 4, 0.0); },
                          "scale must be positive", "scale 0");
  ASSERT_TRUE(c10::GradMode::is_enabled());
  expect_error_containing(
      [&] { scorch::decode_attention(qkv.clone().requires_grad_(true), cos, sin, k, v, slot, std::nullopt, 4, scale); },
      "decode_attention is inference-only", "gradient");
}

// CUDA kernels against the CPU reference (label gpu; every test skips without a CUDA device):
// values and gradients on awkward shapes and alignments, every output element written (outputs are
// poisoned with NaN first), group_advantages on the device, and the memory promise of the fused
// forward + backward (peak extra memory <= the logits' size, where the eager formula needs ~4x).
// The decode-step ops: CUDA vs the CPU op, the float64 formula and ATen's CUDA composition at decode
// and prefill shapes (poisoned outputs), and capture + replay in a CUDA graph.
#include "kernels/ops.h"
#include "tests/kernels/decode_ops_reference.h"
#include "tests/kernels/kernel_test_util.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>

#ifdef SCORCH_WITH_CUDA
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace {

using scorch::test::random_targets;
using scorch::test::random_nonzero;
using scorch::test::relative_error;

#define SKIP_WITHOUT_CUDA()                                                         \
  do {                                                                              \
    if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";             \
  } while (0)

// Fills then frees blocks of the sizes the op will allocate, so that the caching allocator hands
// the op memory full of NaN: an element the kernel forgets to write stays NaN.
void poison_cuda_memory(int64_t n, int64_t v, at::ScalarType dtype) {
  const auto cuda = at::TensorOptions().device(at::kCUDA);
  std::vector<at::Tensor> blocks;
  for (int i = 0; i < 4; ++i) blocks.push_back(at::full({n}, NAN, cuda.dtype(at::kFloat)));
  blocks.push_back(at::full({n, v}, NAN, cuda.dtype(dtype)));
}

double tolerance(at::ScalarType dtype) { return dtype == at::kFloat ? 1e-5 : 1e-2; }

struct Case {
  int64_t n, v;
  int64_t offset;  // > 0: rows start `offset` elements into a wider buffer (unaligned, strided rows)
};

TEST(TokenLogprobsCuda, MatchesCpuReferenceAndWritesEveryElement) {
  SKIP_WITHOUT_CUDA();
  at::manual_seed(11);
  // Warp-per-row up to V = 4096, block-per-row above; odd V and offsets exercise the scalar head/tail.
  const std::vector<Case> cases = {{1, 1, 0},    {7, 1, 0},     {5, 7, 0},      {33, 1000, 0}, {9, 4096, 0},
                                   {9, 4097, 1}, {64, 32000, 0}, {3, 32000, 3}, {4, 151936, 0}, {1, 151936, 5},
                                   {2, 256000, 0}, {1000, 129, 1}};
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    double worst_logp = 0, worst_entropy = 0, worst_grad = 0;
    for (const Case& c : cases)
      for (const double t : {0.7, 1.3}) {
        const at::Tensor wide = (at::randn({c.n, c.v + c.offset}) * 3).to(dtype);
        const at::Tensor cpu_logits = wide.slice(1, c.offset, c.offset + c.v);
        const at::Tensor targets = random_targets(c.n, c.v);
        const at::Tensor w_logp = at::randn({c.n}), w_entropy = at::randn({c.n});

        at::Tensor leaf_cpu = cpu_logits.clone().requires_grad_(true);
        auto [logp_cpu, entropy_cpu] = scorch::token_logprobs(leaf_cpu, targets, t, true);
        ((logp_cpu * w_logp).sum() + (entropy_cpu * w_entropy).sum()).backward();

        const at::Tensor wide_cuda = wide.to(at::kCUDA);
        at::Tensor leaf_cuda = wide_cuda.slice(1, c.offset, c.offset + c.v).detach().requires_grad_(true);
        poison_cuda_memory(c.n, c.v, dtype);
        auto [logp, entropy] = scorch::token_logprobs(leaf_cuda, targets.to(at::kCUDA), t, true);
        ((logp * w_logp.to(at::kCUDA)).sum() + (entropy * w_entropy.to(at::kCUDA)).sum()).backward();

        const std::string where = "N=" + std::to_string(c.n) + " V=" + std::to_string(c.v) +
                                  " offset=" + std::to_string(c.offset) + " T=" + std::to_string(t) + " " +
                                  c10::toString(dtype);
        ASSERT_TRUE(at::isfinite(logp).all().item<bool>()) << where;
        ASSERT_TRUE(at::isfinite(entropy).all().item<bool>()) << where;
        ASSERT_TRUE(at::isfinite(leaf_cuda.grad()).all().item<bool>()) << where;
        const double e_logp = relative_error(logp.cpu(), logp_cpu);
        const double e_entropy = relative_error(entropy.cpu(), entropy_cpu);
        const double e_grad = relative_error(leaf_cuda.grad().cpu(), leaf_cpu.grad());
        EXPECT_LE(e_logp, tolerance(dtype)) << where;
        EXPECT_LE(e_entropy, tolerance(dtype)) << where;
        EXPECT_LE(e_grad, dtype == at::kFloat ? 1e-5 : 1e-2) << where;
        worst_logp = std::max(worst_logp, e_logp);
        worst_entropy = std::max(worst_entropy, e_entropy);
        worst_grad = std::max(worst_grad, e_grad);
      }
    std::printf("[ info ] CUDA vs CPU %s: worst relative error logp %.2e entropy %.2e grad %.2e\n",
                c10::toString(dtype), worst_logp, worst_entropy, worst_grad);
  }
}

TEST(TokenLogprobsCuda, IgnoredRowsAndSingleOutputGradientsMatchCpu) {
  SKIP_WITHOUT_CUDA();
  at::manual_seed(12);
  const at::Tensor base = at::randn({40, 5000}).to(at::kBFloat16);
  const at::Tensor targets = random_targets(40, 5000);
  for (const bool use_entropy_only : {false, true}) {
    at::Tensor a = base.clone().requires_grad_(true), b = base.to(at::kCUDA).requires_grad_(true);
    auto [lp_a, h_a] = scorch::token_logprobs(a, targets, 1.0, true);
    auto [lp_b, h_b] = scorch::token_logprobs(b, targets.to(at::kCUDA), 1.0, true);
    (use_entropy_only ? h_a.sum() : lp_a.sum()).backward();
    (use_entropy_only ? h_b.sum() : lp_b.sum()).backward();
    EXPECT_LE(relative_error(b.grad().cpu(), a.grad()), 1e-2) << "entropy only: " << use_entropy_only;
    EXPECT_TRUE(at::equal(lp_b.cpu().masked_select(targets < 0), at::zeros({(targets < 0).sum().item<int64_t>()})));
  }
}

TEST(TokenLogprobsCuda, OutOfRangeTargetGivesNanInsteadOfReadingOutOfBounds) {
  SKIP_WITHOUT_CUDA();
  const at::Tensor logits = at::randn({2, 10}, at::TensorOptions().device(at::kCUDA));
  auto [logp, entropy] = scorch::token_logprobs(logits, at::tensor({3, 10}, at::kLong).to(at::kCUDA), 1.0, false);
  EXPECT_TRUE(std::isfinite(logp[0].item<float>()));
  EXPECT_TRUE(std::isnan(logp[1].item<float>()));
}

// lm_head_token_loss on CUDA (cuBLAS GEMMs + the token_logprobs kernels per chunk, the gradients
// taken in the forward) against the same op on the CPU: a non-linear per-token loss with the
// entropy, a trained and a frozen weight, fp32 and bf16, V not a multiple of anything.
TEST(LmHeadTokenLossCuda, MatchesTheCpuOpInFp32AndBf16) {
  SKIP_WITHOUT_CUDA();
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    for (bool frozen : {false, true}) {
      SCOPED_TRACE(std::string(c10::toString(dtype)) + (frozen ? " frozen" : " trained"));
      at::manual_seed(9);
      const at::Tensor hidden = random_nonzero({300, 96}).to(dtype);
      const at::Tensor weight = random_nonzero({5003, 96}, 0.2).to(dtype);
      const at::Tensor targets = random_targets(300, 5003);
      const at::Tensor a = at::randn({300});
      std::vector<at::Tensor> grads;
      std::vector<at::Tensor> values;
      for (c10::Device device : {c10::Device(at::kCPU), c10::Device(at::kCUDA)}) {
        const at::Tensor ad = a.to(device);
        const scorch::TokenLossFn fn = [&ad](const at::Tensor& logp, const at::Tensor& ent, int64_t b, int64_t e) {
          return (ad.slice(0, b, e) * at::exp(logp) - 0.05 * ent).sum();
        };
        const at::Tensor x = hidden.to(device).requires_grad_(true);
        const at::Tensor w = weight.to(device).requires_grad_(!frozen);
        scorch::LmHeadTokenLoss out = scorch::lm_head_token_loss(x, w, targets.to(device), fn, 0.8, true, 64);
        out.loss.backward();
        values.push_back(out.loss.cpu());
        values.push_back(out.logp.cpu());
        grads.push_back(x.grad().cpu());
        if (!frozen) grads.push_back(w.grad().cpu());
        EXPECT_EQ(frozen, !w.grad().defined());
      }
      const double tol = dtype == at::kFloat ? 1e-4 : 2e-2;
      EXPECT_LT(relative_error(values[2], values[0]), tol);
      EXPECT_LT(relative_error(values[3], values[1]), tol);
      const size_t half = grads.size() / 2;
      for (size_t i = 0; i < half; ++i) EXPECT_LT(relative_error(grads[half + i], grads[i]), tol) << i;
    }
  }
}

TEST(GroupAdvantagesCuda, MatchesCpuReferenceForEveryModeAndScale) {
  SKIP_WITHOUT_CUDA();
  at::manual_seed(13);
  // 1000 groups: more groups than threads in the kernel's block; some NaN rewards and 0/1 groups.
  for (const int64_t g : {1, 2, 8, 16}) {
    at::Tensor r = at::randn({1000 * g});
    r.masked_fill_(at::rand({1000 * g}) < 0.05, NAN);
    r.slice(0, 0, 100 * g).copy_((at::rand({100 * g}) < 0.5).to(at::kFloat));
    for (const char* mode : {"grpo", "dr_grpo", "rloo", "reinforce_pp"})
      for (const char* scale : {"group", "batch", "none"}) {
        auto [a, m, s, z] = scorch::group_advantages(r, g, mode, 1e-4, scale);
        auto [ca, cm, cs, cz] = scorch::group_advantages(r.to(at::kCUDA), g, mode, 1e-4, scale);
        EXPECT_LE(relative_error(ca.cpu(), a), 1e-6) << mode << "/" << scale << " G=" << g;
        EXPECT_TRUE(at::allclose(cm.cpu(), m, 1e-6, 1e-6, /*equal_nan=*/true));
        EXPECT_TRUE(at::allclose(cs.cpu(), s, 1e-6, 1e-6, /*equal_nan=*/true));
        EXPECT_TRUE(at::equal(cz.cpu(), z));
      }
  }
}

// --- decode-step ops ---------------------------------------------------------------------------

using scorch::test::ulp_diff;
using scorch::test::UlpDiff;

constexpr double kRmsEps = 1e-6;

// Fills then frees `count` blocks of `numel` NaNs of `dtype`: the op's outputs (same sizes) come
// from these blocks, so an element the kernel does not write stays NaN.
void poison_cuda_blocks(int64_t numel, at::ScalarType dtype, int count) {
  std::vector<at::Tensor> blocks;
  for (int i = 0; i < count; ++i) blocks.push_back(at::full({numel}, NAN, at::TensorOptions().device(at::kCUDA).dtype(dtype)));
}

double f64_tolerance(at::ScalarType dtype) { return dtype == at::kFloat ? 1e-6 : 1.6e-2; }

struct DecodeWorst {
  double rel = 0.0;
  int64_t cpu_differing = 0, aten_differing = 0, numel = 0, cpu_ulps = 0, aten_ulps = 0;
  void add(double e, const UlpDiff& vs_cpu, const UlpDiff& vs_aten) {
    rel = std::max(rel, e);
    cpu_differing += vs_cpu.differing, aten_differing += vs_aten.differing, numel += vs_cpu.numel;
    cpu_ulps = std::max(cpu_ulps, vs_cpu.max_ulps), aten_ulps = std::max(aten_ulps, vs_aten.max_ulps);
  }
  void print(const char* op, at::ScalarType dtype) const {
    std::printf("[ info ] CUDA %s %s: worst relative error vs float64 %.2e; vs the CPU op %ld of %ld differ (max %ld "
                "ulp); vs ATen's CUDA composition %ld differ (max %ld ulp)\n",
                op, c10::toString(dtype), rel, static_cast<long>(cpu_differing), static_cast<long>(numel),
                static_cast<long>(cpu_ulps), static_cast<long>(aten_differing), static_cast<long>(aten_ulps));
  }
};

// Where a reduction is summed in another order (rms_norm): bf16 / fp16 off by an ulp of dtype(h * r)
// on a small fraction of the elements (two after the weight multiply), fp32 by a few ulp (and the CPU
// op's rsqrt is 1 / sqrt, CUDA's rsqrtf is within 2 ulp of it).
void expect_near_bitwise(const UlpDiff& d, at::ScalarType dtype, const std::string& where) {
  if (dtype == at::kFloat) {
    EXPECT_LE(d.max_ulps, 8) << where << ": " << d.str();
  } else {
    EXPECT_LE(d.max_ulps, 2) << where << ": " << d.str();
    EXPECT_LE(d.fraction(), 5e-3) << where << ": " << d.str();
  }
}

std::string where_str(const char* what, at::IntArrayRef sizes, at::ScalarType dtype) {
  return std::string(what) + " " + c10::str(sizes) + " " + c10::toString(dtype);
}

// Decode (64 / 256 rows of Qwen2.5-0.5B's 896), a prefill of 2048 tokens, rows not a multiple of the
// 16-byte vector (N = 897: the scalar path), N larger than the block (4096 fp32 = 1024 vectors).
const std::vector<std::vector<int64_t>> kCudaNormShapes = {{64, 896}, {256, 896}, {1, 896}, {2048, 896}, {7, 897},
                                                           {3, 4096}, {2, 3, 64}};

TEST(DecodeOpsCuda, RmsNormMatchesCpuFloat64AndAtenCuda) {
  SKIP_WITHOUT_CUDA();
  at::manual_seed(31);
  for (const at::ScalarType dtype : {at::kBFloat16, at::kFloat, at::kHalf}) {
    DecodeWorst worst;
    for (const auto& sizes : kCudaNormShapes) {
      const at::Tensor x = random_nonzero(sizes, 2.0).to(dtype);
      const at::Tensor w = (1.0 + 0.5 * random_nonzero({sizes.back()})).to(dtype);
      const at::Tensor xc = x.to(at::kCUDA), wc = w.to(at::kCUDA);
      poison_cuda_blocks(x.numel(), dtype, 4);
      const at::Tensor y = scorch::fused_rms_norm(xc, wc, kRmsEps);
      const std::string where = where_str("rms_norm", x.sizes(), dtype);
      ASSERT_TRUE(at::isfinite(y).all().item<bool>()) << where << ": an element was not written";
      const at::Tensor y_cpu = y.cpu();
      const double e = relative_error(y_cpu, scorch::test::rms_norm_f64(x, w, kRmsEps));
      EXPECT_LE(e, f64_tolerance(dtype)) << where;
      const UlpDiff vs_cpu = ulp_diff(y_cpu, scorch::fused_rms_norm(x, w, kRmsEps));
      const UlpDiff vs_aten = ulp_diff(y_cpu, scorch::test::hf_rms_norm(xc, wc, kRmsEps).cpu());
      expect_near_bitwise(vs_cpu, dtype, where + " vs CPU");
      expect_near_bitwise(vs_aten, dtype, where + " vs ATen CUDA");
      worst.add(e, vs_cpu, vs_aten);
    }
    worst.print("fused_rms_norm", dtype);
  }
}

TEST(DecodeOpsCuda, AddRmsNormMatchesCpuFloat64AndAtenCuda) {
  SKIP_WITHOUT_CUDA();
  at::manual_seed(32);
  for (const at::ScalarType dtype : {at::kBFloat16, at::kFloat}) {
    DecodeWorst worst;
    for (const auto& sizes : kCudaNormShapes) {
      const at::Tensor h = random_nonzero(sizes, 3.0).to(dtype), delta = random_nonzero(sizes).to(dtype);
      const at::Tensor w = (1.0 + 0.5 * random_nonzero({sizes.back()})).to(dtype);
      const at::Tensor hc = h.to(at::kCUDA), dc = delta.to(at::kCUDA), wc = w.to(at::kCUDA);
      poison_cuda_blocks(h.numel(), dtype, 4);
      auto [sum, y] = scorch::fused_add_rms_norm(hc, dc, wc, kRmsEps);
      const std::string where = where_str("add_rms_norm", h.sizes(), dtype);
      ASSERT_TRUE(at::isfinite(sum).all().item<bool>() && at::isfinite(y).all().item<bool>()) << where;
      EXPECT_TRUE(at::equal(sum.cpu(), h + delta)) << where << ": the residual add must be bit-equal";
      const at::Tensor y_cpu = y.cpu();
      const double e = relative_error(y_cpu, scorch::test::rms_norm_f64(h + delta, w, kRmsEps));
      EXPECT_LE(e, f64_tolerance(dtype)) << where;
      const UlpDiff vs_cpu = ulp_diff(y_cpu, std::get<1>(scorch::fused_add_rms_norm(h, delta, w, kRmsEps)));
      const UlpDiff vs_aten = ulp_diff(y_cpu, scorch::test::hf_rms_norm(hc + dc, wc, kRmsEps).cpu());
      expect_near_bitwise(vs_cpu, dtype, where + " vs CPU");
      expect_near_bitwise(vs_aten, dtype, where + " vs ATen CUDA");
      worst.add(e, vs_cpu, vs_aten);
    }
    worst.print("fused_add_rms_norm", dtype);
  }
  // Strided rows (the scalar path: a row stride that is not a multiple of the vector).
  const at::Tensor wide = random_nonzero({33, 1001}).to(at::kBFloat16).to(at::kCUDA);
  const at::Tensor h = wide.slice(1, 1, 897), delta = wide.slice(1, 100, 996);
  const at::Tensor w = at::ones({896}, wide.options());
  auto [sum, y] = scorch::fused_add_rms_norm(h, delta, w, kRmsEps);
  auto [sum_ref, y_ref] = scorch::fused_add_rms_norm(h.cpu(), delta.cpu(), w.cpu(), kRmsEps);
  EXPECT_TRUE(at::equal(sum.cpu(), sum_ref));
  expect_near_bitwise(ulp_diff(y.cpu(), y_ref), at::kBFloat16, "strided add_rms_norm");
}

struct CudaRopeCase {
  int64_t b, m, t, d;
};

TEST(DecodeOpsCuda, RopeIsBitEqualToCpuAndAtenCudaOnStridedViews) {
  SKIP_WITHOUT_CUDA();
  at::manual_seed(33);
  // Decode q [64, 16, 1, 64] (and k, 2 heads), batch 1, a prefill [2, 14, 300, 64], D = 128.
  const std::vector<CudaRopeCase> cases = {{64, 16, 1, 64}, {64, 2, 1, 64}, {1, 14, 1, 64}, {2, 14, 300, 64}, {3, 4, 7, 128}};
  for (const at::ScalarType dtype : {at::kBFloat16, at::kFloat}) {
    double worst = 0.0;
    for (const CudaRopeCase& c : cases) {
      // q of a fused qkv projection: [B, T, (M + 4) * D] -> heads -> transpose -> narrow: strided.
      const at::Tensor proj = random_nonzero({c.b, c.t, (c.m + 4) * c.d}, 2.0).to(dtype).to(at::kCUDA);
      const at::Tensor x = proj.view({c.b, c.t, c.m + 4, c.d}).transpose(1, 2).narrow(1, 2, c.m);
      const at::Tensor cos = random_nonzero({c.b, 1, c.t, c.d}).to(dtype).to(at::kCUDA);
      // sin broadcast over the batch (stride 0), as when every sequence sits at the same positions.
      const at::Tensor sin = random_nonzero({1, 1, c.t, c.d}).to(dtype).to(at::kCUDA).expand({c.b, 1, c.t, c.d});
      poison_cuda_blocks(x.numel(), dtype, 4);
      const at::Tensor out = scorch::fused_rope(x, cos, sin);
      const std::string where = where_str("rope", x.sizes(), dtype);
      ASSERT_TRUE(at::isfinite(out).all().item<bool>()) << where << ": an element was not written";
      const at::Tensor out_cpu = out.cpu();
      const UlpDiff vs_cpu = ulp_diff(out_cpu, scorch::fused_rope(x.cpu(), cos.cpu(), sin.cpu()));
      const UlpDiff vs_aten = ulp_diff(out_cpu, scorch::test::hf_rope(x, cos, sin).cpu());
      EXPECT_EQ(vs_cpu.differing, 0) << where << " vs CPU: " << vs_cpu.str();
      EXPECT_EQ(vs_aten.differing, 0) << where << " vs ATen CUDA: " << vs_aten.str();
      const double e = relative_error(out_cpu, scorch::test::rope_f64(x.cpu(), cos.cpu(), sin.cpu()));
      EXPECT_LE(e, f64_tolerance(dtype)) << where;
      worst = std::max(worst, e);
    }
    std::printf("[ info ] CUDA fused_rope %s: bit-equal to the CPU op and ATen's CUDA composition; worst relative "
                "error vs float64 %.2e\n", c10::toString(dtype), worst);
  }
}

TEST(DecodeOpsCuda, SiluAndMulIsBitEqualToAtenCudaAndMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  at::manual_seed(34);
  // Decode (I = 4864 at 1 / 64 rows), a prefill of 1024 tokens, odd I (the scalar path), a strided input.
  const std::vector<std::vector<int64_t>> shapes = {{64, 2 * 4864}, {1, 2 * 4864}, {1024, 2 * 4864}, {3, 2 * 7}, {2, 5, 2 * 100}};
  for (const at::ScalarType dtype : {at::kBFloat16, at::kFloat}) {
    DecodeWorst worst;
    auto check = [&](const at::Tensor& gu) {
      poison_cuda_blocks(gu.numel() / 2, dtype, 4);
      const at::Tensor out = scorch::silu_and_mul(gu);
      const std::string where = where_str("silu_and_mul", gu.sizes(), dtype);
      ASSERT_TRUE(at::isfinite(out).all().item<bool>()) << where << ": an element was not written";
      const at::Tensor out_cpu = out.cpu();
      const UlpDiff vs_aten = ulp_diff(out_cpu, scorch::test::hf_silu_and_mul(gu).cpu());
      EXPECT_EQ(vs_aten.differing, 0) << where << " vs ATen CUDA: " << vs_aten.str();
      // The CPU op's exp (Sleef / glibc) and CUDA's expf may differ by an ulp of fp32.
      const UlpDiff vs_cpu = ulp_diff(out_cpu, scorch::silu_and_mul(gu.cpu()));
      EXPECT_LE(vs_cpu.max_ulps, dtype == at::kFloat ? 2 : 1) << where << " vs CPU: " << vs_cpu.str();
      EXPECT_LE(vs_cpu.fraction(), dtype == at::kFloat ? 5e-2 : 1e-3) << where << " vs CPU: " << vs_cpu.str();
      const double e = relative_error(out_cpu, scorch::test::silu_and_mul_f64(gu.cpu()));
      EXPECT_LE(e, f64_tolerance(dtype)) << where;
      worst.add(e, vs_cpu, vs_aten);
    };
    for (const auto& sizes : shapes) check(random_nonzero(sizes, 3.0).to(dtype).to(at::kCUDA));
    check(random_nonzero({8, 3000}, 3.0).to(dtype).to(at::kCUDA).slice(1, 4, 4 + 2 * 1000));
    worst.print("silu_and_mul", dtype);
  }
}

// The layer ops' backward on the device (train_ops_cuda.cu): every gradient against the CPU op's
// (both within the dtype's rounding of float64) at training shapes -- 4096 tokens of Qwen2.5-0.5B
// (hidden 896, 14 / 2 heads of 64, intermediate 4864) -- with q / k as transposed views; the weight
// gradient the same bits on a second run (its cross-row sum is deterministic); silu_mul's forward
// bit-equal to ATen's CUDA silu(gate) * up.
TEST(TrainOpsCuda, BackwardMatchesTheCpuOpsAtTrainingShapes) {
  SKIP_WITHOUT_CUDA();
  at::manual_seed(81);
  const int64_t B = 2, T = 2048, hidden = 896, H = 14, KV = 2, D = 64, I = 4864;
  for (const at::ScalarType dtype : {at::kBFloat16, at::kFloat}) {
    const double tol = dtype == at::kFloat ? 1e-5 : 1.6e-2;
    auto grads_on = [&](const at::Device device, const std::vector<at::Tensor>& inputs,
                        const std::function<at::Tensor(const std::vector<at::Tensor>&)>& f, const at::Tensor& dy) {
      std::vector<at::Tensor> leaves;
      for (const at::Tensor& t : inputs) leaves.push_back(t.to(device).detach().requires_grad_(true));
      f(leaves).backward(dy.to(device));
      std::vector<at::Tensor> out;
      for (const at::Tensor& l : leaves) out.push_back(l.grad().cpu());
      return out;
    };
    auto compare = [&](const char* what, const std::vector<at::Tensor>& inputs,
                       const std::function<at::Tensor(const std::vector<at::Tensor>&)>& f, const at::Tensor& dy) {
      const auto cuda = grads_on(at::kCUDA, inputs, f, dy), cpu = grads_on(at::kCPU, inputs, f, dy);
      for (size_t i = 0; i < cuda.size(); ++i) {
        EXPECT_LE(relative_error(cuda[i], cpu[i]), tol) << what << " input " << i << " " << dtype;
      }
      return cuda;
    };
    const at::Tensor x = random_nonzero({B, T, hidden}, 2.0).to(dtype), delta = random_nonzero({B, T, hidden}).to(dtype);
    const at::Tensor w = (1 + 0.3 * random_nonzero({hidden})).to(dtype), dy = random_nonzero({B, T, hidden}).to(dtype);
    const auto norm = [](const std::vector<at::Tensor>& v) { return scorch::fused_rms_norm(v[0], v[1], 1e-6); };
    const auto first = compare("fused_rms_norm", {x, w}, norm, dy);
    const auto again = grads_on(at::kCUDA, {x, w}, norm, dy);
    EXPECT_TRUE(at::equal(first[1], again[1])) << "grad_weight changed between two runs";
    compare("fused_add_rms_norm", {x, delta, w},
            [&](const std::vector<at::Tensor>& v) {
              auto [sum, y] = scorch::fused_add_rms_norm(v[0], v[1], v[2], 1e-6);
              return sum * 0.5 + y;
            },
            dy);
    const at::Tensor qn = (1 + 0.3 * random_nonzero({D})).to(dtype);
    const at::Tensor qp = random_nonzero({B, T, H * D}).to(dtype);
    compare("per-head q norm", {qp, qn},
            [&](const std::vector<at::Tensor>& v) {
              return scorch::fused_rms_norm(v[0].unflatten(-1, {H, D}), v[1], 1e-6).flatten(-2);
            },
            random_nonzero({B, T, H * D}).to(dtype));
    const at::Tensor cos = random_nonzero({B, 1, T, D}).to(dtype), sin = random_nonzero({B, 1, T, D}).to(dtype);
    for (const int64_t heads : {H, KV}) {
      compare("fused_rope", {random_nonzero({B, T, heads * D}).to(dtype)},
              [&](const std::vector<at::Tensor>& v) {
                return scorch::fused_rope(v[0].view({B, T, heads, D}).transpose(1, 2), cos.to(v[0].device()),
                                          sin.to(v[0].device()));
              },
              random_nonzero({B, heads, T, D}).to(dtype));
    }
    const at::Tensor gate = random_nonzero({B, T, I}, 3.0).to(dtype), up = random_nonzero({B, T, I}).to(dtype);
    compare("silu_mul", {gate, up}, [](const std::vector<at::Tensor>& v) { return scorch::silu_mul(v[0], v[1]); },
            random_nonzero({B, T, I}).to(dtype));
    c10::NoGradGuard no_grad;
    const at::Tensor g_cuda = gate.cuda(), u_cuda = up.cuda();
    EXPECT_TRUE(at::equal(scorch::silu_mul(g_cuda, u_cuda), at::silu(g_cuda) * u_cuda)) << dtype;
  }
}

#ifdef SCORCH_WITH_CUDA
// rope_kv_write on the device: bit-equal to the CPU op (q and both caches) for a strided bf16 qkv
// of the Qwen2.5-0.5B shape (14 query heads, 2 KV heads, D 64), the slot read from device memory;
// a slot past the end writes nothing (no host check is possible there).
TEST(DecodeOpsCuda, RopeKvWriteIsBitEqualToTheCpuOp) {
  SKIP_WITHOUT_CUDA();
  at::manual_seed(41);
  c10::NoGradGuard no_grad;
  for (const at::ScalarType dtype : {at::kBFloat16, at::kFloat}) {
    const int64_t B = 64, H = 14, KV = 2, D = 64, S = 208;
    const at::Tensor proj = at::randn({B, 1, (H + 2 * KV) * D}).to(dtype);
    const at::Tensor qkv = proj.view({B, 1, H + 2 * KV, D}).transpose(1, 2);
    const at::Tensor cos = at::randn({B, 1, 1, D}).to(dtype), sin = at::randn({B, 1, 1, D}).to(dtype);
    at::Tensor k = at::randn({B, KV, S, D}).to(dtype), v = at::randn({B, KV, S, D}).to(dtype);
    at::Tensor kd = k.cuda(), vd = v.cuda();
    const at::Tensor slot = at::full({1}, 77, at::kLong);
    const at::Tensor q = scorch::rope_kv_write(qkv, cos, sin, k, v, slot, H);
    const at::Tensor qd = scorch::rope_kv_write(qkv.cuda(), cos.cuda(), sin.cuda(), kd, vd, slot.cuda(), H);
    EXPECT_TRUE(at::equal(q, qd.cpu())) << dtype;
    EXPECT_TRUE(at::equal(k, kd.cpu())) << dtype;
    EXPECT_TRUE(at::equal(v, vd.cpu())) << dtype;
    const at::Tensor k_before = kd.clone(), v_before = vd.clone();
    scorch::rope_kv_write(qkv.cuda(), cos.cuda(), sin.cuda(), kd, vd, at::full({1}, S, at::kLong).cuda(), H);
    EXPECT_TRUE(at::equal(kd, k_before)) << dtype;
    EXPECT_TRUE(at::equal(vd, v_before)) << dtype;
  }
}

// decode_attention's CUDA kernel: the caches written bit-equal to the CPU op's (rope_kv_write's
// rounding), the output against the float64 formula on the roped q and the written caches, and
// beside the CPU op (SDPA), with the output memory poisoned first. The shapes cover one block per
// (row, KV head) and slots split over several blocks with the partial softmaxes merged (batch 1,
// 3000 slots, the first half masked: whole splits without a visible slot; batch 2, 1100 slots), GQA groups of 1, 7 and 16,
// head dims 10 (scalar loads), 64, 128 and 256, a mask broadcast over the batch, no mask, and a slot
// past the end (writes nothing; attention over the cache as it is).
TEST(DecodeAttentionCuda, MatchesTheFloat64FormulaAndWritesTheCachesLikeRopeKvWrite) {
  SKIP_WITHOUT_CUDA();
  at::manual_seed(47);
  c10::NoGradGuard no_grad;
  struct Shape {
    int64_t B, H, KV, D, S, slot, masked_prefix;  // masked_prefix: slots [0, p) hidden from every row
    int mask_kind;                                // 0 per row, 1 broadcast, 2 none
  };
  const std::vector<Shape> shapes = {{64, 14, 2, 64, 208, 77, 0, 0}, {1, 8, 8, 128, 3000, 2999, 1500, 0},
                                     {3, 16, 1, 256, 20, 5, 2, 1},   {2, 4, 2, 10, 33, 0, 0, 2},
                                     {5, 4, 2, 16, 300, 150, 7, 0},  {2, 14, 2, 64, 50, 50, 3, 0},
                                     {2, 8, 2, 32, 1100, 600, 100, 1}};
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    double worst = 0, worst_vs_cpu = 0;
    for (const Shape& sh : shapes) {
      const int64_t B = sh.B, H = sh.H, KV = sh.KV, D = sh.D, S = sh.S;
      const at::Tensor proj = at::randn({B, 1, (H + 2 * KV) * D}).to(dtype);
      const at::Tensor qkv = proj.view({B, 1, H + 2 * KV, D}).transpose(1, 2);
      const at::Tensor cos = at::randn({B, 1, 1, D}).to(dtype), sin = at::randn({B, 1, 1, D}).to(dtype);
      const at::Tensor k0 = at::randn({B, KV, S, D}).to(dtype), v0 = at::randn({B, KV, S, D}).to(dtype);
      at::Tensor valid = at::ones({sh.mask_kind == 1 ? 1 : B, 1, 1, S}, at::kBool);
      valid.narrow(-1, 0, sh.masked_prefix).fill_(false);
      for (int64_t b = 0; sh.mask_kind == 0 && b < B; ++b) {  // row b also hides b slots after the prefix
        valid[b].narrow(-1, sh.masked_prefix, std::min(b, S - sh.masked_prefix - 1)).fill_(false);
      }
      if (sh.slot < S) valid.narrow(-1, sh.slot, 1).fill_(true);  // a row always sees its new slot
      const at::Tensor mask =
          sh.mask_kind == 2 ? at::Tensor() : at::zeros(valid.sizes(), dtype).masked_fill_(valid.logical_not(), -INFINITY);
      const std::optional<at::Tensor> mask_cpu = mask.defined() ? std::optional<at::Tensor>(mask) : std::nullopt;
      const std::optional<at::Tensor> mask_dev = mask.defined() ? std::optional<at::Tensor>(mask.cuda()) : std::nullopt;
      const double scale = 1.0 / std::sqrt(static_cast<double>(D));
      const std::string where = std::string(c10::toString(dtype)) + " B=" + std::to_string(B) + " H=" +
                                std::to_string(H) + " KV=" + std::to_string(KV) + " D=" + std::to_string(D) +
                                " S=" + std::to_string(S) + " slot=" + std::to_string(sh.slot);

      at::Tensor kd = k0.cuda(), vd = v0.cuda();
      poison_cuda_memory(B * H * D, 1, dtype);
      const at::Tensor out = scorch::decode_attention(qkv.cuda(), cos.cuda(), sin.cuda(), kd, vd,
                                                      at::full({1}, sh.slot, at::kLong).cuda(), mask_dev, H, scale)
                                 .cpu();
      ASSERT_EQ(out.sizes(), (std::vector<int64_t>{B, 1, H * D})) << where;
      at::Tensor k_ref = k0.clone(), v_ref = v0.clone(), q;
      if (sh.slot < S) {
        q = scorch::rope_kv_write(qkv, cos, sin, k_ref, v_ref, at::full({1}, sh.slot, at::kLong), H);
      } else {
        q = scorch::fused_rope(qkv.narrow(1, 0, H), cos, sin);  // nothing written
      }
      EXPECT_TRUE(at::equal(kd.cpu(), k_ref)) << where;
      EXPECT_TRUE(at::equal(vd.cpu(), v_ref)) << where;
      const double e = relative_error(out, scorch::test::decode_attention_f64(q, k_ref, v_ref, mask, scale));
      EXPECT_LE(e, dtype == at::kFloat ? 1e-5 : dtype == at::kBFloat16 ? 1.6e-2 : 2e-3) << where;
      EXPECT_FALSE(at::isnan(out).any().item<bool>()) << where;
      worst = std::max(worst, e);
      if (sh.slot < S) {
        at::Tensor k_cpu = k0.clone(), v_cpu = v0.clone();
        const at::Tensor cpu = scorch::decode_attention(qkv, cos, sin, k_cpu, v_cpu,
                                                        at::full({1}, sh.slot, at::kLong), mask_cpu, H, scale);
        worst_vs_cpu = std::max(worst_vs_cpu, relative_error(out, cpu));
      }
    }
    std::printf("[ info ] decode_attention %s: worst relative error vs float64 %.2e, vs the CPU op (SDPA) %.2e\n",
                c10::toString(dtype), worst, worst_vs_cpu);
  }
}

// decode_attention inside a CUDA graph: the slot is read on the device, so one capture serves every
// step; two replays with different slots equal eager calls with those slots (output and caches).
TEST(DecodeAttentionCuda, ReplaysFromACudaGraphWithTheSlotReadOnTheDevice) {
  SKIP_WITHOUT_CUDA();
  at::manual_seed(53);
  c10::NoGradGuard no_grad;
  const auto cuda = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
  const int64_t B = 64, H = 14, KV = 2, D = 64, S = 192;
  const at::Tensor qkv = at::randn({B, 1, (H + 2 * KV) * D}, cuda).view({B, 1, H + 2 * KV, D}).transpose(1, 2);
  const at::Tensor cos = at::randn({B, 1, 1, D}, cuda), sin = at::randn({B, 1, 1, D}, cuda);
  const at::Tensor mask = at::zeros({B, 1, 1, S}, cuda).masked_fill_(at::rand({B, 1, 1, S}, cuda) < 0.3, -INFINITY);
  const at::Tensor k0 = at::randn({B, KV, S, D}, cuda), v0 = at::randn({B, KV, S, D}, cuda);
  at::Tensor k = k0.clone(), v = v0.clone();
  const at::Tensor slot = at::full({1}, 3, cuda.dtype(at::kLong));
  const double scale = 0.125;
  at::Tensor captured;
  at::cuda::CUDAGraph graph;
  scorch::decode_attention(qkv, cos, sin, k, v, slot, mask, H, scale);  // warm-up outside the capture
  torch::cuda::synchronize();
  {
    const c10::cuda::CUDAStreamGuard side(c10::cuda::getStreamFromPool());
    graph.capture_begin();
    captured = scorch::decode_attention(qkv, cos, sin, k, v, slot, mask, H, scale);
    graph.capture_end();
  }
  for (const int64_t s : {int64_t{10}, int64_t{191}}) {
    k.copy_(k0);
    v.copy_(v0);
    slot.fill_(s);
    captured.fill_(NAN);
    graph.replay();
    at::Tensor k_eager = k0.clone(), v_eager = v0.clone();
    const at::Tensor eager =
        scorch::decode_attention(qkv, cos, sin, k_eager, v_eager, at::full({1}, s, cuda.dtype(at::kLong)), mask, H, scale);
    torch::cuda::synchronize();
    EXPECT_TRUE(at::equal(captured, eager)) << "slot " << s;
    EXPECT_TRUE(at::equal(k, k_eager)) << "slot " << s;
    EXPECT_TRUE(at::equal(v, v_eager)) << "slot " << s;
  }
}

TEST(DecodeOpsCuda, CaptureInACudaGraphAndReplay) {
  SKIP_WITHOUT_CUDA();
  at::manual_seed(35);
  const auto cuda = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
  const at::Tensor h = at::randn({64, 896}, cuda), delta = at::randn({64, 896}, cuda), w = at::randn({896}, cuda);
  const at::Tensor proj = at::randn({64, 1, 18 * 64}, cuda);
  const at::Tensor q = proj.view({64, 1, 18, 64}).transpose(1, 2).narrow(1, 0, 14);
  const at::Tensor cos = at::randn({64, 1, 1, 64}, cuda), sin = at::randn({64, 1, 1, 64}, cuda);
  const at::Tensor gu = at::randn({64, 2 * 4864}, cuda);
  auto step = [&] {
    auto [sum, y] = scorch::fused_add_rms_norm(h, delta, w, kRmsEps);
    return std::vector<at::Tensor>{sum, y, scorch::fused_rms_norm(y, w, kRmsEps), scorch::fused_rope(q, cos, sin),
                                   scorch::silu_and_mul(gu)};
  };
  const std::vector<at::Tensor> eager = step();
  at::cuda::CUDAGraph graph;
  std::vector<at::Tensor> captured;
  torch::cuda::synchronize();
  {
    const c10::cuda::CUDAStreamGuard side(c10::cuda::getStreamFromPool());
    graph.capture_begin();
    captured = step();  // no sync, no host read, no allocation outside the graph's pool: capturable
    graph.capture_end();
  }
  for (at::Tensor& t : captured) t.fill_(NAN);  // the replay must rewrite every element
  graph.replay();
  torch::cuda::synchronize();
  for (size_t i = 0; i < eager.size(); ++i) EXPECT_TRUE(at::equal(captured[i], eager[i])) << "output " << i;
}

// Bytes allocated at the peak of fn() beyond what was allocated before it.
template <typename Fn>
int64_t peak_extra_bytes(Fn&& fn) {
  namespace alloc = c10::cuda::CUDACachingAllocator;
  const auto device = c10::cuda::current_device();
  torch::cuda::synchronize();
  alloc::resetPeakStats(device);
  const int64_t before = alloc::getDeviceStats(device).allocated_bytes[0].current;
  fn();
  torch::cuda::synchronize();
  return alloc::getDeviceStats(device).allocated_bytes[0].peak - before;
}

TEST(TokenLogprobsCuda, ForwardPlusBackwardNeedsNoMoreExtraMemoryThanTheLogits) {
  SKIP_WITHOUT_CUDA();
  const int64_t n = 4096, v = 32000;
  const auto cuda = at::TensorOptions().device(at::kCUDA);
  at::Tensor logits = at::randn({n, v}, cuda.dtype(at::kBFloat16)).requires_grad_(true);
  const at::Tensor targets = at::randint(0, v, {n}, cuda.dtype(at::kLong));
  const int64_t logits_bytes = logits.numel() * logits.element_size();
  // The gradient itself is the size of the logits; beyond it only [N] vectors (and block rounding).
  const int64_t slack = 64 * n * 4 + (2 << 20);

  const int64_t fused = peak_extra_bytes([&] {
    auto [logp, entropy] = scorch::token_logprobs(logits, targets, 1.0, true);
    (logp.sum() + 0.1 * entropy.sum()).backward();
  });
  logits.mutable_grad().reset();
  const int64_t eager = peak_extra_bytes([&] {
    at::Tensor log_p = at::log_softmax(logits.to(at::kFloat), 1);
    log_p.gather(1, targets.unsqueeze(1)).sum().backward();
  });
  std::printf("[ info ] peak extra memory, fwd+bwd N=%ld V=%ld bf16: fused %.1f MiB, eager %.1f MiB, logits %.1f MiB\n",
              static_cast<long>(n), static_cast<long>(v), fused / 1048576.0, eager / 1048576.0,
              logits_bytes / 1048576.0);
  EXPECT_LE(fused, logits_bytes + slack);
  EXPECT_GT(eager, 2 * logits_bytes) << "the eager baseline should need fp32 copies (sanity of the measurement)";
}
#endif

}  // namespace

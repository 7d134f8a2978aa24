// The CUDA kernels' code, run on the CPU by kernels/cuda_emulation.h (blocks of cooperative threads,
// real barriers and warp collectives), against the CPU ops: what the GPU tests check, minus the
// hardware. Index arithmetic, shared-memory layout, reductions and the split/merge logic are tested
// here on every machine; the GPU tests (label gpu) still judge speed, races and the real intrinsics.
#include "tests/kernels/emulated/emulated_ops.h"
#include "kernels/cuda_emulation_schedule.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "kernels/ops.h"
#include "tests/kernels/decode_ops_reference.h"
#include "tests/kernels/kernel_test_util.h"

namespace {

namespace emu = scorch::kernels_emulated;
namespace cpu = scorch::kernels;
using scorch::test::random_targets;
using scorch::test::random_nonzero;
using scorch::test::relative_error;

// The same bytes (NaN included, where at::equal says no).
bool same_bits(const at::Tensor& a, const at::Tensor& b) {
  if (a.sizes() != b.sizes() || a.scalar_type() != b.scalar_type()) return false;
  return at::equal(a.contiguous().view({-1}).view(at::kByte), b.contiguous().view({-1}).view(at::kByte));
}

// Runs `fn` (which returns a tensor or a tuple of tensors, and must not depend on state it changes)
// with the block's threads scheduled forward, backward and shuffled; the results must be the same
// bits (else two threads race). Returns the forward run's.
template <typename F>
auto in_every_schedule(F&& fn, const std::string& where) {
  using scorch::emu::Schedule;
  scorch::emu::schedule() = Schedule::kForward;
  auto first = fn();
#ifdef SCORCH_EMULATION_ONE_ORDER
  return first;  // the AddressSanitizer build (test_kernels_emulated_asan): one order
#endif
  for (const Schedule s : {Schedule::kReverse, Schedule::kShuffled}) {
    scorch::emu::schedule() = s;
    auto again = fn();
    if constexpr (std::is_same_v<decltype(first), at::Tensor>) {
      EXPECT_TRUE(same_bits(first, again)) << where << ": the result depends on the threads' order (a race)";
    } else {
      const bool same = std::apply(
          [&](const auto&... a) { return std::apply([&](const auto&... b) { return (same_bits(a, b) && ...); }, again); },
          first);
      EXPECT_TRUE(same) << where << ": a result depends on the threads' order (a race)";
    }
  }
  scorch::emu::schedule() = Schedule::kForward;
  return first;
}

// The fused decode ops on decode and awkward shapes (rows of 896 and 4864, odd sizes that take the
// scalar paths, strided and broadcast views): RoPE and silu bit-equal to the CPU op, the norms within
// their order of summation (and rsqrtf, emulated as 1 / sqrtf).
TEST(EmulatedKernels, DecodeOpsMatchTheCpuOps) {
  at::manual_seed(61);
  c10::NoGradGuard no_grad;
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    const double tol = dtype == at::kFloat ? 1e-6 : 1e-2;
    for (const int64_t n : {int64_t{896}, int64_t{4864}, int64_t{7}, int64_t{1001}}) {
      const at::Tensor x = random_nonzero({5, n}, 2.0).to(dtype), d = random_nonzero({5, n}).to(dtype);
      const at::Tensor w = (1 + 0.3 * random_nonzero({n})).to(dtype);
      const std::string where = std::string(c10::toString(dtype)) + " n=" + std::to_string(n);
      const at::Tensor y = in_every_schedule([&] { return emu::fused_rms_norm_cuda(x, w, 1e-6); }, where);
      EXPECT_LE(relative_error(y, cpu::fused_rms_norm_cpu(x, w, 1e-6)), tol) << where;
      auto [s_emu, y_emu] = in_every_schedule([&] { return emu::fused_add_rms_norm_cuda(x, d, w, 1e-6); }, where);
      auto [s_cpu, y_cpu] = cpu::fused_add_rms_norm_cpu(x, d, w, 1e-6);
      EXPECT_TRUE(at::equal(s_emu, s_cpu)) << where;  // the residual sum: one rounding, both sides
      EXPECT_LE(relative_error(y_emu, y_cpu), tol) << where;
      const at::Tensor gu = random_nonzero({3, 2 * n}, 3.0).to(dtype);
      EXPECT_LE(relative_error(in_every_schedule([&] { return emu::silu_and_mul_cuda(gu); }, where),
                               cpu::silu_and_mul_cpu(gu)),
                dtype == at::kFloat ? 1e-6 : 8e-3)
          << where;
      EXPECT_LE(relative_error(emu::silu_and_mul_cuda(gu.narrow(1, 1, 2 * n - 2)), cpu::silu_and_mul_cpu(gu.narrow(1, 1, 2 * n - 2))),
                dtype == at::kFloat ? 1e-6 : 8e-3)
          << where << " unaligned rows";
    }
    // RoPE over a strided q (the transposed view of a projection) with per-row and broadcast tables.
    const at::Tensor proj = random_nonzero({3, 4, 6 * 16}).to(dtype);           // [B, T, heads * D]
    const at::Tensor q = proj.view({3, 4, 6, 16}).transpose(1, 2).narrow(1, 0, 5);  // [B, 5 heads, T, D]
    for (const int64_t tb : {int64_t{3}, int64_t{1}}) {
      const at::Tensor cos = random_nonzero({tb, 1, 4, 16}).to(dtype), sin = random_nonzero({tb, 1, 4, 16}).to(dtype);
      EXPECT_TRUE(at::equal(in_every_schedule([&] { return emu::fused_rope_cuda(q, cos, sin); }, "rope"),
                            cpu::fused_rope_cpu(q, cos, sin)))
          << dtype;
    }
    // rope_kv_write: q and both caches bit-equal; a slot past the end writes nothing.
    const int64_t B = 4, H = 14, KV = 2, D = 64, S = 24;
    const at::Tensor qkv = random_nonzero({B, 1, (H + 2 * KV) * D}).to(dtype).view({B, 1, H + 2 * KV, D}).transpose(1, 2);
    const at::Tensor cos = random_nonzero({B, 1, 1, D}).to(dtype), sin = random_nonzero({B, 1, 1, D}).to(dtype);
    const at::Tensor k0 = random_nonzero({B, KV, S, D}).to(dtype), v0 = random_nonzero({B, KV, S, D}).to(dtype);
    at::Tensor k1 = k0.clone(), v1 = v0.clone(), k2 = k0.clone(), v2 = v0.clone();
    const at::Tensor slot = at::full({1}, 9, at::kLong);
    EXPECT_TRUE(at::equal(emu::rope_kv_write_cuda(qkv, cos, sin, k1, v1, slot, H),
                          cpu::rope_kv_write_cpu(qkv, cos, sin, k2, v2, slot, H)))
        << dtype;
    EXPECT_TRUE(at::equal(k1, k2) && at::equal(v1, v2)) << dtype;
    emu::rope_kv_write_cuda(qkv, cos, sin, k1, v1, at::full({1}, S, at::kLong), H);
    EXPECT_TRUE(at::equal(k1, k2) && at::equal(v1, v2)) << dtype << ": a slot past the end wrote";
  }
}

// The fused ops' backward kernels (train_ops_cuda.cu) and silu_mul's forward against the CPU ops:
// RMSNorm's grad_x (with and without a residual gradient) within fp32 summation order, its weight
// gradient (per-block partials, then the blocks summed in order) the same bits in every thread order;
// RoPE's bit-equal; silu_mul's within the exp (CPU: Sleef). Rows of 896 and odd sizes, more rows than
// the norm kernel's 512 blocks, strided views.
TEST(EmulatedKernels, TrainOpsBackwardMatchesTheCpuOps) {
  at::manual_seed(71);
  c10::NoGradGuard no_grad;
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    const double tol = dtype == at::kFloat ? 2e-6 : dtype == at::kBFloat16 ? 1.6e-2 : 2e-3;
    struct NormCase {
      int64_t rows, n, pad;
    };
    for (const NormCase c : {NormCase{5, 896, 0}, NormCase{7, 33, 3}, NormCase{520, 8, 0}, NormCase{2, 1001, 1}}) {
      const std::string where = std::string(c10::toString(dtype)) + " rows=" + std::to_string(c.rows) + " n=" +
                                std::to_string(c.n) + " pad=" + std::to_string(c.pad);
      const at::Tensor x = random_nonzero({c.rows, c.n + c.pad}, 2.0).to(dtype).narrow(1, 0, c.n);
      const at::Tensor dy = random_nonzero({c.rows, c.n}).to(dtype), res = random_nonzero({c.rows, c.n}).to(dtype);
      const at::Tensor w = (1 + 0.3 * random_nonzero({c.n})).to(dtype);
      for (const bool with_residual : {false, true}) {
        const std::optional<at::Tensor> r = with_residual ? std::optional<at::Tensor>(res) : std::nullopt;
        auto [gx_emu, gw_emu] = in_every_schedule(
            [&] { return emu::fused_rms_norm_backward_cuda(dy, x, w, 1e-6, r, true); }, where);
        auto [gx_cpu, gw_cpu] = cpu::fused_rms_norm_backward_cpu(dy, x, w, 1e-6, r, true);
        EXPECT_LE(relative_error(gx_emu, gx_cpu), tol) << where << " grad_x, residual " << with_residual;
        EXPECT_LE(relative_error(gw_emu, gw_cpu), tol) << where << " grad_weight";
        auto [gx_only, gw_none] = emu::fused_rms_norm_backward_cuda(dy, x, w, 1e-6, r, false);
        EXPECT_TRUE(at::equal(gx_only, gx_emu) && !gw_none.defined()) << where << " without the weight gradient";
      }
    }
    // RoPE: the gradient of a transposed view's output, per-row and broadcast tables.
    const int64_t B = 3, T = 5, H = 6, D = 16;
    const at::Tensor g = random_nonzero({B, T, H * D}).to(dtype).view({B, T, H, D}).transpose(1, 2);
    for (const int64_t tb : {B, int64_t{1}}) {
      const at::Tensor cos = random_nonzero({tb, 1, T, D}).to(dtype), sin = random_nonzero({tb, 1, T, D}).to(dtype);
      EXPECT_TRUE(at::equal(in_every_schedule([&] { return emu::fused_rope_backward_cuda(g, cos, sin); }, "rope"),
                            cpu::fused_rope_backward_cpu(g, cos, sin)))
          << dtype << " tables batch " << tb;
    }
    // silu_mul: forward and backward, contiguous and as the halves of one projection.
    const at::Tensor gu = random_nonzero({4, 2 * 1001}, 3.0).to(dtype);
    const at::Tensor gate = gu.narrow(1, 0, 1001), up = gu.narrow(1, 1001, 1001);
    const at::Tensor dy = random_nonzero({4, 1001}).to(dtype);
    for (const bool contiguous : {true, false}) {
      const at::Tensor ga = contiguous ? gate.contiguous() : gate, ua = contiguous ? up.contiguous() : up;
      const std::string where = std::string(c10::toString(dtype)) + (contiguous ? " contiguous" : " halves");
      EXPECT_LE(relative_error(in_every_schedule([&] { return emu::silu_mul_cuda(ga, ua); }, where),
                               cpu::silu_mul_cpu(ga, ua)),
                dtype == at::kFloat ? 1e-6 : 8e-3)
          << where;
      auto [dg_emu, du_emu] = in_every_schedule([&] { return emu::silu_mul_backward_cuda(dy, ga, ua); }, where);
      auto [dg_cpu, du_cpu] = cpu::silu_mul_backward_cpu(dy, ga, ua);
      EXPECT_LE(relative_error(dg_emu, dg_cpu), tol) << where << " grad_gate";
      EXPECT_LE(relative_error(du_emu, du_cpu), tol) << where << " grad_up";
    }
  }
}

// sample_tokens: the block-per-row inverse-CDF kernel (tile sums in float64, warp scans, ballots)
// draws the CPU op's tokens from the same uniforms (at most one boundary case apart), over vocabulary
// sizes with one tile, many tiles and a ragged last tile; -1 for a NaN row.
TEST(EmulatedKernels, SampleTokensDrawsTheCpuOpsTokens) {
  at::manual_seed(5);
  for (const at::ScalarType dtype : {at::kBFloat16, at::kFloat}) {
    for (const int64_t V : {int64_t{151936}, int64_t{1000}, int64_t{300}, int64_t{256}, int64_t{3}}) {
      const at::Tensor logits = (at::randn({6, V}) * 4).to(dtype);
      const at::Tensor u = at::rand({6}, at::kDouble);
      const at::Tensor a = cpu::sample_tokens_cpu(logits, u, 0.8);
      const at::Tensor b = in_every_schedule([&] { return emu::sample_tokens_cuda(logits, u, 0.8); }, "sample");
      EXPECT_LE(a.ne(b).sum().item<int64_t>(), 1) << "V " << V << " " << dtype;
      EXPECT_TRUE((b >= 0).logical_and(b < V).all().item<bool>()) << "V " << V;
    }
  }
  // A draw at u near 1 lands on the last token of positive weight, never on a -inf one.
  at::Tensor row = at::full({2, 700}, -INFINITY);
  row[0][10] = 1.0;
  row[0][650] = 0.5;
  row[1][3] = 0.0;
  const at::Tensor t = emu::sample_tokens_cuda(row, at::tensor({1.0 - 1e-16, 0.999999}, at::kDouble), 1.0);
  EXPECT_EQ(t[0].item<int64_t>(), 650);
  EXPECT_EQ(t[1].item<int64_t>(), 3);
  at::Tensor bad = at::randn({3, 500});
  bad[1][7] = NAN;
  const at::Tensor nan_draw = emu::sample_tokens_cuda(bad, at::rand({3}, at::kDouble), 1.0);
  EXPECT_EQ(nan_draw[1].item<int64_t>(), -1);
  EXPECT_GE(nan_draw[0].item<int64_t>(), 0);
  EXPECT_GE(nan_draw[2].item<int64_t>(), 0);
}

// token_logprobs forward and backward: the warp-per-row (V <= 4096) and block-per-row kernels against
// the CPU reference, with ignored targets (-100), odd V and strided rows.
TEST(EmulatedKernels, TokenLogprobsForwardAndBackwardMatchTheCpuReference) {
  at::manual_seed(11);
  struct Case {
    int64_t n, v, offset;
  };
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    const double tol = dtype == at::kFloat ? 1e-5 : 1e-2;
    for (const Case c : {Case{1, 1, 0}, Case{5, 7, 0}, Case{9, 4096, 0}, Case{9, 4097, 1}, Case{3, 32000, 3},
                         Case{2, 151936, 0}, Case{40, 129, 1}}) {
      const at::Tensor wide = (at::randn({c.n, c.v + c.offset}) * 3).to(dtype);
      const at::Tensor logits = wide.slice(1, c.offset, c.offset + c.v);
      const at::Tensor targets = random_targets(c.n, c.v);
      const std::string where = "N=" + std::to_string(c.n) + " V=" + std::to_string(c.v) + " " + c10::toString(dtype);
      auto [lp_a, h_a, lse_a] = cpu::token_logprobs_forward_cpu(logits, targets, 0.7, true);
      auto [lp_b, h_b, lse_b] =
          in_every_schedule([&] { return emu::token_logprobs_forward_cuda(logits, targets, 0.7, true); }, where);
      EXPECT_LE(relative_error(lp_b, lp_a), tol) << where;
      EXPECT_LE(relative_error(h_b, h_a), tol) << where;
      EXPECT_LE(relative_error(lse_b, lse_a), tol) << where;
      const at::Tensor g_logp = at::randn({c.n}), g_entropy = at::randn({c.n});
      const at::Tensor grad_a = cpu::token_logprobs_backward_cpu(g_logp, g_entropy, logits, targets, lse_a, h_a, 0.7);
      const at::Tensor grad_b = in_every_schedule(
          [&] { return emu::token_logprobs_backward_cuda(g_logp, g_entropy, logits, targets, lse_b, h_b, 0.7); }, where);
      EXPECT_LE(relative_error(grad_b, grad_a), tol) << where;
      const at::Tensor only_logp = emu::token_logprobs_backward_cuda(g_logp, at::Tensor(), logits, targets, lse_b, h_b, 0.7);
      EXPECT_LE(relative_error(only_logp, cpu::token_logprobs_backward_cpu(g_logp, at::Tensor(), logits, targets, lse_a,
                                                                           h_a, 0.7)),
                tol)
          << where << " logp gradient only";
    }
  }
}

// group_advantages: one block over every group (more groups than threads), NaN rewards, 0/1 groups,
// every mode and scale.
TEST(EmulatedKernels, GroupAdvantagesMatchTheCpuReference) {
  at::manual_seed(13);
  using cpu::AdvantageMode;
  using cpu::RewardScale;
  for (const int64_t g : {int64_t{1}, int64_t{2}, int64_t{8}}) {
    at::Tensor r = at::randn({300 * g});
    r.masked_fill_(at::rand({300 * g}) < 0.05, NAN);
    r.slice(0, 0, 30 * g).copy_((at::rand({30 * g}) < 0.5).to(at::kFloat));
    for (const AdvantageMode mode : {AdvantageMode::kGrpo, AdvantageMode::kDrGrpo, AdvantageMode::kRloo,
                                     AdvantageMode::kReinforcePP}) {
      for (const RewardScale scale : {RewardScale::kGroup, RewardScale::kBatch, RewardScale::kNone}) {
        auto [a, m, s, z] = cpu::group_advantages_cpu(r, g, mode, 1e-4, scale);
        auto [ea, em, es, ez] = in_every_schedule([&] { return emu::group_advantages_cuda(r, g, mode, 1e-4, scale); },
                                                  "group_advantages");
        const std::string where = "G=" + std::to_string(g) + " mode " + std::to_string(static_cast<int>(mode)) +
                                  " scale " + std::to_string(static_cast<int>(scale));
        EXPECT_LE(relative_error(ea, a), 1e-6) << where;
        EXPECT_TRUE(at::allclose(em, m, 1e-6, 1e-6, /*equal_nan=*/true)) << where;
        EXPECT_TRUE(at::allclose(es, s, 1e-6, 1e-6, /*equal_nan=*/true)) << where;
        EXPECT_TRUE(at::equal(ez, z)) << where;
      }
    }
  }
}

TEST(EmulatedKernels, DecodeAttentionMatchesTheFloat64FormulaAndRopeKvWrite) {
  at::manual_seed(47);
  c10::NoGradGuard no_grad;
  struct Shape {
    int64_t B, H, KV, D, S, slot, masked_prefix;
    int mask_kind;  // 0 per row, 1 broadcast, 2 none
  };
  const std::vector<Shape> shapes = {{4, 14, 2, 64, 48, 17, 0, 0}, {1, 8, 8, 128, 700, 699, 350, 0},
                                     {2, 16, 1, 256, 20, 5, 2, 1}, {2, 4, 2, 10, 33, 0, 0, 2},
                                     {2, 14, 2, 64, 50, 50, 3, 0},  {2, 8, 2, 32, 600, 300, 40, 1}};
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    for (const Shape& sh : shapes) {
      const int64_t B = sh.B, H = sh.H, KV = sh.KV, D = sh.D, S = sh.S;
      const at::Tensor qkv = at::randn({B, 1, (H + 2 * KV) * D}).to(dtype).view({B, 1, H + 2 * KV, D}).transpose(1, 2);
      const at::Tensor cos = at::randn({B, 1, 1, D}).to(dtype), sin = at::randn({B, 1, 1, D}).to(dtype);
      const at::Tensor k0 = at::randn({B, KV, S, D}).to(dtype), v0 = at::randn({B, KV, S, D}).to(dtype);
      at::Tensor valid = at::ones({sh.mask_kind == 1 ? 1 : B, 1, 1, S}, at::kBool);
      valid.narrow(-1, 0, sh.masked_prefix).fill_(false);
      if (sh.slot < S) valid.narrow(-1, sh.slot, 1).fill_(true);
      const at::Tensor mask =
          sh.mask_kind == 2 ? at::Tensor() : at::zeros(valid.sizes(), dtype).masked_fill_(valid.logical_not(), -INFINITY);
      const std::optional<at::Tensor> mask_opt = mask.defined() ? std::optional<at::Tensor>(mask) : std::nullopt;
      const double scale = 1.0 / std::sqrt(static_cast<double>(D));
      const at::Tensor slot = at::full({1}, sh.slot, at::kLong);
      const std::string where = std::string(c10::toString(dtype)) + " B=" + std::to_string(B) + " H=" +
                                std::to_string(H) + " KV=" + std::to_string(KV) + " D=" + std::to_string(D) +
                                " S=" + std::to_string(S) + " slot=" + std::to_string(sh.slot);
      at::Tensor k, v;
      const at::Tensor out = in_every_schedule(
          [&] {
            k = k0.clone(), v = v0.clone();
            return emu::decode_attention_cuda(qkv, cos, sin, k, v, slot, mask_opt, H, scale);
          },
          where);
      at::Tensor k_ref = k0.clone(), v_ref = v0.clone(), q;
      if (sh.slot < S) {
        q = scorch::rope_kv_write(qkv, cos, sin, k_ref, v_ref, slot, H);
      } else {
        q = scorch::fused_rope(qkv.narrow(1, 0, H), cos, sin);
      }
      ASSERT_EQ(out.sizes(), (std::vector<int64_t>{B, 1, H * D})) << where;
      EXPECT_TRUE(at::equal(k, k_ref)) << where;
      EXPECT_TRUE(at::equal(v, v_ref)) << where;
      const double e = relative_error(out, scorch::test::decode_attention_f64(q, k_ref, v_ref, mask, scale));
      EXPECT_LE(e, dtype == at::kFloat ? 1e-5 : 1.6e-2) << where;
    }
  }
}

}  // namespace

// CUDA kernels against the CPU reference (label gpu; every test skips without a CUDA device):
// values and gradients on awkward shapes and alignments, every output element written (outputs are
// poisoned with NaN first), group_advantages on the device, and the memory promise of the fused
// forward + backward (peak extra memory <= the logits' size, where the eager formula needs ~4x).
#include "kernels/ops.h"
#include "tests/kernels/kernel_test_util.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>

#ifdef SCORCH_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

namespace {

using scorch::test::random_targets;
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

#ifdef SCORCH_WITH_CUDA
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

// group_advantages, CUDA: the same rules as the CPU reference (group_advantages_cpu.cpp), so rewards
// computed on the device never make a round trip to the host. B * G is small (prompts x
// generations), so one block does everything: each thread owns whole groups, batch statistics are
// block reductions in double, and there is no inter-block synchronisation to get wrong.
#include "kernels/cuda_compat.cuh"
#include "kernels/ops_impl.h"

#include <ATen/ops/empty.h>

namespace scorch::kernels {
namespace {

constexpr int kThreads = 256;

struct GroupStats {
  int count;
  double sum, mean, std;
};

__device__ GroupStats group_stats(const float* r, int g) {
  GroupStats s{0, 0.0, nan(""), nan("")};
  for (int i = 0; i < g; ++i)
    if (!isnan(r[i])) ++s.count, s.sum += r[i];
  if (s.count == 0) return s;
  s.mean = s.sum / s.count;
  double squares = 0.0;
  for (int i = 0; i < g; ++i)
    if (!isnan(r[i])) squares += (r[i] - s.mean) * (r[i] - s.mean);
  s.std = s.count >= 2 ? sqrt(squares / (s.count - 1)) : 0.0;
  return s;
}

// Sum over the block; every thread gets the result.
__device__ double block_sum(double v) {
  __shared__ double partial[kThreads];
  partial[threadIdx.x] = v;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
  const double total = partial[0];
  __syncthreads();  // partial is reused by the next call
  return total;
}

// The value a valid reward contributes to the batch std: raw (grpo, scale batch) or group-centred
// (reinforce_pp).
__device__ double batch_value(float x, const GroupStats& s, bool centred) { return centred ? x - s.mean : x; }

__global__ void __launch_bounds__(kThreads)
    group_advantages_kernel(const float* __restrict__ rewards, int64_t groups, int g, AdvantageMode mode,
                            RewardScale scale, double eps, float* __restrict__ advantages, float* __restrict__ mean,
                            float* __restrict__ std, bool* __restrict__ zero_std) {
  const bool centred = mode == AdvantageMode::kReinforcePP;
  const bool batch_scaled = (mode == AdvantageMode::kGrpo && scale == RewardScale::kBatch) || centred;
  double batch_divisor = 1.0;
  if (batch_scaled) {  // two-pass unbiased std over every valid reward of the batch
    double sum = 0.0, count = 0.0;
    for (int64_t b = threadIdx.x; b < groups; b += kThreads) {
      const float* r = rewards + b * g;
      const GroupStats s = group_stats(r, g);
      for (int i = 0; i < g; ++i)
        if (!isnan(r[i])) sum += batch_value(r[i], s, centred), count += 1.0;
    }
    const double n = block_sum(count);
    const double batch_mean = block_sum(sum) / fmax(n, 1.0);
    double squares = 0.0;
    for (int64_t b = threadIdx.x; b < groups; b += kThreads) {
      const float* r = rewards + b * g;
      const GroupStats s = group_stats(r, g);
      for (int i = 0; i < g; ++i)
        if (!isnan(r[i])) {
          const double d = batch_value(r[i], s, centred) - batch_mean;
          squares += d * d;
        }
    }
    const double total_squares = block_sum(squares);
    batch_divisor = (n >= 2.0 ? sqrt(total_squares / (n - 1.0)) : 0.0) + eps;
  }
  for (int64_t b = threadIdx.x; b < groups; b += kThreads) {
    const float* r = rewards + b * g;
    const GroupStats s = group_stats(r, g);
    mean[b] = static_cast<float>(s.mean);
    std[b] = static_cast<float>(s.std);
    zero_std[b] = s.count < 2 || s.std <= kZeroStdTolerance;
    double divisor = 1.0;
    if (mode == AdvantageMode::kGrpo && scale == RewardScale::kGroup) divisor = s.std + eps;
    if (batch_scaled) divisor = batch_divisor;
    for (int i = 0; i < g; ++i) {
      const float x = r[i];
      double adv = 0.0;
      if (!isnan(x) && s.count >= 2) {
        const double baseline = mode == AdvantageMode::kRloo ? (s.sum - x) / (s.count - 1) : s.mean;
        adv = (x - baseline) / divisor;
      }
      advantages[b * g + i] = static_cast<float>(adv);
    }
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> group_advantages_cuda(
    const at::Tensor& rewards_in, int64_t group_size, AdvantageMode mode, double eps, RewardScale scale) {
  const int64_t groups = check_group_advantages_inputs(rewards_in, group_size, eps);
  TORCH_CHECK(group_size < (int64_t{1} << 31), "scorch::group_advantages: group_size too large");
  const c10::cuda::CUDAGuard guard(rewards_in.device());
  const at::Tensor rewards = rewards_in.contiguous();
  at::Tensor advantages = at::empty({rewards.numel()}, rewards.options());
  at::Tensor mean = at::empty({groups}, rewards.options());
  at::Tensor std = at::empty({groups}, rewards.options());
  at::Tensor zero_std = at::empty({groups}, rewards.options().dtype(at::kBool));
  if (groups == 0) return {advantages, mean, std, zero_std};
  SCORCH_LAUNCH(1, kThreads, 0, c10::cuda::getCurrentCUDAStream(), group_advantages_kernel)(
      rewards.const_data_ptr<float>(), groups, static_cast<int>(group_size), mode, scale, eps,
      advantages.data_ptr<float>(), mean.data_ptr<float>(), std.data_ptr<float>(), zero_std.data_ptr<bool>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {advantages, mean, std, zero_std};
}

}  // namespace scorch::kernels

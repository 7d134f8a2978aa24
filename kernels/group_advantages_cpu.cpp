// group_advantages, CPU reference (ALGORITHMS.md §4): plain loops in double, one group at a time,
// because the NaN rules are easiest to read that way. B * G is small (prompts x generations), so
// this is never a hot path; the CUDA version exists only to keep rewards on the device.
// Rules shared with the CUDA kernel (kernels/ops.h has the user-facing contract):
//   - statistics use the group's valid (non-NaN) rewards only; std is unbiased (n - 1);
//   - a NaN reward, or any reward of a group with fewer than two valid rewards, gets advantage 0;
//   - batch statistics ("grpo" + scale "batch": std of the raw rewards; "reinforce_pp": std of the
//     group-centred values) use every valid reward of the batch; with fewer than two they are 0.
#include "kernels/ops_impl.h"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>
#include <vector>

namespace scorch::kernels {
namespace {

struct GroupStats {
  int64_t count = 0;  // valid rewards
  double sum = 0.0;
  double mean = std::numeric_limits<double>::quiet_NaN();
  double std = std::numeric_limits<double>::quiet_NaN();
};

GroupStats group_stats(const float* r, int64_t g) {
  GroupStats s;
  for (int64_t i = 0; i < g; ++i)
    if (!std::isnan(r[i])) ++s.count, s.sum += r[i];
  if (s.count == 0) return s;
  s.mean = s.sum / static_cast<double>(s.count);
  double squares = 0.0;
  for (int64_t i = 0; i < g; ++i)
    if (!std::isnan(r[i])) squares += (r[i] - s.mean) * (r[i] - s.mean);
  s.std = s.count >= 2 ? std::sqrt(squares / static_cast<double>(s.count - 1)) : 0.0;
  return s;
}

// Unbiased std of a list of values (two passes); 0 for fewer than two values, as TRL.
double unbiased_std(const std::vector<double>& v) {
  if (v.size() < 2) return 0.0;
  double mean = 0.0;
  for (double x : v) mean += x;
  mean /= static_cast<double>(v.size());
  double squares = 0.0;
  for (double x : v) squares += (x - mean) * (x - mean);
  return std::sqrt(squares / static_cast<double>(v.size() - 1));
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> group_advantages_cpu(
    const at::Tensor& rewards_in, int64_t group_size, AdvantageMode mode, double eps, RewardScale scale) {
  const int64_t groups = check_group_advantages_inputs(rewards_in, group_size, eps);
  const at::Tensor rewards = rewards_in.contiguous();
  const float* r = rewards.const_data_ptr<float>();
  const int64_t g = group_size;

  std::vector<GroupStats> stats(groups);
  for (int64_t b = 0; b < groups; ++b) stats[b] = group_stats(r + b * g, g);

  // The one batch-wide divisor, for the modes that have one.
  double batch_divisor = 1.0;
  const bool batch_scaled = (mode == AdvantageMode::kGrpo && scale == RewardScale::kBatch) ||
                            mode == AdvantageMode::kReinforcePP;
  if (batch_scaled) {
    std::vector<double> values;
    for (int64_t b = 0; b < groups; ++b)
      for (int64_t i = 0; i < g; ++i) {
        const float x = r[b * g + i];
        if (std::isnan(x)) continue;
        values.push_back(mode == AdvantageMode::kReinforcePP ? x - stats[b].mean : static_cast<double>(x));
      }
    batch_divisor = unbiased_std(values) + eps;
  }

  at::Tensor advantages = at::empty({groups * g}, rewards.options());
  at::Tensor mean = at::empty({groups}, rewards.options());
  at::Tensor std = at::empty({groups}, rewards.options());
  at::Tensor zero_std = at::empty({groups}, rewards.options().dtype(at::kBool));
  float* a = advantages.data_ptr<float>();
  for (int64_t b = 0; b < groups; ++b) {
    const GroupStats& s = stats[b];
    mean.data_ptr<float>()[b] = static_cast<float>(s.mean);
    std.data_ptr<float>()[b] = static_cast<float>(s.std);
    zero_std.data_ptr<bool>()[b] = s.count < 2 || s.std <= kZeroStdTolerance;
    double divisor = 1.0;
    if (mode == AdvantageMode::kGrpo && scale == RewardScale::kGroup) divisor = s.std + eps;
    if (batch_scaled) divisor = batch_divisor;
    for (int64_t i = 0; i < g; ++i) {
      const float x = r[b * g + i];
      double adv = 0.0;
      if (!std::isnan(x) && s.count >= 2) {
        const double baseline =
            mode == AdvantageMode::kRloo ? (s.sum - x) / static_cast<double>(s.count - 1) : s.mean;
        adv = (x - baseline) / divisor;
      }
      a[b * g + i] = static_cast<float>(adv);
    }
  }
  return {advantages, mean, std, zero_std};
}

}  // namespace scorch::kernels

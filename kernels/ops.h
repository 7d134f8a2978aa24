// scorch's custom ops, as plain C++ functions (DESIGN.md "Kernels contract").
// Each call goes through the PyTorch dispatcher, so it picks the CPU reference or the CUDA kernel
// from the device of its inputs, and token_logprobs is differentiable (autograd registration).
// The same ops are torch.ops.scorch.* in Python once libscorch_ops.so is loaded (kernels/README.md).
// This header is deliberately light: it must stay cheap for every trainer file that includes it.
#pragma once
#include <ATen/core/Tensor.h>
#include <string>
#include <tuple>

namespace scorch {

// Per-token log-probabilities of the targets under softmax(logits / temperature), fused:
// one pass over each row (online max / sum-exp in fp32), no fp32 copy of the logits, and a backward
// that recomputes the softmax from the saved per-row log-sum-exp and writes the gradient directly in
// the logits' dtype (the only [N, V] allocation of forward + backward is that gradient).
//   logits  [N, V] bf16 | fp16 | fp32, last dimension contiguous (rows may be strided)
//   targets [N] int64; a target < 0 (the ignore index -100) gives logp 0 and no logp gradient
// Returns
//   logp    [N] fp32  log softmax(logits / T)[target]
//   entropy [N] fp32  -sum_v p log p of softmax(logits / T) when with_entropy, else an empty tensor.
//           Entropy does not depend on the target, so it is computed (and differentiated) for every
//           row, ignored rows included: masking it is the caller's business, as for any per-token value.
// Errors: temperature <= 0, a non-contiguous last dimension, V == 0, targets of the wrong shape or
// dtype, a target >= V (on CUDA such a row gives a NaN logp instead: checking would need a sync).
// Differentiable once (its backward is not itself differentiable: no double backward).
std::tuple<at::Tensor, at::Tensor> token_logprobs(const at::Tensor& logits, const at::Tensor& targets,
                                                  double temperature = 1.0, bool with_entropy = false);

// Group-relative advantages (ALGORITHMS.md §4) for rewards laid out group by group:
//   rewards [B * G] fp32, group_size G (the G completions of one prompt are adjacent).
// mode
//   "grpo"         A = r - mean_group, divided according to `scale` (TRL's scale_rewards):
//                  "group" (default) by (unbiased group std + eps), "batch" by (unbiased std of all
//                  rewards in the batch + eps), "none" not at all.
//   "dr_grpo"      A = r - mean_group (never scaled; `scale` is not used).
//   "rloo"         A = r - mean of the other rewards of the group (never scaled).
//   "reinforce_pp" A = (r - mean_group) / (unbiased batch std of the group-centred values + eps).
// NaN rewards (unscorable samples) are left out of every statistic and get advantage 0; a group with
// fewer than two valid rewards (a singleton group, G = 1) gives advantage 0 to all its samples.
// Returns
//   advantages [B * G] fp32
//   group_mean [B] fp32  mean of the group's valid rewards (NaN when it has none)
//   group_std  [B] fp32  unbiased std of the group's valid rewards (0 with one valid reward,
//                        NaN with none) — what TRL logs as reward_std
//   zero_std   [B] bool  std <= 1e-8 or fewer than two valid rewards: the group teaches nothing
//                        (its mean is TRL's frac_reward_zero_std)
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> group_advantages(
    const at::Tensor& rewards, int64_t group_size, const std::string& mode = "grpo", double eps = 1e-4,
    const std::string& scale = "group");

}  // namespace scorch

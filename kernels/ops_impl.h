// Internal interface between the op registration (register.cpp) and the device implementations
// (*_cpu.cpp, *_cuda.cu). Not for callers: they use kernels/ops.h. Shapes as in ops.h; an undefined
// at::Tensor stands for "not given" (an absent gradient).
#pragma once
#include <ATen/core/Tensor.h>
#include <string>
#include <tuple>

namespace scorch::kernels {

// --- token_logprobs --------------------------------------------------------------------------
// Validates shapes, dtypes, strides and the temperature (shared by every device).
void check_token_logprobs_inputs(const at::Tensor& logits, const at::Tensor& targets, double temperature);

// Forward: (logp [N] fp32, entropy [N] fp32 or empty [0], lse [N] fp32 = logsumexp(logits / T)).
std::tuple<at::Tensor, at::Tensor, at::Tensor> token_logprobs_forward_cpu(
    const at::Tensor& logits, const at::Tensor& targets, double temperature, bool with_entropy);
// Backward: grad_logits [N, V] in logits' dtype, contiguous. grad_logp / grad_entropy may be
// undefined (that output did not reach the loss); entropy is needed only with grad_entropy.
at::Tensor token_logprobs_backward_cpu(const at::Tensor& grad_logp, const at::Tensor& grad_entropy,
                                       const at::Tensor& logits, const at::Tensor& targets,
                                       const at::Tensor& lse, const at::Tensor& entropy, double temperature);

#ifdef SCORCH_WITH_CUDA
std::tuple<at::Tensor, at::Tensor, at::Tensor> token_logprobs_forward_cuda(
    const at::Tensor& logits, const at::Tensor& targets, double temperature, bool with_entropy);
at::Tensor token_logprobs_backward_cuda(const at::Tensor& grad_logp, const at::Tensor& grad_entropy,
                                        const at::Tensor& logits, const at::Tensor& targets,
                                        const at::Tensor& lse, const at::Tensor& entropy, double temperature);
#endif

// --- group_advantages ------------------------------------------------------------------------
enum class AdvantageMode { kGrpo, kDrGrpo, kRloo, kReinforcePP };
enum class RewardScale { kGroup, kBatch, kNone };
AdvantageMode parse_advantage_mode(const std::string& mode);  // throws naming the valid values
RewardScale parse_reward_scale(const std::string& scale);
// Validates rewards [B*G] fp32 and G >= 1 dividing it; returns B.
int64_t check_group_advantages_inputs(const at::Tensor& rewards, int64_t group_size, double eps);

// A group whose unbiased std is at most this is "zero std" (torch.isclose(std, 0)'s atol, as TRL).
constexpr double kZeroStdTolerance = 1e-8;

// (advantages [B*G], group_mean [B], group_std [B], zero_std [B] bool)
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> group_advantages_cpu(
    const at::Tensor& rewards, int64_t group_size, AdvantageMode mode, double eps, RewardScale scale);
#ifdef SCORCH_WITH_CUDA
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> group_advantages_cuda(
    const at::Tensor& rewards, int64_t group_size, AdvantageMode mode, double eps, RewardScale scale);
#endif

}  // namespace scorch::kernels

// Internal interface between the op registration (register.cpp) and the device implementations
// (*_cpu.cpp, *_cuda.cu). Not for callers: they use kernels/ops.h. Shapes as in ops.h; an undefined
// at::Tensor stands for "not given" (an absent gradient).
#pragma once
#include <ATen/core/Tensor.h>
#include <optional>
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


// token_logprobs' forward and backward through the dispatcher (the inputs' device kernel; register.cpp).
std::tuple<at::Tensor, at::Tensor, at::Tensor> token_logprobs_forward_dispatch(const at::Tensor& logits,
                                                                               const at::Tensor& targets,
                                                                               double temperature, bool with_entropy);
at::Tensor token_logprobs_backward_dispatch(const std::optional<at::Tensor>& grad_logp,
                                            const std::optional<at::Tensor>& grad_entropy, const at::Tensor& logits,
                                            const at::Tensor& targets, const at::Tensor& lse,
                                            const at::Tensor& entropy, double temperature);

// --- lm_head_logprobs (lm_head_logprobs.cpp; device-generic ATen over the token_logprobs kernels) ---
void check_lm_head_logprobs_inputs(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
                                   double temperature, int64_t chunk, double softcap);
// Rows of hidden per chunk: `chunk` when > 0, else about 2^25 logits per chunk.
int64_t lm_head_chunk_rows(int64_t chunk, int64_t vocab);
// One chunk's logits as token_logprobs reads them: h [R, H] x weight [V, H]^T in the inputs' dtype,
// soft-capped (c tanh(z / c)) in fp32 when cap > 0.
at::Tensor lm_head_chunk_logits(const at::Tensor& h, const at::Tensor& weight, double cap);
// The gradient with respect to the chunk's pre-cap logits, in `dtype`, from the gradients of its logp
// and entropy (token_logprobs' backward kernel, times the soft cap's derivative when cap > 0).
at::Tensor lm_head_chunk_grad_logits(const std::optional<at::Tensor>& grad_logp,
                                     const std::optional<at::Tensor>& grad_entropy, const at::Tensor& z,
                                     const at::Tensor& targets, const at::Tensor& lse, const at::Tensor& entropy,
                                     double temperature, double cap, at::ScalarType dtype);
// Forward: (logp [N] fp32, entropy [N] fp32 or empty [0], lse [N] fp32 of the (capped) logits / T).
std::tuple<at::Tensor, at::Tensor, at::Tensor> lm_head_logprobs_forward(const at::Tensor& hidden,
                                                                        const at::Tensor& weight,
                                                                        const at::Tensor& targets, double temperature,
                                                                        bool with_entropy, int64_t chunk,
                                                                        double softcap);
// The same, also returning E [N, H] = softmax(logits / T) @ weight per row (in hidden's dtype), for a
// frozen weight: then d logp / d hidden = (weight[target] − E) / T needs no second pass over the
// vocabulary (lm_head_logprobs_frozen_grad_hidden). No soft cap (its derivative varies per logit).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> lm_head_logprobs_forward_expectation(
    const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets, double temperature,
    bool with_entropy, int64_t chunk);
// grad_hidden [N, H] = grad_logp · (weight[target] − E) / T, 0 where the target is −100.
at::Tensor lm_head_logprobs_frozen_grad_hidden(const at::Tensor& grad_logp, const at::Tensor& weight,
                                               const at::Tensor& targets, const at::Tensor& expectation,
                                               double temperature);
// Backward: (grad_hidden [N, H], grad_weight [V, H]) in the inputs' dtype, each undefined unless
// asked for; grad_logp / grad_entropy may be undefined (that output did not reach the loss).
std::tuple<at::Tensor, at::Tensor> lm_head_logprobs_backward(const at::Tensor& grad_logp,
                                                             const at::Tensor& grad_entropy,
                                                             const at::Tensor& hidden, const at::Tensor& weight,
                                                             const at::Tensor& targets, const at::Tensor& lse,
                                                             const at::Tensor& entropy, double temperature,
                                                             int64_t chunk, double softcap, bool need_hidden,
                                                             bool need_weight);

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

// --- decode-step ops: fused_rms_norm, fused_add_rms_norm, fused_rope, silu_and_mul, rope_kv_write,
// decode_attention ------------------------------------------------------------------------------
// Inference-only (no backward); shapes and numerics in ops.h. The checks (register.cpp) are shared by
// every device and name the op in their messages.

// AT_DISPATCH over the three dtypes of the decode ops (with <ATen/Dispatch.h>; no float64 instance).
#define SCORCH_DISPATCH_DECODE_TYPES(TYPE, NAME, ...)                                          \
  AT_DISPATCH_SWITCH(TYPE, NAME, AT_DISPATCH_CASE(at::kFloat, __VA_ARGS__)                     \
                                     AT_DISPATCH_CASE(at::kBFloat16, __VA_ARGS__)              \
                                         AT_DISPATCH_CASE(at::kHalf, __VA_ARGS__))

// x as rows [R, N] (N = x.size(-1)) with stride 1 along N: a view when x's layout allows one, else a
// contiguous copy (never for the layouts the model produces).
at::Tensor as_rows(const at::Tensor& x);
// op names the caller in the messages ("fused_rms_norm" or "fused_add_rms_norm").
void check_rms_norm_inputs(const char* op, const at::Tensor& x, const at::Tensor& weight, double eps);
void check_add_rms_norm_inputs(const at::Tensor& h, const at::Tensor& delta, const at::Tensor& weight, double eps);
void check_rope_inputs(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);
void check_silu_and_mul_inputs(const at::Tensor& gu);

// Strides of cos / sin over (B, T) in elements: 0 along a broadcast (size-1) dimension.
struct RopeTableStrides {
  int64_t batch, time;
};
RopeTableStrides rope_table_strides(const at::Tensor& table);

at::Tensor fused_rms_norm_cpu(const at::Tensor& x, const at::Tensor& weight, double eps);
std::tuple<at::Tensor, at::Tensor> fused_add_rms_norm_cpu(const at::Tensor& h, const at::Tensor& delta,
                                                          const at::Tensor& weight, double eps);
at::Tensor fused_rope_cpu(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);
at::Tensor silu_and_mul_cpu(const at::Tensor& gu);
at::Tensor silu_mul_cpu(const at::Tensor& gate, const at::Tensor& up);

// --- the fused ops' backward (train_ops_cpu.cpp, train_ops_cuda.cu) ------------------------------
// The gradients in fp32 from the saved inputs, rounded once to the dtype; outputs contiguous.
void check_silu_mul_inputs(const at::Tensor& gate, const at::Tensor& up);
void check_silu_mul_backward_inputs(const at::Tensor& grad, const at::Tensor& gate, const at::Tensor& up);
void check_rms_norm_backward_inputs(const at::Tensor& grad_y, const at::Tensor& x, const at::Tensor& weight,
                                    double eps, const std::optional<at::Tensor>& grad_residual);
// RMSNorm y = w dtype(h r) of x [..., N]: (grad_x [..., N], grad_weight [N] or undefined unless
// need_weight_grad). grad_residual [..., N] (optional) is added to grad_x in fp32 before its rounding.
std::tuple<at::Tensor, at::Tensor> fused_rms_norm_backward_cpu(const at::Tensor& grad_y, const at::Tensor& x,
                                                               const at::Tensor& weight, double eps,
                                                               const std::optional<at::Tensor>& grad_residual,
                                                               bool need_weight_grad);
// RoPE's gradient with respect to x for grad [B, M, T, D] (strides as fused_rope's x) -> [B, M, T, D].
at::Tensor fused_rope_backward_cpu(const at::Tensor& grad, const at::Tensor& cos, const at::Tensor& sin);
// silu(gate) * up: (grad_gate, grad_up), each [..., I].
std::tuple<at::Tensor, at::Tensor> silu_mul_backward_cpu(const at::Tensor& grad, const at::Tensor& gate,
                                                         const at::Tensor& up);
// Validates rope_kv_write's arguments (op names the caller in the messages: decode_attention takes
// the same ones); returns the number of KV heads.
int64_t check_rope_kv_write_inputs(const at::Tensor& qkv, const at::Tensor& cos, const at::Tensor& sin,
                                   const at::Tensor& k_cache, const at::Tensor& v_cache, const at::Tensor& slot,
                                   int64_t q_heads, const char* op = "rope_kv_write");
at::Tensor rope_kv_write_cpu(const at::Tensor& qkv, const at::Tensor& cos, const at::Tensor& sin, at::Tensor& k_cache,
                             at::Tensor& v_cache, const at::Tensor& slot, int64_t q_heads);
// decode_attention's limits (ops.h) and argument checks; returns the number of KV heads.
constexpr int64_t kDecodeAttentionMaxGroup = 16;
constexpr int64_t kDecodeAttentionMaxHeadDim = 256;
int64_t check_decode_attention_inputs(const at::Tensor& qkv, const at::Tensor& cos, const at::Tensor& sin,
                                      const at::Tensor& k_cache, const at::Tensor& v_cache, const at::Tensor& slot,
                                      const std::optional<at::Tensor>& mask, int64_t q_heads, double scale);
at::Tensor decode_attention_cpu(const at::Tensor& qkv, const at::Tensor& cos, const at::Tensor& sin,
                                at::Tensor& k_cache, at::Tensor& v_cache, const at::Tensor& slot,
                                const std::optional<at::Tensor>& mask, int64_t q_heads, double scale);

// --- sample_tokens ----------------------------------------------------------------------------
void check_sample_tokens_inputs(const at::Tensor& logits, const at::Tensor& uniforms, double temperature);
at::Tensor sample_tokens_cpu(const at::Tensor& logits, const at::Tensor& uniforms, double temperature);

// The CUDA implementations (*_cuda.cu; also compiled for the CPU emulation, tests/kernels/emulated/).
#ifdef SCORCH_WITH_CUDA
#include "kernels/cuda_entry_points.inc"
#endif

}  // namespace scorch::kernels

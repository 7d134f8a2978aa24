// The CUDA implementations of kernels/ (kernels/ops_impl.h's *_cuda functions) compiled for the CPU
// emulation of kernels/cuda_emulation.h: they take CPU tensors and run the CUDA kernels' code as
// emulated blocks of threads. For tests only (tests/kernels/test_kernels_emulated.cpp).
#pragma once
#include <ATen/core/Tensor.h>

#include <optional>
#include <string>
#include <tuple>

#include "kernels/ops_impl.h"

namespace scorch::kernels_emulated {

at::Tensor decode_attention_cuda(const at::Tensor& qkv, const at::Tensor& cos, const at::Tensor& sin,
                                 at::Tensor& k_cache, at::Tensor& v_cache, const at::Tensor& slot,
                                 const std::optional<at::Tensor>& mask, int64_t q_heads, double scale);
at::Tensor rope_kv_write_cuda(const at::Tensor& qkv, const at::Tensor& cos, const at::Tensor& sin, at::Tensor& k_cache,
                              at::Tensor& v_cache, const at::Tensor& slot, int64_t q_heads);
at::Tensor fused_rms_norm_cuda(const at::Tensor& x, const at::Tensor& weight, double eps);
std::tuple<at::Tensor, at::Tensor> fused_add_rms_norm_cuda(const at::Tensor& h, const at::Tensor& delta,
                                                           const at::Tensor& weight, double eps);
at::Tensor fused_rope_cuda(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);
at::Tensor silu_and_mul_cuda(const at::Tensor& gu);
at::Tensor sample_tokens_cuda(const at::Tensor& logits, const at::Tensor& uniforms, double temperature);
std::tuple<at::Tensor, at::Tensor, at::Tensor> token_logprobs_forward_cuda(const at::Tensor& logits,
                                                                           const at::Tensor& targets,
                                                                           double temperature, bool with_entropy);
at::Tensor token_logprobs_backward_cuda(const at::Tensor& grad_logp, const at::Tensor& grad_entropy,
                                        const at::Tensor& logits, const at::Tensor& targets, const at::Tensor& lse,
                                        const at::Tensor& entropy, double temperature);

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> group_advantages_cuda(const at::Tensor& rewards,
                                                                                 int64_t group_size,
                                                                                 kernels::AdvantageMode mode,
                                                                                 double eps, kernels::RewardScale scale);

}  // namespace scorch::kernels_emulated

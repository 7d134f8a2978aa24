// lm_head_logprobs: per-token log-probabilities (and entropy) straight from the final hidden states
// and the LM-head weight, without ever holding the [N, V] logits. Device-generic ATen: the tokens
// are taken in chunks; each chunk's logits are one GEMM (BLAS on the CPU, cuBLAS on CUDA), reduced
// by the token_logprobs kernels of that device (through the dispatcher) and dropped. The backward
// recomputes each chunk's logits from the saved per-row log-sum-exp, gets the chunk's logit gradient
// from token_logprobs' backward kernel and turns it into grad_hidden (one GEMM into its rows) and
// grad_weight (one GEMM per chunk, summed in fp32). At most one chunk of logits and one of their
// gradient exist at a time: 2 x chunk x V values instead of the eager path's several N x V.
// A frozen weight (LoRA, a reference model under grad) takes another route: the forward also
// computes E = softmax(logits / T) @ weight per row (one more GEMM while the chunk is at hand), and
// the backward is grad_logp · (weight[target] − E) / T: two GEMMs in all, as eager's forward and
// grad_hidden, instead of four. The entropy's gradient, when asked for, uses the recomputing path.
// With a soft cap c > 0 the logits are c tanh(z / c) (Gemma 2's final_logit_softcapping), in fp32,
// before the temperature; d/dz = 1 - tanh^2.
#include "kernels/ops_impl.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

namespace scorch::kernels {
namespace {

// Logit values per chunk when the caller leaves the chunk to the op: 2^25 (128 MiB in fp32), e.g.
// 220 tokens at Qwen2's 151,936-token vocabulary, 261 at Llama 3's 128,256 — enough rows that each
// GEMM runs at full speed, few enough that a chunk and its gradient stay small next to the weights.
constexpr int64_t kAutoChunkElements = int64_t{1} << 25;

std::optional<at::Tensor> slice_or_none(const at::Tensor& t, int64_t r0, int64_t r1) {
  if (!t.defined()) return std::nullopt;
  return t.slice(0, r0, r1);
}

}  // namespace

at::Tensor lm_head_chunk_logits(const at::Tensor& h, const at::Tensor& weight, double cap) {
  at::Tensor z = at::mm(h, weight.t());  // [R, V]
  if (cap > 0) z = z.to(at::kFloat).div_(cap).tanh_().mul_(cap);
  return z;
}

at::Tensor lm_head_chunk_grad_logits(const std::optional<at::Tensor>& grad_logp,
                                     const std::optional<at::Tensor>& grad_entropy, const at::Tensor& z,
                                     const at::Tensor& targets, const at::Tensor& lse, const at::Tensor& entropy,
                                     double temperature, double cap, at::ScalarType dtype) {
  at::Tensor g = token_logprobs_backward_dispatch(grad_logp, grad_entropy, z, targets, lse, entropy, temperature);
  if (cap > 0) {  // z is c tanh(x / c) in fp32: d/dx = 1 - (z / c)^2
    g.mul_(1.0 - z.div(cap).square_());
    g = g.to(dtype);
  }
  return g;
}

int64_t lm_head_chunk_rows(int64_t chunk, int64_t vocab) {
  if (chunk > 0) return chunk;
  return std::max<int64_t>(1, kAutoChunkElements / std::max<int64_t>(1, vocab));
}

void check_lm_head_logprobs_inputs(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
                                   double temperature, int64_t chunk, double softcap) {
  const char* op = "scorch::lm_head_logprobs: ";
  TORCH_CHECK(hidden.dim() == 2, op, "hidden must be [N, H], got ", hidden.sizes());
  TORCH_CHECK(weight.dim() == 2, op, "weight must be [V, H], got ", weight.sizes());
  const auto dtype = hidden.scalar_type();
  TORCH_CHECK(dtype == at::kBFloat16 || dtype == at::kHalf || dtype == at::kFloat, op,
              "hidden must be bfloat16, float16 or float32, got ", dtype);
  TORCH_CHECK(weight.scalar_type() == dtype, op, "weight is ", weight.scalar_type(), " but hidden is ", dtype,
              " (one dtype for both)");
  TORCH_CHECK(weight.size(1) == hidden.size(1), op, "weight [V, H] = ", weight.sizes(), " does not match hidden [N, H] = ",
              hidden.sizes(), " in H");
  TORCH_CHECK(weight.size(0) >= 1, op, "the vocabulary dimension is empty");
  TORCH_CHECK(weight.device() == hidden.device(), op, "weight is on ", weight.device(), " but hidden on ",
              hidden.device());
  TORCH_CHECK(targets.dim() == 1 && targets.size(0) == hidden.size(0), op, "targets must be [N] = [",
              hidden.size(0), "], got ", targets.sizes());
  TORCH_CHECK(targets.scalar_type() == at::kLong, op, "targets must be int64, got ", targets.scalar_type());
  TORCH_CHECK(targets.device() == hidden.device(), op, "targets are on ", targets.device(), " but hidden on ",
              hidden.device());
  TORCH_CHECK(std::isfinite(temperature) && temperature > 0.0, op, "temperature must be a positive number, got ",
              temperature);
  TORCH_CHECK(chunk >= 0, op, "chunk must be >= 0 (0 = automatic), got ", chunk);
  TORCH_CHECK(std::isfinite(softcap) && softcap >= 0.0, op, "logit_softcap must be >= 0 (0 = none), got ", softcap);
}

namespace {

// The chunked forward; with `expectation` also E = softmax(logits / T) @ weight per row.
std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_chunks(const at::Tensor& hidden, const at::Tensor& weight,
                                                              const at::Tensor& targets, double temperature,
                                                              bool with_entropy, int64_t chunk, double softcap,
                                                              at::Tensor* expectation) {
  check_lm_head_logprobs_inputs(hidden, weight, targets, temperature, chunk, softcap);
  const int64_t rows = hidden.size(0), vocab = weight.size(0);
  const int64_t step = lm_head_chunk_rows(chunk, vocab);
  const auto f32 = hidden.options().dtype(at::kFloat);
  at::Tensor logp = at::empty({rows}, f32);
  at::Tensor entropy = with_entropy ? at::empty({rows}, f32) : at::empty({0}, f32);
  at::Tensor lse = at::empty({rows}, f32);
  if (expectation) *expectation = at::empty({rows, hidden.size(1)}, hidden.options());
  for (int64_t r0 = 0; r0 < rows; r0 += step) {
    const int64_t r1 = std::min(rows, r0 + step);
    const at::Tensor z = lm_head_chunk_logits(hidden.slice(0, r0, r1), weight, softcap);
    auto [lp, ent, chunk_lse] = token_logprobs_forward_dispatch(z, targets.slice(0, r0, r1), temperature, with_entropy);
    logp.slice(0, r0, r1).copy_(lp);
    lse.slice(0, r0, r1).copy_(chunk_lse);
    if (with_entropy) entropy.slice(0, r0, r1).copy_(ent);
    if (expectation) {
      // softmax(z / T) from the chunk's log-sum-exp, in z's fp32 copy, then one GEMM.
      const at::Tensor p = z.to(at::kFloat).div_(temperature).sub_(chunk_lse.unsqueeze(1)).exp_();
      at::Tensor rows_out = expectation->slice(0, r0, r1);
      at::mm_out(rows_out, p.to(hidden.scalar_type()), weight);
    }
  }
  return {logp, entropy, lse};
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> lm_head_logprobs_forward(const at::Tensor& hidden,
                                                                        const at::Tensor& weight,
                                                                        const at::Tensor& targets, double temperature,
                                                                        bool with_entropy, int64_t chunk,
                                                                        double softcap) {
  return forward_chunks(hidden, weight, targets, temperature, with_entropy, chunk, softcap, nullptr);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> lm_head_logprobs_forward_expectation(
    const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets, double temperature,
    bool with_entropy, int64_t chunk) {
  at::Tensor expectation;
  auto [logp, entropy, lse] = forward_chunks(hidden, weight, targets, temperature, with_entropy, chunk, 0.0, &expectation);
  return {logp, entropy, lse, expectation};
}

at::Tensor lm_head_logprobs_frozen_grad_hidden(const at::Tensor& grad_logp, const at::Tensor& weight,
                                               const at::Tensor& targets, const at::Tensor& expectation,
                                               double temperature) {
  const at::Tensor valid = targets.ge(0);
  const at::Tensor rows = weight.index_select(0, targets.clamp_min(0));  // [N, H]
  const at::Tensor scale = grad_logp.to(at::kFloat).mul(valid).div(temperature).unsqueeze(1);  // [N, 1]
  return rows.to(at::kFloat).sub(expectation.to(at::kFloat)).mul_(scale).to(expectation.scalar_type());
}

std::tuple<at::Tensor, at::Tensor> lm_head_logprobs_backward(const at::Tensor& grad_logp,
                                                             const at::Tensor& grad_entropy,
                                                             const at::Tensor& hidden, const at::Tensor& weight,
                                                             const at::Tensor& targets, const at::Tensor& lse,
                                                             const at::Tensor& entropy, double temperature,
                                                             int64_t chunk, double softcap, bool need_hidden,
                                                             bool need_weight) {
  check_lm_head_logprobs_inputs(hidden, weight, targets, temperature, chunk, softcap);
  const int64_t rows = hidden.size(0), vocab = weight.size(0);
  const int64_t step = lm_head_chunk_rows(chunk, vocab);
  const bool fp32 = hidden.scalar_type() == at::kFloat;
  at::Tensor grad_hidden = need_hidden ? at::empty_like(hidden, at::MemoryFormat::Contiguous) : at::Tensor();
  // fp32 weights accumulate in place; other dtypes in an fp32 buffer cast once at the end.
  at::Tensor grad_weight32 = need_weight ? at::zeros(weight.sizes(), weight.options().dtype(at::kFloat)) : at::Tensor();
  if (!grad_logp.defined() && !grad_entropy.defined()) {
    if (need_hidden) grad_hidden.zero_();
    return {grad_hidden, need_weight ? grad_weight32.to(weight.scalar_type()) : at::Tensor()};
  }
  for (int64_t r0 = 0; r0 < rows; r0 += step) {
    const int64_t r1 = std::min(rows, r0 + step);
    const at::Tensor h = hidden.slice(0, r0, r1);
    const at::Tensor z = lm_head_chunk_logits(h, weight, softcap);
    const at::Tensor g = lm_head_chunk_grad_logits(
        slice_or_none(grad_logp, r0, r1), slice_or_none(grad_entropy, r0, r1), z, targets.slice(0, r0, r1),
        lse.slice(0, r0, r1), entropy.numel() == rows ? entropy.slice(0, r0, r1) : entropy, temperature, softcap,
        hidden.scalar_type());
    if (need_hidden) {
      at::Tensor rows_out = grad_hidden.slice(0, r0, r1);  // [R, H], contiguous
      at::mm_out(rows_out, g, weight);
    }
    if (need_weight) {
      if (fp32) {
        grad_weight32.addmm_(g.t(), h);  // [V, H]
      } else {
        grad_weight32.add_(at::mm(g.t(), h));
      }
    }
  }
  return {grad_hidden, need_weight ? (fp32 ? grad_weight32 : grad_weight32.to(weight.scalar_type())) : at::Tensor()};
}

}  // namespace scorch::kernels

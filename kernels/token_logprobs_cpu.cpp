// token_logprobs, CPU reference. Readable ATen on chunks of rows: each chunk is converted to fp32,
// turned into log-probabilities and reduced, so at most (threads x chunk) fp32 values exist at once
// and never an fp32 copy of the whole [N, V] logits. Chunks run in parallel (at::parallel_for; the
// ATen calls inside a parallel region run single-threaded, so there is no nested parallelism).
// The math (z = logits / T, lse = logsumexp_v z, log p = z - lse):
//   logp    = log p[target]                       (0 where target < 0)
//   entropy = -sum_v p log p
//   d logp / dz_v    = (onehot(target)_v - p_v) / T
//   d entropy / dz_v = -p_v (log p_v + entropy) / T
// The backward recomputes log p from the saved lse instead of keeping any [N, V] activation.
#include "kernels/ops_impl.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>

namespace scorch::kernels {
namespace {

// About 1 MiB of fp32 per chunk: big enough that ATen's per-call overhead vanishes, small enough
// to stay in cache and to keep the temporary memory negligible next to the logits.
constexpr int64_t kChunkElements = 1 << 18;

int64_t rows_per_chunk(int64_t vocab) { return std::max<int64_t>(1, kChunkElements / vocab); }

// Calls fn(first_row, end_row) for chunks of rows, in parallel.
template <typename Fn>
void for_each_row_chunk(int64_t rows, int64_t vocab, const Fn& fn) {
  const int64_t chunk = rows_per_chunk(vocab);
  const int64_t chunks = (rows + chunk - 1) / chunk;
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) fn(c * chunk, std::min(rows, (c + 1) * chunk));
  });
}

// z / T in fp32, always a fresh tensor (for fp32 input .to() would alias the caller's logits).
at::Tensor scaled_fp32_copy(const at::Tensor& chunk, double inv_t) {
  return chunk.scalar_type() == at::kFloat ? chunk.mul(inv_t) : chunk.to(at::kFloat).mul_(inv_t);
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> token_logprobs_forward_cpu(
    const at::Tensor& logits, const at::Tensor& targets_in, double temperature, bool with_entropy) {
  check_token_logprobs_inputs(logits, targets_in, temperature);
  const int64_t rows = logits.size(0), vocab = logits.size(1);
  const at::Tensor targets = targets_in.contiguous();
  if (rows > 0) {
    const int64_t max_target = targets.max().item<int64_t>();
    TORCH_CHECK(max_target < vocab, "scorch::token_logprobs: target ", max_target,
                " is out of range for a vocabulary of ",
                vocab, " (valid: 0..", vocab - 1, ", or a negative ignore index)");
  }
  const auto f32 = logits.options().dtype(at::kFloat);
  at::Tensor logp = at::empty({rows}, f32);
  at::Tensor entropy = with_entropy ? at::empty({rows}, f32) : at::empty({0}, f32);
  at::Tensor lse = at::empty({rows}, f32);
  const double inv_t = 1.0 / temperature;

  for_each_row_chunk(rows, vocab, [&](int64_t r0, int64_t r1) {
    at::Tensor z = scaled_fp32_copy(logits.slice(0, r0, r1), inv_t);  // [R, V], this chunk only
    // lse = m + log sum exp(z - m). Not at::logsumexp (several times slower here) nor recovered from
    // at::log_softmax (its sequential fp32 sum loses ~1e-5 over 150k terms; at::sum is cascaded).
    const at::Tensor m = z.amax(1, /*keepdim=*/true);                                  // [R, 1]
    const at::Tensor chunk_lse = (z - m).exp_().sum(1, /*keepdim=*/true).log_().add_(m);  // [R, 1]
    lse.slice(0, r0, r1).copy_(chunk_lse.squeeze(1));
    const at::Tensor log_p = z.sub_(chunk_lse);  // [R, V], in place of z
    const at::Tensor t = targets.slice(0, r0, r1);
    const at::Tensor picked = log_p.gather(1, t.clamp_min(0).unsqueeze(1)).squeeze(1);  // [R]
    logp.slice(0, r0, r1).copy_(at::where(t < 0, at::zeros_like(picked), picked));
    if (with_entropy) entropy.slice(0, r0, r1).copy_(log_p.exp().mul_(log_p).sum(1).neg_());
  });
  return {logp, entropy, lse};
}

at::Tensor token_logprobs_backward_cpu(const at::Tensor& grad_logp_in, const at::Tensor& grad_entropy_in,
                                       const at::Tensor& logits, const at::Tensor& targets_in,
                                       const at::Tensor& lse_in, const at::Tensor& entropy_in, double temperature) {
  check_token_logprobs_inputs(logits, targets_in, temperature);
  const int64_t rows = logits.size(0), vocab = logits.size(1);
  const bool has_logp = grad_logp_in.defined(), has_entropy = grad_entropy_in.defined();
  TORCH_CHECK(!has_entropy || entropy_in.numel() == rows,
              "scorch::token_logprobs backward: an entropy gradient needs the forward's entropy (with_entropy=true)");
  at::Tensor grad = at::empty({rows, vocab}, logits.options().memory_format(at::MemoryFormat::Contiguous));
  if (!has_logp && !has_entropy) return grad.zero_();

  const at::Tensor targets = targets_in.contiguous();
  const at::Tensor lse = lse_in.to(at::kFloat).contiguous();
  // An ignored row's logp is the constant 0: its gradient must not reach the logits.
  const at::Tensor g_logp =
      has_logp ? at::where(targets < 0, 0.0, grad_logp_in.to(at::kFloat)).contiguous() : at::Tensor();
  const at::Tensor g_entropy = has_entropy ? grad_entropy_in.to(at::kFloat).contiguous() : at::Tensor();
  const at::Tensor entropy = has_entropy ? entropy_in.to(at::kFloat).contiguous() : at::Tensor();
  const double inv_t = 1.0 / temperature;

  for_each_row_chunk(rows, vocab, [&](int64_t r0, int64_t r1) {
    at::Tensor log_p = scaled_fp32_copy(logits.slice(0, r0, r1), inv_t).sub_(lse.slice(0, r0, r1).unsqueeze(1));
    at::Tensor p = log_p.exp();  // [R, V]
    at::Tensor g;                // [R, V]: the gradient times T, built in place of log_p / p
    if (has_entropy) {           // -g_H p (log p + H)
      const at::Tensor gh = g_entropy.slice(0, r0, r1).unsqueeze(1), h = entropy.slice(0, r0, r1).unsqueeze(1);
      g = log_p.add_(h).mul_(p).mul_(gh).neg_();
    }
    if (has_logp) {  // g_logp (onehot - p)
      const at::Tensor gl = g_logp.slice(0, r0, r1).unsqueeze(1);  // [R, 1]
      g = g.defined() ? g.sub_(p.mul_(gl)) : p.mul_(gl).neg_();
      g.scatter_add_(1, targets.slice(0, r0, r1).clamp_min(0).unsqueeze(1), gl);
    }
    grad.slice(0, r0, r1).copy_(g.mul_(inv_t));
  });
  return grad;
}

}  // namespace scorch::kernels

// lm_head_token_loss: a token-separable loss over the LM head's tokens, differentiated in the forward
// (ops.h has the contract). Per chunk of rows:
//   z = h W^T (GEMM 1)  ->  logp, entropy, lse (token_logprobs' forward kernel)
//   ℓ = loss_fn(logp, entropy) on leaves  ->  g_logp, g_entropy (autograd over [R] values)
//   dz = token_logprobs' backward kernel (× the soft cap's derivative)
//   grad_hidden[rows] = dz W / T-scaled already in dz (GEMM 2), grad_weight += dz^T h (GEMM 3)
// The chunk's logits and their gradient are dropped before the next chunk. The autograd node keeps
// grad_hidden and grad_weight and multiplies them by the loss's upstream gradient in the backward.
//
// Also the torch op scorch::lm_head_logprob_loss(hidden, weight, targets, coefficients, ...) -> (loss,
// logp), loss = Σ_t coefficients_t · logp_t (SFT's -Σ logp, a policy gradient's -Σ A_t w_t logp_t at
// ratio 1): the Python entry point (benchmarks, tests) to the same machinery.
#include "kernels/ops.h"
#include "kernels/ops_impl.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <algorithm>
#include <utility>

namespace scorch {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// loss_fn on one chunk's values, checked: a one-element floating tensor.
at::Tensor call_loss_fn(const TokenLossFn& loss_fn, const at::Tensor& logp, const at::Tensor& entropy, int64_t begin,
                        int64_t end) {
  at::Tensor l = loss_fn(logp, entropy, begin, end);
  TORCH_CHECK(l.defined() && l.numel() == 1 && at::isFloatingType(l.scalar_type()),
              "scorch::lm_head_token_loss: loss_fn must return a one-element floating tensor (the chunk's summed "
              "terms)");
  return l.reshape({});
}

// The chunked loop. With need_hidden / need_weight the chunk's loss is differentiated and the
// gradients written to *grad_hidden / *grad_weight (the latter in fp32, summed over chunks).
struct ChunkResult {
  at::Tensor loss, logp, entropy;
};

ChunkResult run_chunks(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
                       const TokenLossFn& loss_fn, double temperature, bool with_entropy, int64_t chunk, double softcap,
                       at::Tensor* grad_hidden, at::Tensor* grad_weight32) {
  kernels::check_lm_head_logprobs_inputs(hidden, weight, targets, temperature, chunk, softcap);
  const int64_t rows = hidden.size(0), vocab = weight.size(0);
  const int64_t step = kernels::lm_head_chunk_rows(chunk, vocab);
  const auto f32 = hidden.options().dtype(at::kFloat);
  ChunkResult out;
  out.logp = at::empty({rows}, f32);
  out.entropy = with_entropy ? at::empty({rows}, f32) : at::empty({0}, f32);
  if (rows == 0) {  // no tokens: the loss of nothing, and zero gradients
    at::NoGradGuard no_grad;
    out.loss = call_loss_fn(loss_fn, out.logp, out.entropy, 0, 0);
    return out;
  }
  const bool differentiate = grad_hidden != nullptr || grad_weight32 != nullptr;
  for (int64_t r0 = 0; r0 < rows; r0 += step) {
    const int64_t r1 = std::min(rows, r0 + step);
    const at::Tensor h = hidden.slice(0, r0, r1), t = targets.slice(0, r0, r1);
    at::Tensor lp, ent, lse, z;
    {
      at::NoGradGuard no_grad;
      z = kernels::lm_head_chunk_logits(h, weight, softcap);
      std::tie(lp, ent, lse) = kernels::token_logprobs_forward_dispatch(z, t, temperature, with_entropy);
      out.logp.slice(0, r0, r1).copy_(lp);
      if (with_entropy) out.entropy.slice(0, r0, r1).copy_(ent);
    }
    at::Tensor l;
    std::optional<at::Tensor> g_logp, g_entropy;
    if (!differentiate) {
      at::NoGradGuard no_grad;
      l = call_loss_fn(loss_fn, lp, ent, r0, r1);
    } else {
      at::AutoGradMode grad_on(true);
      const at::Tensor lp_leaf = lp.detach().requires_grad_(true);
      const at::Tensor ent_leaf = with_entropy ? ent.detach().requires_grad_(true) : ent.detach();
      l = call_loss_fn(loss_fn, lp_leaf, ent_leaf, r0, r1);
      if (l.requires_grad()) {
        variable_list inputs{lp_leaf};
        if (with_entropy) inputs.push_back(ent_leaf);
        const variable_list g = torch::autograd::grad({l}, inputs, {}, /*retain_graph=*/false,
                                                      /*create_graph=*/false, /*allow_unused=*/true);
        if (g[0].defined()) g_logp = g[0].to(at::kFloat);
        if (with_entropy && g[1].defined()) g_entropy = g[1].to(at::kFloat);
      }
      l = l.detach();
    }
    out.loss = out.loss.defined() ? out.loss + l : l;
    if (!differentiate) continue;
    at::NoGradGuard no_grad;
    if (!g_logp && !g_entropy) {  // the chunk's terms do not depend on its tokens
      if (grad_hidden != nullptr) grad_hidden->slice(0, r0, r1).zero_();
      continue;
    }
    const at::Tensor dz = kernels::lm_head_chunk_grad_logits(g_logp, g_entropy, z, t, lse, ent, temperature, softcap,
                                                             hidden.scalar_type());
    z = at::Tensor();  // at most one chunk of logits and one of their gradient at a time
    if (grad_hidden != nullptr) {
      at::Tensor rows_out = grad_hidden->slice(0, r0, r1);
      at::mm_out(rows_out, dz, weight);
    }
    if (grad_weight32 != nullptr) {
      if (grad_weight32->scalar_type() == dz.scalar_type()) {
        grad_weight32->addmm_(dz.t(), h);
      } else {
        grad_weight32->add_(at::mm(dz.t(), h));
      }
    }
  }
  return out;
}

// Holds the gradients computed in the forward; the backward scales them by the upstream gradient.
class LmHeadTokenLossFunction : public torch::autograd::Function<LmHeadTokenLossFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& hidden, const at::Tensor& weight,
                               const at::Tensor& targets, const TokenLossFn* loss_fn, double temperature,
                               bool with_entropy, int64_t chunk, double softcap) {
    const bool need_hidden = hidden.requires_grad(), need_weight = weight.requires_grad();
    at::Tensor grad_hidden =
        need_hidden ? at::empty(hidden.sizes(), hidden.options().memory_format(at::MemoryFormat::Contiguous))
                    : at::Tensor();
    at::Tensor grad_weight =
        need_weight ? at::zeros(weight.sizes(), weight.options().dtype(at::kFloat)) : at::Tensor();
    ChunkResult r = run_chunks(hidden, weight, targets, *loss_fn, temperature, with_entropy, chunk, softcap,
                               need_hidden ? &grad_hidden : nullptr, need_weight ? &grad_weight : nullptr);
    if (need_weight && weight.scalar_type() != at::kFloat) grad_weight = grad_weight.to(weight.scalar_type());
    ctx->saved_data["grad_hidden"] = grad_hidden;
    ctx->saved_data["grad_weight"] = grad_weight;
    ctx->mark_non_differentiable({r.logp, r.entropy});
    return {r.loss, r.logp, r.entropy};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    TORCH_CHECK(ctx->saved_data.count("grad_hidden") == 1,
                "scorch::lm_head_token_loss: differentiable once; its backward already ran (retain_graph is not "
                "supported: the gradients were computed in the forward and handed out)");
    at::Tensor grad_hidden = ctx->saved_data["grad_hidden"].toTensor();
    at::Tensor grad_weight = ctx->saved_data["grad_weight"].toTensor();
    ctx->saved_data.clear();  // release the stored gradients with the node's first (only) backward
    const at::Tensor& up = grads[0];
    if (!up.defined()) return {at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(),
                               at::Tensor(), at::Tensor()};
    // In place: the stored tensors belong to this node alone.
    if (grad_hidden.defined()) grad_hidden.mul_(up.to(grad_hidden.scalar_type()));
    if (grad_weight.defined()) grad_weight.mul_(up.to(grad_weight.scalar_type()));
    return {grad_hidden, grad_weight, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor()};
  }
};

}  // namespace

LmHeadTokenLoss lm_head_token_loss(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
                                   const TokenLossFn& loss_fn, double temperature, bool with_entropy, int64_t chunk,
                                   double logit_softcap) {
  TORCH_CHECK(static_cast<bool>(loss_fn), "scorch::lm_head_token_loss: loss_fn is empty");
  const bool differentiate =
      c10::GradMode::is_enabled() && (hidden.requires_grad() || weight.requires_grad());
  if (!differentiate) {
    ChunkResult r = run_chunks(hidden, weight, targets, loss_fn, temperature, with_entropy, chunk, logit_softcap,
                               nullptr, nullptr);
    return {r.loss, r.logp, r.entropy};
  }
  variable_list out = LmHeadTokenLossFunction::apply(hidden, weight, targets, &loss_fn, temperature, with_entropy,
                                                     chunk, logit_softcap);
  return {out[0], out[1], out[2]};
}

namespace {

std::tuple<at::Tensor, at::Tensor> lm_head_logprob_loss_op(const at::Tensor& hidden, const at::Tensor& weight,
                                                           const at::Tensor& targets, const at::Tensor& coefficients,
                                                           double temperature, int64_t chunk, double softcap) {
  TORCH_CHECK(coefficients.dim() == 1 && coefficients.size(0) == hidden.size(0),
              "scorch::lm_head_logprob_loss: coefficients must be [N] = [", hidden.size(0), "], got ",
              coefficients.sizes());
  TORCH_CHECK(!coefficients.requires_grad() || !c10::GradMode::is_enabled(),
              "scorch::lm_head_logprob_loss: coefficients are constants (no gradient flows to them)");
  const at::Tensor c = coefficients.to(at::kFloat);
  const TokenLossFn fn = [&c](const at::Tensor& logp, const at::Tensor&, int64_t b, int64_t e) {
    return (c.slice(0, b, e) * logp).sum();
  };
  LmHeadTokenLoss r = lm_head_token_loss(hidden, weight, targets, fn, temperature, false, chunk, softcap);
  return {r.loss, r.logp};
}

}  // namespace
}  // namespace scorch

TORCH_LIBRARY_FRAGMENT(scorch, m) {
  m.def("lm_head_logprob_loss(Tensor hidden, Tensor weight, Tensor targets, Tensor coefficients, "
        "float temperature=1.0, int chunk=0, float logit_softcap=0.0) -> (Tensor loss, Tensor logp)");
}

TORCH_LIBRARY_IMPL(scorch, CompositeImplicitAutograd, m) {
  m.impl("lm_head_logprob_loss", &scorch::lm_head_logprob_loss_op);
}

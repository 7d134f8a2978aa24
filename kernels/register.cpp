// Registers scorch's ops with the PyTorch dispatcher (TORCH_LIBRARY(scorch, ...)) for CPU, CUDA
// and Autograd, and defines the C++ entry points of kernels/ops.h on top of the dispatcher, so C++
// and Python (torch.ops.scorch.*) reach exactly the same kernels.
// lm_head_logprobs is one op over token_logprobs' kernels (lm_head_logprobs.cpp), its Autograd
// kernel recomputing the logits chunk by chunk in the backward.
// token_logprobs is three ops: the public one (differentiable through the Autograd kernel below)
// and the internal forward (which also returns the per-row log-sum-exp the backward needs) and
// backward, each with a CPU and a CUDA kernel.
// The decode-step ops (fused_rms_norm, fused_add_rms_norm, fused_rope, silu_and_mul, rope_kv_write,
// decode_attention) are inference-only: their Autograd kernels only refuse inputs that require grad
// under grad mode (there is no backward to record) and redispatch to the CPU / CUDA kernel.
// group_advantages and sample_tokens have no Autograd kernel: nothing is differentiated through them.
#include "kernels/ops.h"
#include "kernels/ops_impl.h"

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/GradMode.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <cmath>
#include <initializer_list>
#include <tuple>
#include <optional>
#include <utility>

namespace scorch {
namespace kernels {

namespace {

// The checks token_logprobs and sample_tokens share: logits [N, V] rows, and one value per row.
void check_logit_rows(const char* op, const at::Tensor& logits) {
  TORCH_CHECK(logits.dim() == 2, "scorch::", op, ": logits must be [N, V], got ", logits.sizes());
  const auto dtype = logits.scalar_type();
  TORCH_CHECK(dtype == at::kBFloat16 || dtype == at::kHalf || dtype == at::kFloat, "scorch::", op,
              ": logits must be bfloat16, float16 or float32, got ", dtype);
  TORCH_CHECK(logits.size(1) >= 1, "scorch::", op, ": the vocabulary dimension is empty");
  TORCH_CHECK(logits.size(1) == 1 || logits.stride(1) == 1, "scorch::", op,
              ": the last dimension of logits must be contiguous (stride 1), got strides ", logits.strides(),
              "; call .contiguous() on a transposed or vocabulary-sliced tensor");
}

void check_one_per_row(const char* op, const char* name, const at::Tensor& t, at::ScalarType dtype,
                       const char* dtype_name, const at::Tensor& logits) {
  TORCH_CHECK(t.dim() == 1 && t.size(0) == logits.size(0), "scorch::", op, ": ", name, " must be [N] = [",
              logits.size(0), "], got ", t.sizes());
  TORCH_CHECK(t.scalar_type() == dtype, "scorch::", op, ": ", name, " must be ", dtype_name, ", got ",
              t.scalar_type());
  TORCH_CHECK(t.device() == logits.device(), "scorch::", op, ": ", name, " are on ", t.device(), " but logits on ",
              logits.device());
}

void check_temperature(const char* op, double temperature) {
  TORCH_CHECK(std::isfinite(temperature) && temperature > 0.0, "scorch::", op,
              ": temperature must be a positive number, got ", temperature);
}

}  // namespace

void check_token_logprobs_inputs(const at::Tensor& logits, const at::Tensor& targets, double temperature) {
  check_logit_rows("token_logprobs", logits);
  check_one_per_row("token_logprobs", "targets", targets, at::kLong, "int64", logits);
  check_temperature("token_logprobs", temperature);
}

void check_sample_tokens_inputs(const at::Tensor& logits, const at::Tensor& uniforms, double temperature) {
  check_logit_rows("sample_tokens", logits);
  check_one_per_row("sample_tokens", "uniforms", uniforms, at::kDouble, "float64", logits);
  check_temperature("sample_tokens", temperature);  // greedy is argmax, not T = 0
}

AdvantageMode parse_advantage_mode(const std::string& mode) {
  if (mode == "grpo") return AdvantageMode::kGrpo;
  if (mode == "dr_grpo") return AdvantageMode::kDrGrpo;
  if (mode == "rloo") return AdvantageMode::kRloo;
  if (mode == "reinforce_pp") return AdvantageMode::kReinforcePP;
  TORCH_CHECK(false, "scorch::group_advantages: unknown mode '", mode,
              "' (valid: grpo, dr_grpo, rloo, reinforce_pp)");
}

RewardScale parse_reward_scale(const std::string& scale) {
  if (scale == "group") return RewardScale::kGroup;
  if (scale == "batch") return RewardScale::kBatch;
  if (scale == "none") return RewardScale::kNone;
  TORCH_CHECK(false, "scorch::group_advantages: unknown scale '", scale, "' (valid: group, batch, none)");
}

int64_t check_group_advantages_inputs(const at::Tensor& rewards, int64_t group_size, double eps) {
  TORCH_CHECK(rewards.dim() == 1, "scorch::group_advantages: rewards must be [B * G], got ", rewards.sizes());
  TORCH_CHECK(rewards.scalar_type() == at::kFloat, "scorch::group_advantages: rewards must be float32, got ",
              rewards.scalar_type());
  TORCH_CHECK(group_size >= 1, "scorch::group_advantages: group_size must be >= 1, got ", group_size);
  TORCH_CHECK(rewards.numel() % group_size == 0, "scorch::group_advantages: ", rewards.numel(),
              " rewards do not split into groups of ", group_size);
  TORCH_CHECK(std::isfinite(eps) && eps >= 0.0, "scorch::group_advantages: eps must be >= 0, got ", eps);
  return rewards.numel() / group_size;
}

// --- decode-step ops: checks shared by every device --------------------------------------------

namespace {

bool is_decode_dtype(at::ScalarType t) { return t == at::kBFloat16 || t == at::kHalf || t == at::kFloat; }

// `name` must have `ref`'s dtype and device (every tensor of a decode op shares them).
void check_same_dtype_and_device(const char* op, const char* name, const at::Tensor& t, const char* ref_name,
                                 const at::Tensor& ref) {
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), "scorch::", op, ": ", name, " is ", t.scalar_type(), " but ",
              ref_name, " is ", ref.scalar_type(), " (every tensor of the call must have one dtype)");
  TORCH_CHECK(t.device() == ref.device(), "scorch::", op, ": ", name, " is on ", t.device(), " but ", ref_name,
              " on ", ref.device());
}

void check_decode_dtype(const char* op, const char* name, const at::Tensor& t) {
  TORCH_CHECK(is_decode_dtype(t.scalar_type()), "scorch::", op, ": ", name,
              " must be bfloat16, float16 or float32, got ", t.scalar_type());
}

}  // namespace

at::Tensor as_rows(const at::Tensor& x) {
  const int64_t n = x.size(-1);
  at::Tensor rows = x.reshape({-1, n});  // a view whenever the leading dimensions collapse
  return rows.stride(1) == 1 || n == 1 ? rows : rows.contiguous();
}

void check_rms_norm_inputs(const char* op, const at::Tensor& x, const at::Tensor& weight, double eps) {
  TORCH_CHECK(x.dim() >= 1, "scorch::", op, ": the input must be [..., N], got a 0-dim tensor");
  check_decode_dtype(op, "the input", x);
  const int64_t n = x.size(-1);
  TORCH_CHECK(n >= 1, "scorch::", op, ": the normalised (last) dimension is empty, input sizes ", x.sizes());
  TORCH_CHECK(weight.dim() == 1 && weight.size(0) == n, "scorch::", op, ": weight must be [N] = [", n,
              "] (N = the input's last dimension), got ", weight.sizes());
  check_same_dtype_and_device(op, "weight", weight, "the input", x);
  TORCH_CHECK(std::isfinite(eps) && eps >= 0.0, "scorch::", op, ": eps must be a finite number >= 0, got ", eps);
}

void check_add_rms_norm_inputs(const at::Tensor& h, const at::Tensor& delta, const at::Tensor& weight, double eps) {
  check_rms_norm_inputs("fused_add_rms_norm", h, weight, eps);
  TORCH_CHECK(delta.sizes() == h.sizes(), "scorch::fused_add_rms_norm: delta must have h's shape ", h.sizes(),
              " (no broadcasting), got ", delta.sizes());
  check_same_dtype_and_device("fused_add_rms_norm", "delta", delta, "h", h);
}

void check_rope_inputs(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  TORCH_CHECK(x.dim() == 4, "scorch::fused_rope: x must be [B, M, T, D] (batch, heads, tokens, head dim), got ",
              x.sizes());
  check_decode_dtype("fused_rope", "x", x);
  const int64_t b = x.size(0), t = x.size(2), d = x.size(3);
  TORCH_CHECK(d >= 2 && d % 2 == 0, "scorch::fused_rope: the head dimension D must be even and >= 2, got ", d);
  TORCH_CHECK(x.stride(3) == 1, "scorch::fused_rope: the last dimension of x must be contiguous (stride 1), got "
              "strides ", x.strides());
  auto check_table = [&](const char* name, const at::Tensor& table) {
    TORCH_CHECK(table.dim() == 4 && table.size(1) == 1 && (table.size(0) == b || table.size(0) == 1) &&
                    (table.size(2) == t || table.size(2) == 1) && table.size(3) == d,
                "scorch::fused_rope: ", name, " must be [B, 1, T, D] = [", b, ", 1, ", t, ", ", d,
                "] (B and T may be 1, broadcast), got ", table.sizes());
    TORCH_CHECK(table.stride(3) == 1, "scorch::fused_rope: the last dimension of ", name,
                " must be contiguous (stride 1), got strides ", table.strides());
    check_same_dtype_and_device("fused_rope", name, table, "x", x);
  };
  check_table("cos", cos);
  check_table("sin", sin);
}

RopeTableStrides rope_table_strides(const at::Tensor& table) {
  return {table.size(0) == 1 ? 0 : table.stride(0), table.size(2) == 1 ? 0 : table.stride(2)};
}

int64_t check_rope_kv_write_inputs(const at::Tensor& qkv, const at::Tensor& cos, const at::Tensor& sin,
                                   const at::Tensor& k_cache, const at::Tensor& v_cache, const at::Tensor& slot,
                                   int64_t q_heads, const char* op) {
  TORCH_CHECK(qkv.dim() == 4 && qkv.size(2) == 1, "scorch::", op, ": qkv must be [B, H + 2 KV, 1, D] (one "
              "decode token per row), got ", qkv.sizes());
  check_decode_dtype(op, "qkv", qkv);
  const int64_t b = qkv.size(0), heads = qkv.size(1), d = qkv.size(3);
  TORCH_CHECK(q_heads >= 1 && heads > q_heads && (heads - q_heads) % 2 == 0, "scorch::", op, ": ", heads,
              " heads in qkv do not split into q_heads = ", q_heads, " query heads and two equal K / V groups");
  const int64_t kv = (heads - q_heads) / 2;
  TORCH_CHECK(d >= 2 && d % 2 == 0, "scorch::", op, ": the head dimension D must be even and >= 2, got ", d);
  TORCH_CHECK(qkv.stride(3) == 1, "scorch::", op, ": the last dimension of qkv must be contiguous (stride 1), "
              "got strides ", qkv.strides());
  for (const auto& [name, table] : {std::pair<const char*, const at::Tensor*>{"cos", &cos}, {"sin", &sin}}) {
    TORCH_CHECK(table->dim() == 4 && (table->size(0) == b || table->size(0) == 1) && table->size(1) == 1 &&
                    table->size(2) == 1 && table->size(3) == d,
                "scorch::", op, ": ", name, " must be [B, 1, 1, D] = [", b, ", 1, 1, ", d, "] (B may be 1), got ",
                table->sizes());
    TORCH_CHECK(table->stride(3) == 1, "scorch::", op, ": the last dimension of ", name,
                " must be contiguous (stride 1)");
    check_same_dtype_and_device(op, name, *table, "qkv", qkv);
  }
  for (const auto& [name, cache] :
       {std::pair<const char*, const at::Tensor*>{"k_cache", &k_cache}, {"v_cache", &v_cache}}) {
    TORCH_CHECK(cache->dim() == 4 && cache->size(0) == b && cache->size(1) == kv && cache->size(3) == d &&
                    cache->size(2) >= 1 && cache->is_contiguous(),
                "scorch::", op, ": ", name, " must be a contiguous [B, KV, slots, D] = [", b, ", ", kv,
                ", slots, ", d, "], got ", cache->sizes());
    check_same_dtype_and_device(op, name, *cache, "qkv", qkv);
  }
  TORCH_CHECK(v_cache.size(2) == k_cache.size(2), "scorch::", op, ": k_cache and v_cache differ in slots");
  TORCH_CHECK(slot.numel() == 1 && slot.scalar_type() == at::kLong && slot.device() == qkv.device(),
              "scorch::", op, ": slot must be one int64 on qkv's device, got ", slot.sizes(), " ",
              slot.scalar_type(), " on ", slot.device());
  return kv;
}

int64_t check_decode_attention_inputs(const at::Tensor& qkv, const at::Tensor& cos, const at::Tensor& sin,
                                      const at::Tensor& k_cache, const at::Tensor& v_cache, const at::Tensor& slot,
                                      const std::optional<at::Tensor>& mask, int64_t q_heads, double scale) {
  const char* op = "decode_attention";
  const int64_t kv = check_rope_kv_write_inputs(qkv, cos, sin, k_cache, v_cache, slot, q_heads, op);
  TORCH_CHECK(q_heads % kv == 0, "scorch::decode_attention: q_heads = ", q_heads, " is not a multiple of the ", kv,
              " KV heads (grouped-query attention shares each KV head among q_heads / KV query heads)");
  TORCH_CHECK(q_heads / kv <= kDecodeAttentionMaxGroup, "scorch::decode_attention: ", q_heads / kv,
              " query heads per KV head; at most ", kDecodeAttentionMaxGroup, " are supported");
  TORCH_CHECK(qkv.size(3) <= kDecodeAttentionMaxHeadDim, "scorch::decode_attention: head dimension ", qkv.size(3),
              " is above the supported ", kDecodeAttentionMaxHeadDim);
  TORCH_CHECK(std::isfinite(scale) && scale > 0, "scorch::decode_attention: scale must be positive and finite, got ",
              scale);
  if (mask) {
    const int64_t b = qkv.size(0), slots = k_cache.size(2);
    TORCH_CHECK(mask->dim() == 4 && (mask->size(0) == b || mask->size(0) == 1) && mask->size(1) == 1 &&
                    mask->size(2) == 1 && mask->size(3) == slots,
                "scorch::decode_attention: mask must be additive [B, 1, 1, slots] = [", b, ", 1, 1, ", slots,
                "] (B may be 1), got ", mask->sizes());
    check_same_dtype_and_device(op, "mask", *mask, "qkv", qkv);
  }
  return kv;
}

void check_silu_and_mul_inputs(const at::Tensor& gu) {
  TORCH_CHECK(gu.dim() >= 1, "scorch::silu_and_mul: the input must be [..., 2I] (gate then up), got a 0-dim tensor");
  check_decode_dtype("silu_and_mul", "the input", gu);
  const int64_t n = gu.size(-1);
  TORCH_CHECK(n >= 2 && n % 2 == 0, "scorch::silu_and_mul: the last dimension must be 2I (gate then up), even and "
              ">= 2, got ", n);
}

void check_silu_mul_inputs(const at::Tensor& gate, const at::Tensor& up) {
  TORCH_CHECK(gate.dim() >= 1, "scorch::silu_mul: gate must be [..., I], got a 0-dim tensor");
  check_decode_dtype("silu_mul", "gate", gate);
  TORCH_CHECK(up.sizes() == gate.sizes(), "scorch::silu_mul: up must have gate's shape ", gate.sizes(),
              " (no broadcasting), got ", up.sizes());
  check_same_dtype_and_device("silu_mul", "up", up, "gate", gate);
}

void check_silu_mul_backward_inputs(const at::Tensor& grad, const at::Tensor& gate, const at::Tensor& up) {
  check_silu_mul_inputs(gate, up);
  TORCH_CHECK(grad.sizes() == gate.sizes(), "scorch::silu_mul_backward: grad must have gate's shape ", gate.sizes(),
              ", got ", grad.sizes());
  check_same_dtype_and_device("silu_mul_backward", "grad", grad, "gate", gate);
}

void check_rms_norm_backward_inputs(const at::Tensor& grad_y, const at::Tensor& x, const at::Tensor& weight,
                                    double eps, const std::optional<at::Tensor>& grad_residual) {
  check_rms_norm_inputs("fused_rms_norm_backward", x, weight, eps);
  TORCH_CHECK(grad_y.sizes() == x.sizes(), "scorch::fused_rms_norm_backward: grad_y must have x's shape ", x.sizes(),
              ", got ", grad_y.sizes());
  check_same_dtype_and_device("fused_rms_norm_backward", "grad_y", grad_y, "x", x);
  if (grad_residual) {
    TORCH_CHECK(grad_residual->sizes() == x.sizes(), "scorch::fused_rms_norm_backward: grad_residual must have x's "
                "shape ", x.sizes(), ", got ", grad_residual->sizes());
    check_same_dtype_and_device("fused_rms_norm_backward", "grad_residual", *grad_residual, "x", x);
  }
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

at::Tensor or_undefined(const std::optional<at::Tensor>& t) { return t.has_value() ? *t : at::Tensor(); }

// --- device kernels in the dispatcher's calling convention -------------------------------------

std::tuple<at::Tensor, at::Tensor> token_logprobs_cpu(const at::Tensor& logits, const at::Tensor& targets,
                                                      double temperature, bool with_entropy) {
  auto [logp, entropy, lse] = token_logprobs_forward_cpu(logits, targets, temperature, with_entropy);
  return {logp, entropy};
}

at::Tensor token_logprobs_backward_cpu_op(const std::optional<at::Tensor>& grad_logp,
                                          const std::optional<at::Tensor>& grad_entropy, const at::Tensor& logits,
                                          const at::Tensor& targets, const at::Tensor& lse, const at::Tensor& entropy,
                                          double temperature) {
  return token_logprobs_backward_cpu(or_undefined(grad_logp), or_undefined(grad_entropy), logits, targets, lse,
                                     entropy, temperature);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> group_advantages_cpu_op(
    const at::Tensor& rewards, int64_t group_size, c10::string_view mode, double eps, c10::string_view scale) {
  return group_advantages_cpu(rewards, group_size, parse_advantage_mode(std::string(mode)), eps,
                              parse_reward_scale(std::string(scale)));
}

#ifdef SCORCH_WITH_CUDA
std::tuple<at::Tensor, at::Tensor> token_logprobs_cuda(const at::Tensor& logits, const at::Tensor& targets,
                                                       double temperature, bool with_entropy) {
  auto [logp, entropy, lse] = token_logprobs_forward_cuda(logits, targets, temperature, with_entropy);
  return {logp, entropy};
}

at::Tensor token_logprobs_backward_cuda_op(const std::optional<at::Tensor>& grad_logp,
                                           const std::optional<at::Tensor>& grad_entropy, const at::Tensor& logits,
                                           const at::Tensor& targets, const at::Tensor& lse, const at::Tensor& entropy,
                                           double temperature) {
  return token_logprobs_backward_cuda(or_undefined(grad_logp), or_undefined(grad_entropy), logits, targets, lse,
                                      entropy, temperature);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> group_advantages_cuda_op(
    const at::Tensor& rewards, int64_t group_size, c10::string_view mode, double eps, c10::string_view scale) {
  return group_advantages_cuda(rewards, group_size, parse_advantage_mode(std::string(mode)), eps,
                               parse_reward_scale(std::string(scale)));
}
#endif

// --- autograd ----------------------------------------------------------------------------------

const auto& forward_op() {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("scorch::token_logprobs_forward", "")
                       .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                                             double, bool)>();
  return op;
}

const auto& backward_op() {
  static auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("scorch::token_logprobs_backward", "")
          .typed<at::Tensor(const std::optional<at::Tensor>&, const std::optional<at::Tensor>&, const at::Tensor&,
                            const at::Tensor&, const at::Tensor&, const at::Tensor&, double)>();
  return op;
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> token_logprobs_forward_dispatch(const at::Tensor& logits,
                                                                               const at::Tensor& targets,
                                                                               double temperature, bool with_entropy) {
  return forward_op().call(logits, targets, temperature, with_entropy);
}

at::Tensor token_logprobs_backward_dispatch(const std::optional<at::Tensor>& grad_logp,
                                            const std::optional<at::Tensor>& grad_entropy, const at::Tensor& logits,
                                            const at::Tensor& targets, const at::Tensor& lse,
                                            const at::Tensor& entropy, double temperature) {
  return backward_op().call(grad_logp, grad_entropy, logits, targets, lse, entropy, temperature);
}

namespace {

// Saves the logits (a reference, not a copy), the targets, the [N] lse and the [N] entropy; the
// backward recomputes the softmax from them.
class TokenLogprobsFunction : public torch::autograd::Function<TokenLogprobsFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& logits, const at::Tensor& targets,
                               double temperature, bool with_entropy) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [logp, entropy, lse] = forward_op().call(logits, targets, temperature, with_entropy);
    ctx->save_for_backward({logits, targets, lse, entropy});
    ctx->saved_data["temperature"] = temperature;
    // An output that does not reach the loss arrives as an undefined gradient: the kernel then
    // skips its term instead of reading a tensor of zeros.
    ctx->set_materialize_grads(false);
    return {logp, entropy};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const double temperature = ctx->saved_data["temperature"].toDouble();
    std::optional<at::Tensor> grad_logp, grad_entropy;
    if (grads[0].defined()) grad_logp = grads[0];
    if (grads.size() > 1 && grads[1].defined() && grads[1].numel() > 0) grad_entropy = grads[1];
    if (!grad_logp && !grad_entropy) return {at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
    at::Tensor grad_logits =
        backward_op().call(grad_logp, grad_entropy, saved[0], saved[1], saved[2], saved[3], temperature);
    return {grad_logits, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

std::tuple<at::Tensor, at::Tensor> token_logprobs_autograd(const at::Tensor& logits, const at::Tensor& targets,
                                                           double temperature, bool with_entropy) {
  auto out = TokenLogprobsFunction::apply(logits, targets, temperature, with_entropy);
  return {out[0], out[1]};
}

// Saves hidden and weight (references), the targets, the [N] lse and the [N] entropy; the backward
// recomputes the logits chunk by chunk, except for a frozen weight, where the forward's E [N, H]
// is saved instead (lm_head_logprobs.cpp).
class LmHeadLogprobsFunction : public torch::autograd::Function<LmHeadLogprobsFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& hidden, const at::Tensor& weight,
                               const at::Tensor& targets, double temperature, bool with_entropy, int64_t chunk,
                               double softcap) {
    // A frozen weight (no gradient wanted) with hidden's gradient wanted: E saved in the forward
    // (lm_head_logprobs.cpp), so the backward needs no pass over the vocabulary.
    const bool frozen = hidden.requires_grad() && !weight.requires_grad() && softcap == 0.0;
    at::AutoDispatchBelowADInplaceOrView guard;
    at::Tensor logp, entropy, lse, expectation;
    if (frozen) {
      std::tie(logp, entropy, lse, expectation) =
          lm_head_logprobs_forward_expectation(hidden, weight, targets, temperature, with_entropy, chunk);
    } else {
      std::tie(logp, entropy, lse) = lm_head_logprobs_forward(hidden, weight, targets, temperature, with_entropy, chunk, softcap);
    }
    ctx->save_for_backward({hidden, weight, targets, lse, entropy, expectation});
    ctx->saved_data["temperature"] = temperature;
    ctx->saved_data["chunk"] = chunk;
    ctx->saved_data["softcap"] = softcap;
    ctx->set_materialize_grads(false);
    return {logp, entropy};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    at::Tensor grad_logp = grads[0];
    at::Tensor grad_entropy = grads.size() > 1 && grads[1].defined() && grads[1].numel() > 0 ? grads[1] : at::Tensor();
    const bool need_hidden = ctx->needs_input_grad(0), need_weight = ctx->needs_input_grad(1);
    if (saved[5].defined() && need_hidden && !need_weight && !grad_entropy.defined() && grad_logp.defined()) {
      const at::Tensor grad_hidden = lm_head_logprobs_frozen_grad_hidden(grad_logp, saved[1], saved[2], saved[5],
                                                                         ctx->saved_data["temperature"].toDouble());
      return {grad_hidden, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
    }
    auto [grad_hidden, grad_weight] = lm_head_logprobs_backward(
        grad_logp, grad_entropy, saved[0], saved[1], saved[2], saved[3], saved[4],
        ctx->saved_data["temperature"].toDouble(), ctx->saved_data["chunk"].toInt(),
        ctx->saved_data["softcap"].toDouble(), need_hidden, need_weight);
    return {grad_hidden, grad_weight, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

std::tuple<at::Tensor, at::Tensor> lm_head_logprobs_autograd(const at::Tensor& hidden, const at::Tensor& weight,
                                                             const at::Tensor& targets, double temperature,
                                                             bool with_entropy, int64_t chunk, double softcap) {
  auto out = LmHeadLogprobsFunction::apply(hidden, weight, targets, temperature, with_entropy, chunk, softcap);
  return {out[0], out[1]};
}

// The backend kernel (CPU and CUDA alike: the op is ATen over the token_logprobs kernels).
std::tuple<at::Tensor, at::Tensor> lm_head_logprobs_backend(const at::Tensor& hidden, const at::Tensor& weight,
                                                            const at::Tensor& targets, double temperature,
                                                            bool with_entropy, int64_t chunk, double softcap) {
  auto [logp, entropy, lse] =
      lm_head_logprobs_forward(hidden, weight, targets, temperature, with_entropy, chunk, softcap);
  return {logp, entropy};
}

// --- decode-step ops: inference only ----------------------------------------------------------

template <typename Signature>
c10::TypedOperatorHandle<Signature> typed_op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Signature>();
}

using RmsNormSignature = at::Tensor(const at::Tensor&, const at::Tensor&, double);
using AddRmsNormSignature =
    std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&, double);
using RopeSignature = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&);
using SiluAndMulSignature = at::Tensor(const at::Tensor&);
using RopeKvWriteSignature = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, at::Tensor&,
                                        at::Tensor&, const at::Tensor&, int64_t);
using DecodeAttentionSignature = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, at::Tensor&,
                                            at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&, int64_t,
                                            double);

// There is no backward: refuse to produce an output that autograd would treat as a constant.
void check_inference_only(const char* op, std::initializer_list<const at::Tensor*> inputs) {
  if (!c10::GradMode::is_enabled()) return;
  for (const at::Tensor* t : inputs)
    TORCH_CHECK(!t->defined() || !t->requires_grad(), "scorch::", op,
                " is inference-only (it has no backward), but an input requires grad and grad mode is enabled; "
                "call it under torch.no_grad() / torch.inference_mode() (C++: at::NoGradGuard), or use the ATen "
                "composition where a gradient is needed");
}

// --- the fused ops of the transformer layer: differentiable --------------------------------------
// Each forward is the device kernel as in inference; the backward is its *_backward op (the
// gradients in fp32 from the saved inputs, rounded once). Without grad mode, or with no input that
// requires grad, the kernel is called directly (no autograd node, as in generation).

using RmsNormBackwardSignature = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                                    const at::Tensor&, double,
                                                                    const std::optional<at::Tensor>&, bool);
using RopeBackwardSignature = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&);
using SiluMulSignature = at::Tensor(const at::Tensor&, const at::Tensor&);
using SiluMulBackwardSignature = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                                    const at::Tensor&);

bool records_grad(std::initializer_list<const at::Tensor*> inputs) {
  if (!c10::GradMode::is_enabled()) return false;
  for (const at::Tensor* t : inputs)
    if (t->defined() && t->requires_grad()) return true;
  return false;
}

// (grad_x, grad_weight or undefined) through the dispatcher; grad_residual is added to grad_x.
std::pair<at::Tensor, at::Tensor> rms_norm_backward_call(const at::Tensor& grad_y, const at::Tensor& x,
                                                         const at::Tensor& weight, double eps,
                                                         const at::Tensor& grad_residual, bool need_weight) {
  static const auto op = typed_op<RmsNormBackwardSignature>("scorch::fused_rms_norm_backward");
  auto [grad_x, grad_w] = op.call(grad_y, x, weight, eps,
                                  grad_residual.defined() ? std::optional<at::Tensor>(grad_residual) : std::nullopt,
                                  need_weight);
  return {grad_x, need_weight ? grad_w : at::Tensor()};
}

// Saves x and weight; r is recomputed in the backward (one more read of x, no [rows] tensor to keep).
class FusedRmsNormFunction : public torch::autograd::Function<FusedRmsNormFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight, double eps) {
    static const auto op = typed_op<RmsNormSignature>("scorch::fused_rms_norm");
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->save_for_backward({x, weight});
    ctx->saved_data["eps"] = eps;
    return op.call(x, weight, eps);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    auto [grad_x, grad_w] = rms_norm_backward_call(grads[0], saved[0], saved[1], ctx->saved_data["eps"].toDouble(),
                                                   at::Tensor(), ctx->needs_input_grad(1));
    return {ctx->needs_input_grad(0) ? grad_x : at::Tensor(), grad_w, at::Tensor()};
  }
};

// Saves the sum (an output) and weight. d loss / d h = d loss / d delta = grad_sum + the norm's
// gradient with respect to the sum, formed in one pass by the backward op.
class FusedAddRmsNormFunction : public torch::autograd::Function<FusedAddRmsNormFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& h, const at::Tensor& delta,
                               const at::Tensor& weight, double eps) {
    static const auto op = typed_op<AddRmsNormSignature>("scorch::fused_add_rms_norm");
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [sum, y] = op.call(h, delta, weight, eps);
    ctx->save_for_backward({sum, weight});
    ctx->saved_data["eps"] = eps;
    ctx->set_materialize_grads(false);
    return {sum, y};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const at::Tensor& grad_sum = grads[0];
    const at::Tensor& grad_y = grads[1];
    if (!grad_y.defined()) return {grad_sum, grad_sum, at::Tensor(), at::Tensor()};
    const auto saved = ctx->get_saved_variables();
    auto [grad_x, grad_w] = rms_norm_backward_call(grad_y, saved[0], saved[1], ctx->saved_data["eps"].toDouble(),
                                                   grad_sum, ctx->needs_input_grad(2));
    return {grad_x, grad_x, grad_w, at::Tensor()};
  }
};

// cos / sin are tables (buffers), never differentiated: the autograd kernel refuses tables that
// require grad. Nothing is saved but them.
class FusedRopeFunction : public torch::autograd::Function<FusedRopeFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
    static const auto op = typed_op<RopeSignature>("scorch::fused_rope");
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->save_for_backward({cos, sin});
    return op.call(x, cos, sin);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static const auto op = typed_op<RopeBackwardSignature>("scorch::fused_rope_backward");
    const auto saved = ctx->get_saved_variables();
    const at::Tensor grad = grads[0].stride(3) == 1 ? grads[0] : grads[0].contiguous();
    return {op.call(grad, saved[0], saved[1]), at::Tensor(), at::Tensor()};
  }
};

class SiluMulFunction : public torch::autograd::Function<SiluMulFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& gate, const at::Tensor& up) {
    static const auto op = typed_op<SiluMulSignature>("scorch::silu_mul");
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->save_for_backward({gate, up});
    return op.call(gate, up);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static const auto op = typed_op<SiluMulBackwardSignature>("scorch::silu_mul_backward");
    const auto saved = ctx->get_saved_variables();
    auto [grad_gate, grad_up] = op.call(grads[0], saved[0], saved[1]);
    return {ctx->needs_input_grad(0) ? grad_gate : at::Tensor(), ctx->needs_input_grad(1) ? grad_up : at::Tensor()};
  }
};

// silu_and_mul(gu) = silu_mul(gate, up) on gu's halves: the same backward op, its two gradients
// concatenated into gu's.
class SiluAndMulFunction : public torch::autograd::Function<SiluAndMulFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& gu) {
    static const auto op = typed_op<SiluAndMulSignature>("scorch::silu_and_mul");
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->save_for_backward({gu});
    return op.call(gu);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static const auto op = typed_op<SiluMulBackwardSignature>("scorch::silu_mul_backward");
    const at::Tensor gu = ctx->get_saved_variables()[0];
    const int64_t inter = gu.size(-1) / 2;
    auto [grad_gate, grad_up] = op.call(grads[0], gu.narrow(-1, 0, inter), gu.narrow(-1, inter, inter));
    return {at::cat({grad_gate, grad_up}, -1)};
  }
};

at::Tensor fused_rms_norm_autograd(const at::Tensor& x, const at::Tensor& weight, double eps) {
  if (records_grad({&x, &weight})) return FusedRmsNormFunction::apply(x, weight, eps);
  static const auto op = typed_op<RmsNormSignature>("scorch::fused_rms_norm");
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  return op.call(x, weight, eps);
}

std::tuple<at::Tensor, at::Tensor> fused_add_rms_norm_autograd(const at::Tensor& h, const at::Tensor& delta,
                                                               const at::Tensor& weight, double eps) {
  if (records_grad({&h, &delta, &weight})) {
    auto out = FusedAddRmsNormFunction::apply(h, delta, weight, eps);
    return {out[0], out[1]};
  }
  static const auto op = typed_op<AddRmsNormSignature>("scorch::fused_add_rms_norm");
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  return op.call(h, delta, weight, eps);
}

at::Tensor fused_rope_autograd(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  TORCH_CHECK(!records_grad({&cos, &sin}), "scorch::fused_rope: cos / sin require grad, but the op treats them as "
              "constant tables (it has no gradient for them); pass tables that do not require grad (.detach())");
  if (records_grad({&x})) return FusedRopeFunction::apply(x, cos, sin);
  static const auto op = typed_op<RopeSignature>("scorch::fused_rope");
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  return op.call(x, cos, sin);
}

at::Tensor silu_mul_autograd(const at::Tensor& gate, const at::Tensor& up) {
  if (records_grad({&gate, &up})) return SiluMulFunction::apply(gate, up);
  static const auto op = typed_op<SiluMulSignature>("scorch::silu_mul");
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  return op.call(gate, up);
}

at::Tensor rope_kv_write_autograd(const at::Tensor& qkv, const at::Tensor& cos, const at::Tensor& sin,
                                  at::Tensor& k_cache, at::Tensor& v_cache, const at::Tensor& slot, int64_t q_heads) {
  check_inference_only("rope_kv_write", {&qkv, &cos, &sin, &k_cache, &v_cache});
  static const auto op = typed_op<RopeKvWriteSignature>("scorch::rope_kv_write");
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  return op.call(qkv, cos, sin, k_cache, v_cache, slot, q_heads);
}

at::Tensor decode_attention_autograd(const at::Tensor& qkv, const at::Tensor& cos, const at::Tensor& sin,
                                     at::Tensor& k_cache, at::Tensor& v_cache, const at::Tensor& slot,
                                     const std::optional<at::Tensor>& mask, int64_t q_heads, double scale) {
  const at::Tensor no_mask;
  check_inference_only("decode_attention", {&qkv, &cos, &sin, &k_cache, &v_cache, mask ? &*mask : &no_mask});
  static const auto op = typed_op<DecodeAttentionSignature>("scorch::decode_attention");
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  return op.call(qkv, cos, sin, k_cache, v_cache, slot, mask, q_heads, scale);
}

at::Tensor silu_and_mul_autograd(const at::Tensor& gu) {
  if (records_grad({&gu})) return SiluAndMulFunction::apply(gu);
  static const auto op = typed_op<SiluAndMulSignature>("scorch::silu_and_mul");
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  return op.call(gu);
}

}  // namespace
}  // namespace kernels

// --- the C++ entry points of kernels/ops.h -----------------------------------------------------

std::tuple<at::Tensor, at::Tensor> token_logprobs(const at::Tensor& logits, const at::Tensor& targets,
                                                  double temperature, bool with_entropy) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("scorch::token_logprobs", "")
                       .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, double, bool)>();
  return op.call(logits, targets, temperature, with_entropy);
}

std::tuple<at::Tensor, at::Tensor> lm_head_logprobs(const at::Tensor& hidden, const at::Tensor& weight,
                                                    const at::Tensor& targets, double temperature, bool with_entropy,
                                                    int64_t chunk, double logit_softcap) {
  using Signature = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&, double,
                                                       bool, int64_t, double);
  static const auto op = kernels::typed_op<Signature>("scorch::lm_head_logprobs");
  return op.call(hidden, weight, targets, temperature, with_entropy, chunk, logit_softcap);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> group_advantages(const at::Tensor& rewards,
                                                                            int64_t group_size,
                                                                            const std::string& mode, double eps,
                                                                            const std::string& scale) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("scorch::group_advantages", "")
                       .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>(
                           const at::Tensor&, int64_t, c10::string_view, double, c10::string_view)>();
  return op.call(rewards, group_size, mode, eps, scale);
}

at::Tensor fused_rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  static const auto op = kernels::typed_op<kernels::RmsNormSignature>("scorch::fused_rms_norm");
  return op.call(x, weight, eps);
}

std::tuple<at::Tensor, at::Tensor> fused_add_rms_norm(const at::Tensor& h, const at::Tensor& delta,
                                                      const at::Tensor& weight, double eps) {
  static const auto op = kernels::typed_op<kernels::AddRmsNormSignature>("scorch::fused_add_rms_norm");
  return op.call(h, delta, weight, eps);
}

at::Tensor fused_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  static const auto op = kernels::typed_op<kernels::RopeSignature>("scorch::fused_rope");
  return op.call(x, cos, sin);
}

at::Tensor silu_and_mul(const at::Tensor& gu) {
  static const auto op = kernels::typed_op<kernels::SiluAndMulSignature>("scorch::silu_and_mul");
  return op.call(gu);
}

at::Tensor silu_mul(const at::Tensor& gate, const at::Tensor& up) {
  static const auto op = kernels::typed_op<kernels::SiluMulSignature>("scorch::silu_mul");
  return op.call(gate, up);
}

at::Tensor rope_kv_write(const at::Tensor& qkv, const at::Tensor& cos, const at::Tensor& sin, at::Tensor& k_cache,
                         at::Tensor& v_cache, const at::Tensor& slot, int64_t q_heads) {
  static const auto op = kernels::typed_op<kernels::RopeKvWriteSignature>("scorch::rope_kv_write");
  return op.call(qkv, cos, sin, k_cache, v_cache, slot, q_heads);
}

at::Tensor decode_attention(const at::Tensor& qkv, const at::Tensor& cos, const at::Tensor& sin, at::Tensor& k_cache,
                            at::Tensor& v_cache, const at::Tensor& slot, const std::optional<at::Tensor>& mask,
                            int64_t q_heads, double scale) {
  static const auto op = kernels::typed_op<kernels::DecodeAttentionSignature>("scorch::decode_attention");
  return op.call(qkv, cos, sin, k_cache, v_cache, slot, mask, q_heads, scale);
}

at::Tensor sample_tokens(const at::Tensor& logits, const at::Tensor& uniforms, double temperature) {
  using Signature = at::Tensor(const at::Tensor&, const at::Tensor&, double);
  static const auto op = kernels::typed_op<Signature>("scorch::sample_tokens");
  return op.call(logits, uniforms, temperature);
}

}  // namespace scorch

TORCH_LIBRARY(scorch, m) {
  m.def("token_logprobs(Tensor logits, Tensor targets, float temperature=1.0, bool with_entropy=False) "
        "-> (Tensor logp, Tensor entropy)");
  m.def("token_logprobs_forward(Tensor logits, Tensor targets, float temperature, bool with_entropy) "
        "-> (Tensor logp, Tensor entropy, Tensor lse)");
  m.def("token_logprobs_backward(Tensor? grad_logp, Tensor? grad_entropy, Tensor logits, Tensor targets, "
        "Tensor lse, Tensor entropy, float temperature) -> Tensor");
  m.def("lm_head_logprobs(Tensor hidden, Tensor weight, Tensor targets, float temperature=1.0, "
        "bool with_entropy=False, int chunk=0, float logit_softcap=0.0) -> (Tensor logp, Tensor entropy)");
  m.def("group_advantages(Tensor rewards, int group_size, str mode='grpo', float eps=1e-4, str scale='group') "
        "-> (Tensor advantages, Tensor group_mean, Tensor group_std, Tensor zero_std)");
  // Inference-only decode-step ops (ops.h).
  m.def("fused_rms_norm(Tensor x, Tensor weight, float eps) -> Tensor");
  m.def("fused_add_rms_norm(Tensor h, Tensor delta, Tensor weight, float eps) -> (Tensor sum, Tensor y)");
  m.def("fused_rope(Tensor x, Tensor cos, Tensor sin) -> Tensor");
  m.def("silu_and_mul(Tensor gu) -> Tensor");
  m.def("silu_mul(Tensor gate, Tensor up) -> Tensor");
  // Their backward (the Autograd kernels' halves; also callable, e.g. for benchmarks).
  m.def("fused_rms_norm_backward(Tensor grad_y, Tensor x, Tensor weight, float eps, Tensor? grad_residual, "
        "bool need_weight_grad) -> (Tensor grad_x, Tensor grad_weight)");
  m.def("fused_rope_backward(Tensor grad, Tensor cos, Tensor sin) -> Tensor");
  m.def("silu_mul_backward(Tensor grad, Tensor gate, Tensor up) -> (Tensor grad_gate, Tensor grad_up)");
  m.def("sample_tokens(Tensor logits, Tensor uniforms, float temperature) -> Tensor");
  m.def("rope_kv_write(Tensor qkv, Tensor cos, Tensor sin, Tensor(a!) k_cache, Tensor(b!) v_cache, Tensor slot, "
        "int q_heads) -> Tensor");
  m.def("decode_attention(Tensor qkv, Tensor cos, Tensor sin, Tensor(a!) k_cache, Tensor(b!) v_cache, Tensor slot, "
        "Tensor? mask, int q_heads, float scale) -> Tensor");
}

TORCH_LIBRARY_IMPL(scorch, CPU, m) {
  m.impl("token_logprobs", &scorch::kernels::token_logprobs_cpu);
  m.impl("token_logprobs_forward", &scorch::kernels::token_logprobs_forward_cpu);
  m.impl("token_logprobs_backward", &scorch::kernels::token_logprobs_backward_cpu_op);
  m.impl("lm_head_logprobs", &scorch::kernels::lm_head_logprobs_backend);
  m.impl("group_advantages", &scorch::kernels::group_advantages_cpu_op);
  m.impl("fused_rms_norm", &scorch::kernels::fused_rms_norm_cpu);
  m.impl("fused_add_rms_norm", &scorch::kernels::fused_add_rms_norm_cpu);
  m.impl("fused_rope", &scorch::kernels::fused_rope_cpu);
  m.impl("silu_and_mul", &scorch::kernels::silu_and_mul_cpu);
  m.impl("silu_mul", &scorch::kernels::silu_mul_cpu);
  m.impl("fused_rms_norm_backward", &scorch::kernels::fused_rms_norm_backward_cpu);
  m.impl("fused_rope_backward", &scorch::kernels::fused_rope_backward_cpu);
  m.impl("silu_mul_backward", &scorch::kernels::silu_mul_backward_cpu);
  m.impl("sample_tokens", &scorch::kernels::sample_tokens_cpu);
  m.impl("rope_kv_write", &scorch::kernels::rope_kv_write_cpu);
  m.impl("decode_attention", &scorch::kernels::decode_attention_cpu);
}

#ifdef SCORCH_WITH_CUDA
TORCH_LIBRARY_IMPL(scorch, CUDA, m) {
  m.impl("token_logprobs", &scorch::kernels::token_logprobs_cuda);
  m.impl("token_logprobs_forward", &scorch::kernels::token_logprobs_forward_cuda);
  m.impl("token_logprobs_backward", &scorch::kernels::token_logprobs_backward_cuda_op);
  m.impl("lm_head_logprobs", &scorch::kernels::lm_head_logprobs_backend);
  m.impl("group_advantages", &scorch::kernels::group_advantages_cuda_op);
  m.impl("fused_rms_norm", &scorch::kernels::fused_rms_norm_cuda);
  m.impl("fused_add_rms_norm", &scorch::kernels::fused_add_rms_norm_cuda);
  m.impl("fused_rope", &scorch::kernels::fused_rope_cuda);
  m.impl("silu_and_mul", &scorch::kernels::silu_and_mul_cuda);
  m.impl("silu_mul", &scorch::kernels::silu_mul_cuda);
  m.impl("fused_rms_norm_backward", &scorch::kernels::fused_rms_norm_backward_cuda);
  m.impl("fused_rope_backward", &scorch::kernels::fused_rope_backward_cuda);
  m.impl("silu_mul_backward", &scorch::kernels::silu_mul_backward_cuda);
  m.impl("sample_tokens", &scorch::kernels::sample_tokens_cuda);
  m.impl("rope_kv_write", &scorch::kernels::rope_kv_write_cuda);
  m.impl("decode_attention", &scorch::kernels::decode_attention_cuda);
}
#endif

TORCH_LIBRARY_IMPL(scorch, Autograd, m) {
  m.impl("token_logprobs", &scorch::kernels::token_logprobs_autograd);
  m.impl("lm_head_logprobs", &scorch::kernels::lm_head_logprobs_autograd);
  m.impl("fused_rms_norm", &scorch::kernels::fused_rms_norm_autograd);
  m.impl("fused_add_rms_norm", &scorch::kernels::fused_add_rms_norm_autograd);
  m.impl("fused_rope", &scorch::kernels::fused_rope_autograd);
  m.impl("silu_and_mul", &scorch::kernels::silu_and_mul_autograd);
  m.impl("silu_mul", &scorch::kernels::silu_mul_autograd);
  m.impl("rope_kv_write", &scorch::kernels::rope_kv_write_autograd);
  m.impl("decode_attention", &scorch::kernels::decode_attention_autograd);
}

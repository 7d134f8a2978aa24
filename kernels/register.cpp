// Registers scorch's ops with the PyTorch dispatcher (TORCH_LIBRARY(scorch, ...)) for CPU, CUDA
// and Autograd, and defines the C++ entry points of kernels/ops.h on top of the dispatcher, so C++
// and Python (torch.ops.scorch.*) reach exactly the same kernels.
// token_logprobs is three ops: the public one (differentiable through the Autograd kernel below)
// and the internal forward (which also returns the per-row log-sum-exp the backward needs) and
// backward, each with a CPU and a CUDA kernel.
#include "kernels/ops.h"
#include "kernels/ops_impl.h"

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <cmath>
#include <optional>

namespace scorch {
namespace kernels {

void check_token_logprobs_inputs(const at::Tensor& logits, const at::Tensor& targets, double temperature) {
  TORCH_CHECK(logits.dim() == 2, "scorch::token_logprobs: logits must be [N, V], got ", logits.sizes());
  const auto dtype = logits.scalar_type();
  TORCH_CHECK(dtype == at::kBFloat16 || dtype == at::kHalf || dtype == at::kFloat,
              "scorch::token_logprobs: logits must be bfloat16, float16 or float32, got ", dtype);
  TORCH_CHECK(logits.size(1) >= 1, "scorch::token_logprobs: the vocabulary dimension is empty");
  TORCH_CHECK(logits.size(1) == 1 || logits.stride(1) == 1,
              "scorch::token_logprobs: the last dimension of logits must be contiguous (stride 1), got strides ",
              logits.strides(), "; call .contiguous() on a transposed or vocabulary-sliced tensor");
  TORCH_CHECK(targets.dim() == 1 && targets.size(0) == logits.size(0),
              "scorch::token_logprobs: targets must be [N] = [", logits.size(0), "], got ", targets.sizes());
  TORCH_CHECK(targets.scalar_type() == at::kLong, "scorch::token_logprobs: targets must be int64, got ",
              targets.scalar_type());
  TORCH_CHECK(targets.device() == logits.device(), "scorch::token_logprobs: targets are on ", targets.device(),
              " but logits on ", logits.device());
  TORCH_CHECK(std::isfinite(temperature) && temperature > 0.0,
              "scorch::token_logprobs: temperature must be a positive number, got ", temperature);
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

}  // namespace scorch

TORCH_LIBRARY(scorch, m) {
  m.def("token_logprobs(Tensor logits, Tensor targets, float temperature=1.0, bool with_entropy=False) "
        "-> (Tensor logp, Tensor entropy)");
  m.def("token_logprobs_forward(Tensor logits, Tensor targets, float temperature, bool with_entropy) "
        "-> (Tensor logp, Tensor entropy, Tensor lse)");
  m.def("token_logprobs_backward(Tensor? grad_logp, Tensor? grad_entropy, Tensor logits, Tensor targets, "
        "Tensor lse, Tensor entropy, float temperature) -> Tensor");
  m.def("group_advantages(Tensor rewards, int group_size, str mode='grpo', float eps=1e-4, str scale='group') "
        "-> (Tensor advantages, Tensor group_mean, Tensor group_std, Tensor zero_std)");
}

TORCH_LIBRARY_IMPL(scorch, CPU, m) {
  m.impl("token_logprobs", &scorch::kernels::token_logprobs_cpu);
  m.impl("token_logprobs_forward", &scorch::kernels::token_logprobs_forward_cpu);
  m.impl("token_logprobs_backward", &scorch::kernels::token_logprobs_backward_cpu_op);
  m.impl("group_advantages", &scorch::kernels::group_advantages_cpu_op);
}

#ifdef SCORCH_WITH_CUDA
TORCH_LIBRARY_IMPL(scorch, CUDA, m) {
  m.impl("token_logprobs", &scorch::kernels::token_logprobs_cuda);
  m.impl("token_logprobs_forward", &scorch::kernels::token_logprobs_forward_cuda);
  m.impl("token_logprobs_backward", &scorch::kernels::token_logprobs_backward_cuda_op);
  m.impl("group_advantages", &scorch::kernels::group_advantages_cuda_op);
}
#endif

TORCH_LIBRARY_IMPL(scorch, Autograd, m) { m.impl("token_logprobs", &scorch::kernels::token_logprobs_autograd); }

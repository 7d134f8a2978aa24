// The GRPO loss (see policy_loss.h for the formulas and the normalisation table). Every line here
// mirrors one line of TRL's GRPOTrainer._compute_loss, so a reader can check them side by side.
#include "trainers/common/policy_loss.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <stdexcept>

namespace scorch::trainers {

int64_t policy_loss_units(const at::Tensor& mask, GrpoLossType loss_type) {
  switch (loss_type) {
    case GrpoLossType::kDapo: return mask.to(at::kLong).sum().item<int64_t>();
    case GrpoLossType::kGrpo:
    case GrpoLossType::kDrGrpo: return mask.size(0);
    case GrpoLossType::kBnpo: return 1;
  }
  throw std::invalid_argument("policy_loss_units: unknown loss_type");
}

namespace {

void check(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument("policy_loss: " + what);
}

// TRL's masked_batch_mean: a per-row value ([B, 1], sequence level) is averaged over rows, a
// per-token one over the active tokens.
double masked_batch_mean(const at::Tensor& x, const at::Tensor& mask) {
  if (x.dim() == 2 && x.size(1) == 1) return x.to(at::kDouble).mean().item<double>();
  return ((x.to(at::kDouble) * mask.to(at::kDouble)).sum() / mask.to(at::kDouble).sum().clamp_min(1.0))
      .item<double>();
}

// The inputs besides logp / entropy against the mask's shape [B, T] (policy_loss has checked that
// logp has it too), and the options' own needs.
void check_token_inputs(const PolicyLossInputs& in, const PolicyLossOptions& o) {
  check(in.mask.defined() && in.mask.dim() == 2, "mask must be [B, T]");
  const auto shape = in.mask.sizes();
  check(in.advantages.defined() &&
            ((in.advantages.dim() == 1 && in.advantages.size(0) == shape[0]) || in.advantages.sizes() == shape),
        "advantages must be [B] or logp's shape [B, T]");
  check(!in.kl_coef.defined() ||
            (in.kl_coef.sizes() == shape && in.ref_logp.defined() && in.ref_logp.sizes() == shape),
        "kl_coef must have logp's shape and needs ref_logp of logp's shape");
  check(!in.old_logp.defined() || in.old_logp.sizes() == shape, "old_logp must have logp's shape");
  check(o.beta == 0.0 || (in.ref_logp.defined() && in.ref_logp.sizes() == shape),
        "beta > 0 needs ref_logp of logp's shape");
  check(o.loss_type != GrpoLossType::kDrGrpo || o.max_completion_length > 0, "dr_grpo needs max_completion_length > 0");
}

// −min(ρ·A, clip(ρ, 1−ε_low, 1+ε_high)·A), ρ = exp(log_w) (≤ delta in the first term when delta > 0);
// *ratio gets ρ before the delta cap (the clip metrics read it).
at::Tensor clipped_objective(const at::Tensor& log_w, const at::Tensor& adv, const PolicyLossOptions& o,
                             at::Tensor* ratio = nullptr) {
  at::Tensor coef_1 = at::exp(log_w);
  const at::Tensor coef_2 = at::clamp(coef_1, 1.0 - o.epsilon_low, 1.0 + o.epsilon_high);
  if (ratio != nullptr) *ratio = coef_1;
  if (o.delta > 0) coef_1 = at::clamp_max(coef_1, o.delta);
  return -at::minimum(coef_1 * adv, coef_2 * adv);
}

// k3 = exp(ref − logp) − (ref − logp) − 1.
at::Tensor k3_kl(const at::Tensor& ref_logp, const at::Tensor& logp) {
  const at::Tensor d = ref_logp - logp;
  return at::exp(d) - d - 1.0;
}

}  // namespace

PolicyLossOutput policy_loss(const PolicyLossInputs& in, const PolicyLossOptions& o, double denominator) {
  check(in.logp.defined() && in.logp.dim() == 2, "logp must be [B, T]");
  check(in.mask.defined() && in.mask.sizes() == in.logp.sizes(), "mask must have logp's shape [B, T]");
  check_token_inputs(in, o);
  const bool needs_entropy = o.top_entropy_quantile < 1.0 || o.entropy_coef != 0.0;
  check(!needs_entropy || (in.entropy.defined() && in.entropy.sizes() == in.logp.sizes()),
        "top_entropy_quantile < 1 or entropy_coef != 0 needs entropy of logp's shape");
  check(denominator > 0, "denominator must be > 0");

  const at::Tensor& logp = in.logp;                                          // [B, T]
  const at::Tensor mask = in.mask.to(logp.scalar_type());                    // [B, T] 0/1
  const at::Tensor old = in.old_logp.defined() ? in.old_logp : logp.detach();
  const at::Tensor adv = in.advantages.dim() == 1 ? in.advantages.to(logp.scalar_type()).unsqueeze(1)  // [B, 1]
                                                   : in.advantages.to(logp.scalar_type());             // [B, T]

  // Importance weights: per token, or one per sequence (GSPO) as the masked mean log-ratio.
  const at::Tensor log_ratio = logp - old;
  at::Tensor log_w = log_ratio;                                              // [B, T] or [B, 1]
  if (o.importance_sampling_level == ImportanceSamplingLevel::kSequence) {
    log_w = ((log_ratio * mask).sum(-1) / mask.sum(-1).clamp_min(1.0)).unsqueeze(-1);
  }
  at::Tensor coef_1;                                                         // ρ, for the clip metrics
  at::Tensor per_token = clipped_objective(log_w, adv, o, &coef_1);          // [B, T] or [B, 1]

  PolicyLossOutput out;
  at::Tensor entropy_mask;
  if (o.top_entropy_quantile < 1.0) {
    // Threshold: the (1 − q) quantile (linear interpolation, as torch.quantile) of the entropies of
    // the micro-batch's active tokens; ties at the threshold are kept.
    const at::Tensor ent = in.entropy.detach();
    const at::Tensor active = ent.masked_select(in.mask.to(at::kBool)).to(at::kFloat);
    if (active.numel() > 0) {
      const at::Tensor threshold = at::quantile(active, 1.0 - o.top_entropy_quantile);
      entropy_mask = (ent * mask.detach()).ge(threshold) & in.mask.to(at::kBool);
    } else {
      entropy_mask = in.mask.to(at::kBool);
    }
    per_token = per_token * entropy_mask.to(logp.scalar_type());
    out.metrics["entropy_mask_fraction"] =
        entropy_mask.to(at::kDouble).sum().item<double>() / std::max<double>(1.0, active.numel());
  }
  at::Tensor kl;
  if (o.beta != 0.0 || in.kl_coef.defined()) {
    kl = k3_kl(in.ref_logp, logp);                                           // [B, T]
    per_token = per_token + (in.kl_coef.defined() ? in.kl_coef.to(logp.scalar_type()) * kl : o.beta * kl);
  }
  if (o.entropy_coef != 0.0) per_token = per_token - o.entropy_coef * in.entropy;

  const at::Tensor masked = per_token * mask;                                // [B, T]
  at::Tensor numerator;
  switch (o.loss_type) {
    case GrpoLossType::kGrpo: numerator = (masked.sum(-1) / mask.sum(-1).clamp_min(1.0)).sum(); break;
    case GrpoLossType::kBnpo: numerator = masked.sum() / mask.sum().clamp_min(1.0); break;
    case GrpoLossType::kDrGrpo: numerator = masked.sum() / static_cast<double>(o.max_completion_length); break;
    case GrpoLossType::kDapo: numerator = masked.sum(); break;
  }
  out.loss = numerator / denominator;
  out.numerator = numerator.detach();

  at::NoGradGuard no_grad;
  const at::Tensor c1 = coef_1.detach();
  const at::Tensor low = c1.lt(1.0 - o.epsilon_low) & adv.lt(0);
  const at::Tensor high = c1.gt(1.0 + o.epsilon_high) & adv.gt(0);
  out.metrics["clip_ratio/low_mean"] = masked_batch_mean(low, mask);
  out.metrics["clip_ratio/high_mean"] = masked_batch_mean(high, mask);
  out.metrics["clip_ratio/region_mean"] = masked_batch_mean(low | high, mask);
  if (kl.defined()) out.metrics["kl"] = masked_batch_mean(kl.detach(), mask);
  if (in.entropy.defined()) out.metrics["entropy"] = masked_batch_mean(in.entropy.detach(), mask);
  return out;
}

bool policy_loss_is_token_separable(const PolicyLossOptions& o) {
  return o.importance_sampling_level == ImportanceSamplingLevel::kToken && o.top_entropy_quantile >= 1.0;
}

PolicyTokenTerms policy_token_terms(const PolicyLossInputs& in, const PolicyLossOptions& o) {
  check(policy_loss_is_token_separable(o),
        "policy_token_terms: sequence-level importance weights and the entropy mask are not per-token terms");
  check_token_inputs(in, o);
  const int64_t B = in.mask.size(0), T = in.mask.size(1);
  const at::Tensor mask = in.mask.to(at::kFloat);
  PolicyTokenTerms t;
  switch (o.loss_type) {  // the numerator table of policy_loss.h as one weight per token
    case GrpoLossType::kGrpo: t.weight = mask / mask.sum(-1, /*keepdim=*/true).clamp_min(1.0); break;
    case GrpoLossType::kBnpo: t.weight = mask / mask.sum().clamp_min(1.0); break;
    case GrpoLossType::kDrGrpo: t.weight = mask / static_cast<double>(o.max_completion_length); break;
    case GrpoLossType::kDapo: t.weight = mask; break;
  }
  t.weight = t.weight.reshape({-1});
  t.advantages = (in.advantages.dim() == 1 ? in.advantages.unsqueeze(1).expand({B, T}) : in.advantages)
                     .to(at::kFloat).reshape({-1});
  if (in.old_logp.defined()) t.old_logp = in.old_logp.to(at::kFloat).reshape({-1});
  if (o.beta != 0.0 || in.kl_coef.defined()) {
    t.ref_logp = in.ref_logp.to(at::kFloat).reshape({-1});
    t.kl_coef = in.kl_coef.defined() ? in.kl_coef.to(at::kFloat).reshape({-1})
                                     : at::full({B * T}, o.beta, mask.options());
  }
  return t;
}

at::Tensor policy_token_loss(const PolicyTokenTerms& t, const at::Tensor& logp, const at::Tensor& entropy,
                             int64_t begin, int64_t end, const PolicyLossOptions& o) {
  const auto slice = [&](const at::Tensor& x) { return x.slice(0, begin, end); };
  const at::Tensor old = t.old_logp.defined() ? slice(t.old_logp) : logp.detach();
  at::Tensor per_token = clipped_objective(logp - old, slice(t.advantages), o);
  if (t.ref_logp.defined()) per_token = per_token + slice(t.kl_coef) * k3_kl(slice(t.ref_logp), logp);
  if (o.entropy_coef != 0.0) per_token = per_token - o.entropy_coef * entropy;
  return (per_token * slice(t.weight)).sum();
}

}  // namespace scorch::trainers

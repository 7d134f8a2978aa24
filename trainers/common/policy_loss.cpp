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

}  // namespace

PolicyLossOutput policy_loss(const PolicyLossInputs& in, const PolicyLossOptions& o, double denominator) {
  check(in.logp.defined() && in.logp.dim() == 2, "logp must be [B, T]");
  check(in.mask.defined() && in.mask.sizes() == in.logp.sizes(), "mask must have logp's shape [B, T]");
  check(in.advantages.defined() && ((in.advantages.dim() == 1 && in.advantages.size(0) == in.logp.size(0)) ||
                                    in.advantages.sizes() == in.logp.sizes()),
        "advantages must be [B] or logp's shape [B, T]");
  check(!in.kl_coef.defined() || (in.kl_coef.sizes() == in.logp.sizes() && in.ref_logp.defined() &&
                                  in.ref_logp.sizes() == in.logp.sizes()),
        "kl_coef must have logp's shape and needs ref_logp of logp's shape");
  check(!in.old_logp.defined() || in.old_logp.sizes() == in.logp.sizes(), "old_logp must have logp's shape");
  check(o.beta == 0.0 || (in.ref_logp.defined() && in.ref_logp.sizes() == in.logp.sizes()),
        "beta > 0 needs ref_logp of logp's shape");
  const bool needs_entropy = o.top_entropy_quantile < 1.0 || o.entropy_coef != 0.0;
  check(!needs_entropy || (in.entropy.defined() && in.entropy.sizes() == in.logp.sizes()),
        "top_entropy_quantile < 1 or entropy_coef != 0 needs entropy of logp's shape");
  check(o.loss_type != GrpoLossType::kDrGrpo || o.max_completion_length > 0, "dr_grpo needs max_completion_length > 0");
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
  at::Tensor coef_1 = at::exp(log_w);
  const at::Tensor coef_2 = at::clamp(coef_1, 1.0 - o.epsilon_low, 1.0 + o.epsilon_high);
  if (o.delta > 0) coef_1 = at::clamp_max(coef_1, o.delta);
  at::Tensor per_token = -at::minimum(coef_1 * adv, coef_2 * adv);           // [B, T] or [B, 1]

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
    const at::Tensor d = in.ref_logp - logp;
    kl = at::exp(d) - d - 1.0;                                               // k3, [B, T]
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

}  // namespace scorch::trainers

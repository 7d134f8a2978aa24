// DPO losses (dpo_loss.h has the formulas and their sources).
#include "trainers/dpo/dpo_loss.h"

#include <ATen/ATen.h>

#include "common/error.h"
#include "common/strings.h"

namespace scorch::trainers {

std::vector<std::pair<std::string, double>> parse_dpo_losses(const std::string& loss_type,
                                                             const std::vector<double>& loss_weights,
                                                             double rpo_alpha) {
  std::vector<std::pair<std::string, double>> out;
  const std::vector<std::string> names = split(loss_type, ',');
  if (!loss_weights.empty() && loss_weights.size() != names.size()) {
    throw UserError("dpo.loss_weights has " + std::to_string(loss_weights.size()) + " entries but dpo.loss_type names " +
                    std::to_string(names.size()) + " loss(es); give one weight per loss");
  }
  for (size_t i = 0; i < names.size(); ++i) {
    const std::string name = trim(names[i]);
    if (name != "sigmoid" && name != "ipo" && name != "hinge" && name != "robust" && name != "sft") {
      throw UserError("dpo.loss_type: unknown loss '" + name + "'; use sigmoid, ipo, hinge, robust or sft "
                      "(a comma list combines them, e.g. sigmoid,sft with dpo.loss_weights [1, 0.5])");
    }
    out.emplace_back(name, loss_weights.empty() ? 1.0 : loss_weights[i]);
  }
  if (rpo_alpha > 0) out.emplace_back("sft", rpo_alpha);
  return out;
}

DpoLossOutput dpo_loss(const DpoLossInputs& in, const DpoLossOptions& o) {
  bool ipo = false;
  for (const auto& [name, w] : o.losses) ipo |= name == "ipo";
  const at::Tensor chosen_len = in.chosen_lengths.to(at::kFloat);
  const at::Tensor rejected_len = in.rejected_lengths.to(at::kFloat);
  at::Tensor chosen = in.chosen_logps, rejected = in.rejected_logps;          // [B]
  at::Tensor ref_chosen = in.ref_chosen_logps, ref_rejected = in.ref_rejected_logps;
  if (ipo) {  // TRL averages every log-prob over its completion when ipo is among the losses
    chosen = chosen / chosen_len, rejected = rejected / rejected_len;
    ref_chosen = ref_chosen / chosen_len, ref_rejected = ref_rejected / rejected_len;
  }
  const at::Tensor w = in.weights.defined() ? in.weights.to(chosen.scalar_type()) : at::ones_like(chosen);
  const at::Tensor h = (chosen - ref_chosen) - (rejected - ref_rejected);    // [B]
  const double beta = o.beta, eps = o.label_smoothing;

  at::Tensor loss = at::zeros({}, chosen.options());
  for (const auto& [name, weight] : o.losses) {
    if (weight == 0.0) continue;
    at::Tensor term;
    if (name == "sigmoid") {
      term = (-(1 - eps) * at::log_sigmoid(beta * h) - eps * at::log_sigmoid(-beta * h)) * w;
      term = term.mean();
    } else if (name == "robust") {
      term = ((-(1 - eps) * at::log_sigmoid(beta * h) + eps * at::log_sigmoid(-beta * h)) / (1 - 2 * eps) * w).mean();
    } else if (name == "hinge") {
      term = (at::relu(1 - beta * h) * w).mean();
    } else if (name == "ipo") {
      term = ((h - 1 / (2 * beta)).pow(2) * w).mean();
    } else if (name == "sft") {
      // The NLL of the chosen tokens is −Σ log π(y+_t) = −chosen sum (before any ipo averaging).
      const at::Tensor nll = -in.chosen_logps * w;
      term = o.sft_per_sequence ? (nll / chosen_len).mean() : nll.sum() / chosen_len.sum().clamp_min(1);
    } else {
      throw UserError("unknown DPO loss '" + name + "'");
    }
    loss = loss + weight * term;
  }

  DpoLossOutput out;
  out.loss = loss;
  const at::Tensor cr = (beta * (chosen - ref_chosen)).detach().to(at::kDouble);
  const at::Tensor rr = (beta * (rejected - ref_rejected)).detach().to(at::kDouble);
  out.metrics["rewards/chosen"] = cr.mean().item<double>();
  out.metrics["rewards/rejected"] = rr.mean().item<double>();
  out.metrics["rewards/margins"] = (cr - rr).mean().item<double>();
  out.metrics["rewards/accuracies"] = cr.gt(rr).to(at::kDouble).mean().item<double>();
  out.metrics["logps/chosen"] = chosen.detach().to(at::kDouble).mean().item<double>();
  out.metrics["logps/rejected"] = rejected.detach().to(at::kDouble).mean().item<double>();
  return out;
}

}  // namespace scorch::trainers

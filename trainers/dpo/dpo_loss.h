// The DPO family of preference losses (ALGORITHMS.md §2, §3) as a pure function on per-pair
// sequence log-probs, with TRL's definitions (trl/trainer/dpo_trainer.py, `dpo_loss`):
//   logps           π(y) = Σ_t log π(y_t | x, y_<t) over completion tokens; when "ipo" is one of the
//                   losses TRL divides EVERY log-prob (policy and reference) by the completion length
//   h               (π(y+) − π_ref(y+)) − (π(y−) − π_ref(y−))
//   sigmoid         −(1−ε)·log σ(β h) − ε·log σ(−β h)                  (ε = label_smoothing: cDPO)
//   robust          [−(1−ε)·log σ(β h) + ε·log σ(−β h)] / (1 − 2ε)
//   hinge           relu(1 − β h)
//   ipo             (h − 1/(2β))²                                      (h from length-averaged logps)
//   sft             NLL of the chosen tokens, token mean over the batch (TRL's nll_loss; rpo_alpha
//                   adds the same term with weight rpo_alpha)
// The batch loss is Σ_k weight_k · mean_pairs(w_i · L_k,i), with w_i the pair's data weight (1 in
// TRL; ScPO's vote margin). For sft: Σ_i w_i·NLL_i / Σ_i |y+_i|.
// ScPO (§3): L = −w·log σ(β h) − (α·w/|y+|)·log π(y+): losses {sigmoid: 1, sft: α} with
// sft_per_sequence = true (each pair's NLL divided by its own length, then the mean over pairs).
// Metrics (TRL's names): rewards/chosen = β·(π(y+) − π_ref(y+)), rewards/rejected likewise,
// rewards/margins, rewards/accuracies (chosen reward > rejected reward), logps/chosen,
// logps/rejected — batch means of the (length-averaged under ipo) quantities.
#pragma once
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

namespace scorch::trainers {

struct DpoLossOptions {
  double beta = 0.1;
  // (name, weight): names sigmoid | ipo | hinge | robust | sft.
  std::vector<std::pair<std::string, double>> losses = {{"sigmoid", 1.0}};
  double label_smoothing = 0.0;  // sigmoid (cDPO) and robust; < 0.5
  bool sft_per_sequence = false;  // ScPO: NLL_i / |y+_i| per pair, mean over pairs
};

struct DpoLossInputs {
  at::Tensor chosen_logps, rejected_logps;          // [B] policy sequence sums (with grad)
  at::Tensor ref_chosen_logps, ref_rejected_logps;  // [B] reference sequence sums
  at::Tensor chosen_lengths, rejected_lengths;      // [B] completion tokens (> 0)
  at::Tensor weights;                               // [B] pair weights; undefined = all 1
};

struct DpoLossOutput {
  at::Tensor loss;                        // scalar: the batch loss (backward this)
  std::map<std::string, double> metrics;  // batch means, TRL's names (see above)
};

// Parses dpo.loss_type ("sigmoid" or a comma list such as "sigmoid,sft") with dpo.loss_weights
// (empty = all 1) and rpo_alpha (> 0 adds sft with that weight). UserError for an unknown name.
std::vector<std::pair<std::string, double>> parse_dpo_losses(const std::string& loss_type,
                                                             const std::vector<double>& loss_weights,
                                                             double rpo_alpha);

DpoLossOutput dpo_loss(const DpoLossInputs& inputs, const DpoLossOptions& options);

}  // namespace scorch::trainers

// The policy loss of GRPO and SCoRe (ALGORITHMS.md §4) as a pure function on tensors, with TRL's exact
// definitions so configs carry over:
//   ρ = exp(logp − old_logp)                    token level; sequence level (GSPO): one ρ per row,
//                                               exp(Σ_t mask·(logp − old) / max(Σ_t mask, 1))
//   l = −min(ρ·A, clip(ρ, 1−ε_low, 1+ε_high)·A)   with ρ in the first term clamped to ≤ delta when
//                                               delta > 0 (TRL's two-sided clip; delta > 1+ε_high)
//   l ← l · entropy_mask                        top_entropy_quantile q < 1: only tokens whose entropy
//                                               is ≥ the (1−q) quantile of the micro-batch's active
//                                               entropies train the policy term (not the KL)
//   l ← l + β·(exp(ref − logp) − (ref − logp) − 1)   k3 KL, when β > 0; β may be per token
//                                               (kl_coef [B, T], SCoRe's β2 on turn 1, β1 on turn 2)
//   l ← l − entropy_coef·entropy                 scorch's optional entropy bonus (not in TRL; 0 = off)
// With μ = 1 old_logp is logp.detach(): ρ = 1 in value and ∇l = −A·∇logp (inside the clip range),
// which is REINFORCE with the advantages as returns. A is one value per row (GRPO's outcome
// advantage, [B]) or one per token ([B, T]: SCoRe's per-turn rewards, ALGORITHMS.md §7).
//
// Gradient accumulation. The training loop (train/loop.h) divides each micro-batch's loss by a
// denominator = Σ over the step's micro-batches (and ranks) of policy_loss_units(). The loss of a
// micro-batch is numerator / denominator, where (m = mask, L = max_completion_length):
//   loss_type  units per micro-batch   numerator                     whole step (= TRL)
//   grpo       rows B                  Σ_b Σ_t l·m / max(Σ_t m, 1)    mean over all sequences of the
//                                                                   per-sequence token means
//   dr_grpo    rows B                  Σ l·m / L                     Σ l·m / (all sequences · L)
//   dapo       active tokens Σ m       Σ l·m                         Σ l·m / (global active tokens)
//   bnpo       1                       Σ l·m / max(Σ m, 1)           mean over micro-batches of the
//                                                                   local token mean (TRL: local)
// grpo and dr_grpo equal TRL's "per-micro-batch value / gradient_accumulation_steps" because every
// micro-batch holds the same number of rows; dapo, grpo and dr_grpo are split-invariant (1×8 and
// 4×2 give the same gradient); bnpo is not, by TRL's definition.
#pragma once
#include <cstdint>
#include <map>
#include <string>

#include <ATen/core/Tensor.h>

#include "config/options.h"

namespace scorch::trainers {

struct PolicyLossOptions {
  GrpoLossType loss_type = GrpoLossType::kDapo;
  double epsilon_low = 0.2;
  double epsilon_high = 0.2;
  double delta = 0.0;                 // > 0: ρ ≤ delta in the unclipped term; 0 = off
  double beta = 0.0;                  // k3 KL coefficient; > 0 needs ref_logp
  ImportanceSamplingLevel importance_sampling_level = ImportanceSamplingLevel::kToken;
  double top_entropy_quantile = 1.0;  // < 1 needs entropy
  double entropy_coef = 0.0;          // != 0 needs entropy (with grad)
  int64_t max_completion_length = 0;  // dr_grpo's L (> 0)
};

struct PolicyLossInputs {
  at::Tensor logp;        // [B, T] fp32 policy log-probs of the completion tokens (with grad)
  at::Tensor old_logp;    // [B, T] log π_old; undefined = logp.detach() (μ = 1)
  at::Tensor ref_logp;    // [B, T] reference log-probs; undefined when beta = 0 and no kl_coef
  at::Tensor kl_coef;     // [B, T] per-token β replacing options.beta; undefined = options.beta
  at::Tensor entropy;     // [B, T] policy entropy per position; may be undefined (see options)
  at::Tensor advantages;  // [B] one per sequence, or [B, T] one per token
  at::Tensor mask;        // [B, T] completion mask (bool or 0/1); prompt and padding are 0
};

struct PolicyLossOutput {
  at::Tensor loss;        // scalar: numerator / denominator (backward this)
  at::Tensor numerator;   // scalar, detached: the micro-batch's undivided loss (see the table)
  // Micro-batch means with TRL's names and definitions (means over active tokens, or over rows at
  // sequence level for the clip ratios): "clip_ratio/low_mean", "clip_ratio/high_mean",
  // "clip_ratio/region_mean", "kl" (β > 0 or kl_coef), "entropy" (entropy given),
  // "entropy_mask_fraction".
  std::map<std::string, double> metrics;
};

// The micro-batch's share of the loop's denominator (see the table above). Throws
int64_t policy_loss_units(const at::Tensor& mask, GrpoLossType loss_type);

// Throws std::invalid_argument for inconsistent shapes or missing inputs the options need.
PolicyLossOutput policy_loss(const PolicyLossInputs& inputs, const PolicyLossOptions& options, double denominator);

// The same loss as a sum of per-token terms, for the LM head to differentiate in the forward
// (Transformer::token_loss): possible when every term depends on its own token only, i.e. token-level
// importance weights (not GSPO's sequence level) and no entropy mask (its quantile spans the batch).
bool policy_loss_is_token_separable(const PolicyLossOptions& options);

// policy_loss's inputs other than logp / entropy, flattened to [B·T] (undefined where unused), and
// each token's weight in the micro-batch's numerator (the table above: mask / max(row tokens, 1) for
// grpo, mask / L for dr_grpo, mask for dapo, mask / max(all tokens, 1) for bnpo).
struct PolicyTokenTerms {
  at::Tensor old_logp, ref_logp, kl_coef, advantages, weight;
};
// Throws std::invalid_argument for options that are not separable or inconsistent shapes.
PolicyTokenTerms policy_token_terms(const PolicyLossInputs& inputs, const PolicyLossOptions& options);

// Σ_t weight_t · l_t over the flattened tokens [begin, end), with logp / entropy the values of those
// tokens: the micro-batch's numerator summed over all chunks (policy_loss's, to rounding).
at::Tensor policy_token_loss(const PolicyTokenTerms& terms, const at::Tensor& logp, const at::Tensor& entropy,
                             int64_t begin, int64_t end, const PolicyLossOptions& options);

}  // namespace scorch::trainers

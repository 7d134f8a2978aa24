// The policy-gradient core GRPO and SCoRe share (and DPO's completion log-probs): rows laid out
// as prompt ‖ completion ‖ pad, the log-probs of the completion tokens under a model, and one
// micro-batch's policy-loss step (policy_loss.h) with its backward.
//
// Layout. Each row is its prompt, then every token after it, then padding (right padding), so the
// causal mask of a plain forward is exact and positions are 0..len−1 as in the rollout; completion
// token j of row b is predicted by the hidden state at P_b − 1 + j, and only those hidden states
// go through the LM head.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

namespace scorch {
class Transformer;
struct Config;
}  // namespace scorch

namespace scorch::trainers {

struct PolicyLossOptions;

// The tokens of one row: its prompt, then its completion (every token after the prompt);
// `generated` (may be null or empty = all) marks the completion tokens that have a target.
struct RowTokens {
  const std::vector<int64_t>* prompt = nullptr;
  const std::vector<int64_t>* completion = nullptr;
  const std::vector<uint8_t>* generated = nullptr;
};

// What the model's forward runs for R rows, and where each completion token's predicting hidden
// state sits in its output. Padded: one row each (prompt ‖ completion ‖ pad, causal). Packed: rows
// share forward rows of up to twice the longest row's length (first fit, longest first), with
// positions restarting at 0 for each and a block-diagonal causal mask, so the forward does almost
// no work on padding; the log-probs are the same up to floating-point reassociation. Used when it
// saves forward rows and the packed rows stay within 2,048 tokens (their mask is a dense T x T).
struct RowLayout {
  at::Tensor input_ids;                 // [Q, T] int64
  at::Tensor positions;                 // [Q, T] int64
  std::optional<at::Tensor> attention;  // [Q, 1, T, T] bool when packed; nullopt = causal
  at::Tensor where;                     // [R, C] int64: q·T + t of the hidden state predicting token j of row r
  int64_t slots = 0;                    // Q·T: the token positions the forward computes
  bool packed = false;
};

// Rows padded to one tensor on `device`, and the layout of their forward.
struct PackedRows {
  at::Tensor input_ids;       // [R, S] int64 prompt ‖ completion ‖ pad
  at::Tensor prompt_lengths;  // [R] int64
  at::Tensor completion_ids;  // [R, C] int64 targets; −100 where not generated and past each completion
  int64_t tokens = 0;         // real (unpadded) tokens of the R rows
  RowLayout layout;           // packed when packing saves forward rows (and `pack`), else padded
};

PackedRows pack_rows(const std::vector<RowTokens>& rows, int64_t pad_id, c10::Device device, bool pack = true);

// One micro-batch of policy-gradient rows on the model's device.
struct PolicyBatch {
  at::Tensor input_ids;        // [B, S] int64 prompt ‖ completion ‖ pad
  at::Tensor prompt_lengths;   // [B] int64
  at::Tensor completion_mask;  // [B, C] bool: 1 for completion tokens that train
  at::Tensor completion_ids;   // [B, C] int64 (−100 where not generated or past the row)
  at::Tensor advantages;       // [B] one per sequence, or [B, C] one per token
  at::Tensor kl_coef;          // [B, C] per-token β; undefined = the loss options' beta
  at::Tensor rollout_logp;     // [B, C] fp32 sampling log-probs of the engine
  at::Tensor old_logp;         // [B, C] π_old (μ > 1); undefined for μ = 1
  at::Tensor ref_logp;         // [B, C] reference model (β > 0); undefined otherwise
  int64_t units = 0;           // policy_loss_units of this micro-batch
  RowLayout layout;            // the forward's rows (pack_rows)
  int64_t tokens = 0;          // real tokens of the B rows
};

// One row before padding: the prompt, then every token after it. GRPO: the completion, all
// generated. SCoRe: turn 1 ‖ continuation ‖ turn 2, where the environment's continuation tokens
// are not generated (never trained, no log-prob).
struct PolicyRow {
  const std::vector<int64_t>* prompt = nullptr;
  std::vector<int64_t> completion;
  std::vector<uint8_t> generated;   // [completion] 1 = sampled by the policy; empty = all
  std::vector<uint8_t> train;       // [completion] 1 = the loss sees it (⊆ generated); empty = generated
  std::vector<float> logprobs;      // [completion] sampling log-probs (0 where not generated)
  std::vector<float> advantages;    // [1] one per sequence, or [completion] one per token
  std::vector<float> kl_coef;       // empty, or [completion] per-token β
};

// Pads `rows` into one micro-batch on `device`. Targets of tokens that were not generated are
// −100. Advantages are [B] when every row has one value, else [B, C] (a per-sequence row is
// broadcast over its tokens). `units` is left 0 for the caller.
PolicyBatch pack_policy_batch(const std::vector<PolicyRow>& rows, int64_t pad_id, c10::Device device, bool pack = true);

// "forward/padding": the share of the token positions the batches' forwards compute that are
// padding (after packing); "forward/padding_unpacked": the same had the rows been padded.
void add_padding_metrics(const std::vector<PolicyBatch>& batches, std::map<std::string, double>& metrics);

// Log-probs [R, C] of `completion_ids` (−100 = no target, log-prob 0) and, when with_entropy, the
// entropies [R, C], under `model` at `temperature` (the logits scaled by 1/T as the sampler did),
// for rows `input_ids` [R, S] whose completions start at `prompt_lengths` [R].
std::pair<at::Tensor, at::Tensor> completion_token_logprobs(const Transformer& model, const at::Tensor& input_ids,
                                                            const at::Tensor& prompt_lengths,
                                                            const at::Tensor& completion_ids, double temperature,
                                                            bool with_entropy);

// The same through a row layout (pack_rows): the rows' completion log-probs [R, C] (and entropies).
std::pair<at::Tensor, at::Tensor> completion_token_logprobs(const Transformer& model, const RowLayout& layout,
                                                            const at::Tensor& completion_ids, double temperature,
                                                            bool with_entropy);

// completion_token_logprobs of a policy batch's rows, through its layout.
std::pair<at::Tensor, at::Tensor> completion_logprobs(const Transformer& model, const PolicyBatch& batch,
                                                      double temperature, bool with_entropy);

// The policy loss's options from the config's grpo.* keys (clip range, δ, β, GSPO level, entropy
// settings, dr_grpo's L = generation.max_completion_length). SCoRe starts from these too.
PolicyLossOptions policy_loss_options(const Config& config);

// One micro-batch of a policy-gradient step: policy log-probs of the batch's rollout tokens,
// policy_loss (inputs from the batch: advantages, π_old, reference, per-token β) with `options`,
// divided by `denominator`, and backward. Adds the loss's metrics as means over `num_batches`
// micro-batches, and with `compare_rollout` the gap between the engine's sampling log-probs and
// the policy's on the same tokens ("rollout/logprob_diff_mean|max"). Returns the undivided loss
// numerator and the (detached) policy log-probs [B, C]. When the options make the loss a sum of
// per-token terms (policy_loss_is_token_separable) the LM head differentiates it in the forward
// (Transformer::token_loss, policy_token_loss); otherwise log-probs, then policy_loss, then backward.
std::pair<double, at::Tensor> policy_gradient_step(const Transformer& model, const PolicyBatch& batch,
                                                   double temperature, const PolicyLossOptions& options,
                                                   double denominator, size_t num_batches, bool compare_rollout,
                                                   std::map<std::string, double>& metrics);

}  // namespace scorch::trainers

// Sampling parameters, their validation, and the next-token sampler of the rollout engine.
//
// The sampler works on fp32 logits [B, V] (one row per sequence) in four steps:
//   1. temperature: z = logits / T                              (T = 0 means greedy: argmax, no RNG)
//   2. top-k: keep the k largest z of each row (ties at the k-th value are all kept)
//   3. top-p: keep the smallest set of the highest-probability tokens whose softmax(z) mass,
//      computed AFTER top-k renormalisation, reaches p (the token crossing p is kept; the top token
//      is always kept)
//   4. draw one token from softmax of the kept z (renormalised over the kept set).
//
// Reported log-probability of a sampled token (what the trainers store as log π_old):
//   logprob = log_softmax(logits / T)[token]    -- over the FULL vocabulary, temperature-scaled,
//   NOT the truncated, renormalised top-k/top-p distribution the token was actually drawn from.
// The trainers' importance ratio π_θ(y_t)/π_old(y_t) recomputes π_θ with a full-vocabulary
// log-softmax at the same temperature (kernels' token_logprobs(logits, targets, temperature)), so
// π_old must be on the same footing: with top_p = 1 and top_k = 0 both are exactly the sampling
// distribution; with truncation the stored value is ≤ the truncated one by log(kept mass). For
// greedy decoding (T = 0) the reported value is log_softmax(logits)[token] (temperature 1).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

namespace scorch {

struct SamplingParams {
  double temperature = 1.0;        // 0 = greedy
  double top_p = 1.0;              // in (0, 1]; 1 = off
  int64_t top_k = 0;               // 0 = off
  int64_t max_new_tokens = 128;    // per sample (also capped by the model's context)
  std::vector<int64_t> stop_token_ids;   // extra ids that end a sample (finish_reason "stop")
  std::vector<std::string> stop_strings; // end a sample once its decoded text contains one ("stop")
  uint64_t seed = 0;               // same seed + same batch => same samples (bitwise on CPU)
  int64_t n = 1;                   // samples per prompt
};

// Throws UserError naming the field for n < 1, temperature < 0 (or non-finite), top_p outside
// (0, 1], top_k < 0, max_new_tokens < 1, an empty stop string.
void validate_sampling_params(const SamplingParams& params);
// Throws UserError for an empty prompt or a prompt of `context_length` tokens or more (no room to
// generate); `index` names the prompt in the message. Ids outside [0, vocab_size) are errors too.
void validate_prompt(const std::vector<int64_t>& prompt, int64_t index, int64_t context_length, int64_t vocab_size);

// Boolean mask [B, V] of the tokens top-p keeps: per row, the smallest set of the most probable
// tokens whose probability mass is >= top_p. probs [B, V] (rows sum to 1). Ties in probability are
// broken by the sort (any of the tied tokens may be the one that crosses p).
at::Tensor top_p_keep_mask(const at::Tensor& probs, double top_p);
// logits [B, V] fp32 -> the same with every token outside the k largest of its row set to -inf.
at::Tensor top_k_filter(const at::Tensor& logits, int64_t top_k);

struct SampledTokens {
  at::Tensor tokens;    // [B] int64, on the logits' device
  at::Tensor logprobs;  // [B] fp32: log_softmax(logits / T)[token] (see the note at the top)
};

// Draws one token per row. logits [B, V] (any float dtype; computed in fp32). `generator` must
// live on the logits' device; it is only used when temperature > 0. No host synchronisation.
// On CUDA without top-k / top-p it is sample_next_tokens_fused; otherwise the ATen composition.
// A row whose logits hold a NaN or +inf (or are all -inf) gets token -1 from either path; the engine
// turns that into an error.
SampledTokens sample_next_tokens(const at::Tensor& logits, const SamplingParams& params, at::Generator& generator);
// The same distribution without top-k / top-p (params.top_k must be 0 and top_p 1), through the
// fused kernels: scorch::sample_tokens (one uniform per row, inverse CDF over the weights
// exp((x - max) / T) in float64) and scorch::token_logprobs for the reported log-probability, with
// no [B, V] temporary (the logits may stay bf16). Greedy: argmax, then token_logprobs at T = 1.
// On CPU it runs the ops' CPU code (the engine keeps the composition there, whose draws it
// documents); the same uniforms give the same tokens on either path up to float rounding at the
// boundary between two tokens.
SampledTokens sample_next_tokens_fused(const at::Tensor& logits, const SamplingParams& params, at::Generator& generator);
// The draw itself: one token per row of probs [B, V] (non-negative, unnormalised), token i with
// probability probs[i] / sum(probs) by inverse-CDF sampling (one uniform per row); -1 for a row
// whose mass is 0 or NaN.
at::Tensor inverse_cdf_draw(const at::Tensor& probs, at::Generator& generator);

// A generator on `device` seeded with `seed` (independent of torch's global generator).
at::Generator make_sampling_generator(uint64_t seed, const at::Device& device);

}  // namespace scorch

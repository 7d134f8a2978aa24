// Next-token sampling: temperature, top-k, top-p, and the draw itself. See sampling.h for the exact
// definition of the reported log-probabilities.
//
// The draw is inverse-CDF sampling: per row one uniform u in [0, 1), the (unnormalised) probabilities
// accumulated in float64, and the first token whose cumulative mass exceeds u * total. It picks i
// with probability exactly p_i / sum(p) (up to float64 rounding of the running sum), needs no host
// synchronisation and is deterministic for a seeded generator. It replaced the exponential race
// (argmax p_i / E_i, which is what at::multinomial does for one sample): that draws one exponential
// variate -- a log -- per vocabulary entry, which on CPU cost 2x the lm_head matmul at batch 32
// with a 32k vocabulary; the cumulative sum is a single add per entry (tools/bench/generate).
#include "rollout/sampling.h"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>
#include <mutex>
#include <stdexcept>

#include "common/error.h"
#include "kernels/ops.h"

namespace scorch {

void validate_sampling_params(const SamplingParams& p) {
  if (p.n < 1 || p.n > (1 << 20)) {
    throw UserError("sampling: n (samples per prompt) must be in [1, 1048576], got " + std::to_string(p.n));
  }
  if (!std::isfinite(p.temperature) || p.temperature < 0 || p.temperature > 100) {
    throw UserError("sampling: temperature must be in [0, 100] (0 = greedy), got " + std::to_string(p.temperature));
  }
  if (!(p.top_p > 0.0 && p.top_p <= 1.0)) {
    throw UserError("sampling: top_p must be in (0, 1] (1 = off), got " + std::to_string(p.top_p));
  }
  if (p.top_k < 0) throw UserError("sampling: top_k must be >= 0 (0 = off), got " + std::to_string(p.top_k));
  if (p.max_new_tokens < 1) {
    throw UserError("sampling: max_new_tokens must be >= 1, got " + std::to_string(p.max_new_tokens));
  }
  for (const auto& s : p.stop_strings) {
    if (s.empty()) throw UserError("sampling: a stop string is empty (remove it)");
  }
}

void validate_prompt(const std::vector<int64_t>& prompt, int64_t index, int64_t context_length, int64_t vocab_size) {
  const std::string name = "prompt " + std::to_string(index);
  if (prompt.empty()) throw UserError(name + " is empty: give at least one token (or a non-empty text)");
  if (static_cast<int64_t>(prompt.size()) >= context_length) {
    throw UserError(name + " has " + std::to_string(prompt.size()) + " tokens, which leaves no room to generate in the " +
                    "model's context of " + std::to_string(context_length) + " tokens (shorten the prompt)");
  }
  for (int64_t id : prompt) {
    if (id < 0 || id >= vocab_size) {
      throw UserError(name + " holds token id " + std::to_string(id) + " outside the vocabulary [0, " +
                      std::to_string(vocab_size) + ") (tokenizer and model do not match?)");
    }
  }
}

at::Tensor top_k_filter(const at::Tensor& logits, int64_t top_k) {
  const int64_t V = logits.size(-1);
  if (top_k <= 0 || top_k >= V) return logits;
  // k-th largest value per row [B, 1]; everything strictly below it goes (ties at it stay).
  const at::Tensor kth = std::get<0>(logits.topk(top_k, -1, /*largest=*/true, /*sorted=*/false)).amin(-1, true);
  return logits.masked_fill(logits.lt(kth), -std::numeric_limits<float>::infinity());
}

at::Tensor top_p_keep_mask(const at::Tensor& probs, double top_p) {
  if (top_p >= 1.0) return at::ones_like(probs, probs.options().dtype(at::kBool));
  auto [sorted, order] = probs.sort(-1, /*descending=*/true);  // [B, V]
  // A token is kept iff the mass strictly before it (in descending order) is < p: that is the
  // smallest prefix reaching p, and it always includes the most probable token.
  const at::Tensor before = sorted.cumsum(-1) - sorted;
  const at::Tensor keep_sorted = before.lt(top_p);
  return at::zeros_like(keep_sorted).scatter(-1, order, keep_sorted);
}

at::Tensor inverse_cdf_draw(const at::Tensor& probs, at::Generator& generator) {
  // float64 running sum: with V ~ 1e5 entries a float32 sum would drift by ~1e-3 of the total.
  const at::Tensor cdf = probs.cumsum(-1, at::kDouble);                    // [B, V]
  const at::Tensor total = cdf.narrow(-1, cdf.size(-1) - 1, 1);             // [B, 1]
  const at::Tensor u = at::empty_like(total).uniform_(0.0, 1.0, generator);  // [B, 1] in [0, 1)
  // u * total can round up to total itself; the largest double below it keeps the target inside
  // the last token with mass > 0, so a token of probability 0 (cut by top-k/top-p) is never drawn.
  const at::Tensor below = total * kSampleBelowOne;
  const at::Tensor target = at::minimum(u * total, below);
  // First index with cdf > target: the token whose interval [cdf_{i-1}, cdf_i) holds the target.
  const at::Tensor index = at::searchsorted(cdf, target, /*out_int32=*/false, /*right=*/true).squeeze(-1);
  return index.masked_fill(total.squeeze(-1).gt(0.0).logical_not(), -1);  // NaN or no mass: -1, as sample_tokens
}

SampledTokens sample_next_tokens_fused(const at::Tensor& logits_in, const SamplingParams& p, at::Generator& generator) {
  if (p.top_k != 0 || p.top_p < 1.0) {
    throw std::invalid_argument("sample_next_tokens_fused: top-k / top-p need the composed sampler");
  }
  const at::Tensor logits = logits_in.stride(-1) == 1 ? logits_in : logits_in.contiguous();  // [B, V]
  SampledTokens out;
  const double t = p.temperature == 0.0 ? 1.0 : p.temperature;
  if (p.temperature == 0.0) {
    out.tokens = logits.argmax(-1);
  } else {
    const at::Tensor u = at::empty({logits.size(0)}, logits.options().dtype(at::kDouble)).uniform_(0.0, 1.0, generator);
    out.tokens = sample_tokens(logits, u, t);
  }
  out.logprobs = std::get<0>(token_logprobs(logits, out.tokens, t, /*with_entropy=*/false));
  return out;
}

SampledTokens sample_next_tokens(const at::Tensor& logits_in, const SamplingParams& p, at::Generator& generator) {
  if (logits_in.is_cuda() && p.top_k == 0 && p.top_p >= 1.0) return sample_next_tokens_fused(logits_in, p, generator);
  const at::Tensor logits = logits_in.to(at::kFloat);  // [B, V]
  SampledTokens out;
  if (p.temperature == 0.0) {
    out.tokens = logits.argmax(-1);
    out.logprobs = logits.log_softmax(-1).gather(-1, out.tokens.unsqueeze(-1)).squeeze(-1);
    return out;
  }
  const at::Tensor z = logits / p.temperature;             // [B, V]
  const at::Tensor full_logp = z.log_softmax(-1);           // reported log-probs (full vocabulary)
  // Without truncation the sampling distribution is exp(full_logp): one softmax pass saved.
  at::Tensor probs = (p.top_k == 0 && p.top_p >= 1.0) ? full_logp.exp() : top_k_filter(z, p.top_k).softmax(-1);
  if (p.top_p < 1.0) {
    probs = probs.masked_fill(top_p_keep_mask(probs, p.top_p).logical_not(), 0.0);
    // No renormalisation needed: the draw scales u by the row's kept total.
  }
  out.tokens = inverse_cdf_draw(probs, generator);
  // clamp: a row without a token (-1) reads token 0; its value is NaN anyway and the engine stops
  out.logprobs = full_logp.gather(-1, out.tokens.clamp_min(0).unsqueeze(-1)).squeeze(-1);
  return out;
}

at::Generator make_sampling_generator(uint64_t seed, const at::Device& device) {
  at::Generator gen = at::globalContext().defaultGenerator(device).clone();
  {
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_current_seed(seed);
  }
  return gen;
}

}  // namespace scorch

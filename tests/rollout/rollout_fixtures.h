// Test fixtures for the rollout engine: a tiny random Llama model built in memory and a byte-level
// tokenizer (id 0 = EOS "</s>", id 1 + b = byte b), so every generated token decodes to exactly one
// byte and text round-trips to the same ids — the engine's text logic is then checked exactly.
#pragma once
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "model/model_config.h"
#include "model/transformer.h"
#include "rollout/engine.h"
#include "tokenizer/tokenizer.h"

namespace scorch::test {

class ByteTokenizer : public Tokenizer {
 public:
  std::vector<int64_t> encode(const std::string& text, bool add_bos = false) const override {
    (void)add_bos;  // no BOS in this vocabulary
    std::vector<int64_t> ids;
    for (unsigned char c : text) ids.push_back(1 + static_cast<int64_t>(c));
    return ids;
  }
  std::string decode(const std::vector<int64_t>& ids) const override {
    std::string s;
    for (int64_t id : ids) {
      if (id >= 1 && id <= 256) s.push_back(static_cast<char>(id - 1));
    }
    return s;
  }
  int64_t vocab_size() const override { return 257; }
  int64_t bos_id() const override { return -1; }
  int64_t eos_id() const override { return 0; }
  int64_t pad_id() const override { return -1; }
  int64_t unk_id() const override { return -1; }
  int64_t piece_to_id(const std::string& piece) const override { return piece == "</s>" ? 0 : -1; }
  std::string id_to_piece(int64_t id) const override {
    if (id == 0) return "</s>";
    if (id < 0 || id > 256) throw std::out_of_range("ByteTokenizer: bad id");
    char buf[8];
    std::snprintf(buf, sizeof(buf), "<0x%02X>", static_cast<unsigned>(id - 1));
    return buf;
  }
};

// A random Llama-family model: 2 layers, hidden 32, GQA 4/2 heads. initializer_range 0.3 makes the
// next-token distributions peaked enough that greedy argmaxes are far from ties, yet not one-hot.
inline Transformer tiny_model(int64_t vocab = 257, uint64_t seed = 7, int64_t context = 128,
                              std::vector<int64_t> eos = {0}) {
  nlohmann::json j = {{"model_type", "llama"},
                      {"vocab_size", vocab},
                      {"hidden_size", 32},
                      {"intermediate_size", 64},
                      {"num_hidden_layers", 2},
                      {"num_attention_heads", 4},
                      {"num_key_value_heads", 2},
                      {"max_position_embeddings", context},
                      {"rms_norm_eps", 1e-6},
                      {"rope_theta", 10000.0},
                      {"initializer_range", 0.3},
                      {"tie_word_embeddings", false}};
  if (!eos.empty()) j["eos_token_id"] = eos;
  Transformer model(model_config_from_json(j, "tiny test model"));
  model.init_weights(seed);
  return model;
}

// Next-token logits [V] fp32 after `ids`, from a full forward without a cache.
inline at::Tensor full_forward_last_logits(const Transformer& model, const std::vector<int64_t>& ids) {
  const int64_t L = static_cast<int64_t>(ids.size());
  const at::Tensor x = at::tensor(ids, at::kLong).view({1, L});
  const at::Tensor pos = at::arange(L, at::kLong).view({1, L});
  return model.logits(model.forward(x, pos)).select(0, 0).select(0, L - 1).to(at::kFloat);
}

// All positions' logits [L, V] fp32 of `ids` from a full forward without a cache.
inline at::Tensor full_forward_logits(const Transformer& model, const std::vector<int64_t>& ids) {
  const int64_t L = static_cast<int64_t>(ids.size());
  const at::Tensor x = at::tensor(ids, at::kLong).view({1, L});
  const at::Tensor pos = at::arange(L, at::kLong).view({1, L});
  return model.logits(model.forward(x, pos)).select(0, 0).to(at::kFloat);
}

// Pearson's chi-square of drawn `tokens` [n] against unnormalised `weights` (over the tokens with
// weight > 0), and how many draws landed on a token of weight 0.
struct WeightFit {
  double chi_square = 0;
  int64_t zero_weight_draws = 0;
};
inline WeightFit fit_to_weights(const at::Tensor& tokens, const std::vector<double>& weights) {
  const int64_t V = static_cast<int64_t>(weights.size()), n = tokens.numel();
  const at::Tensor counts = at::bincount(tokens.cpu(), {}, V).to(at::kDouble);
  double total = 0;
  for (double w : weights) total += w;
  WeightFit fit;
  for (int64_t i = 0; i < V; ++i) {
    const double observed = counts[i].item<double>();
    if (weights[i] == 0.0) {
      fit.zero_weight_draws += static_cast<int64_t>(observed);
      continue;
    }
    const double expected = static_cast<double>(n) * weights[i] / total;
    fit.chi_square += (observed - expected) * (observed - expected) / expected;
  }
  return fit;
}

// Prompts of 4, 8, ..., 32 tokens: with a context of 40 and no EOS, row i ends at budget 36 - 4i,
// so the rows of one batch finish at eight different steps (the compaction tests).
inline std::vector<std::vector<int64_t>> staggered_prompts() {
  std::vector<std::vector<int64_t>> prompts;
  for (int64_t n = 4; n <= 32; n += 4) {
    std::vector<int64_t> prompt;
    for (int64_t t = 0; t < n; ++t) prompt.push_back(1 + (n * 31 + t * 7) % 250);
    prompts.push_back(prompt);
  }
  return prompts;
}

// Two runs' samples: the same tokens and finish reasons, log-probs within `logprob_tol` (0 = equal).
inline void expect_same_samples(const std::vector<Sample>& x, const std::vector<Sample>& y, const std::string& where,
                                double logprob_tol) {
  ASSERT_EQ(x.size(), y.size()) << where;
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_EQ(x[i].completion_ids, y[i].completion_ids) << where << " sample " << i;
    EXPECT_EQ(x[i].finish_reason, y[i].finish_reason) << where << " sample " << i;
    ASSERT_EQ(x[i].logprobs.size(), y[i].logprobs.size()) << where << " sample " << i;
    for (size_t t = 0; t < x[i].logprobs.size(); ++t) {
      EXPECT_NEAR(x[i].logprobs[t], y[i].logprobs[t], logprob_tol) << where << " sample " << i << " token " << t;
    }
  }
}

inline std::vector<int64_t> concat(std::vector<int64_t> a, const std::vector<int64_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

}  // namespace scorch::test

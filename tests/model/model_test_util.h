// Helpers shared by the model tests: tiny configs and randomised (not init-scaled) weights, so
// attention is far from uniform and every weight, bias and norm matters to the output.
#pragma once
#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <string>

#include "model/model_config.h"
#include "model/transformer.h"

namespace scorch::test {

inline ModelConfig tiny_config(const std::string& model_type = "llama", bool tied = false, int64_t kv_heads = 2) {
  nlohmann::json j = {{"model_type", model_type}, {"vocab_size", 53},      {"hidden_size", 32},
                      {"intermediate_size", 48},  {"num_hidden_layers", 2}, {"num_attention_heads", 4},
                      {"num_key_value_heads", kv_heads}, {"rms_norm_eps", 1e-5}, {"rope_theta", 10000.0},
                      {"tie_word_embeddings", tied}, {"bos_token_id", 1}, {"eos_token_id", 2}};
  return model_config_from_json(j, "tiny_config");
}

// Weights ~ N(0, 0.3) (norms 1 + N(0, 0.1), biases N(0, 0.1)), seeded.
inline Transformer random_model(const ModelConfig& config, uint64_t seed, at::ScalarType dtype = at::kFloat) {
  Transformer m(config, at::kFloat);
  at::manual_seed(seed);
  c10::NoGradGuard no_grad;
  for (auto& [name, t] : m.named_parameters()) {
    if (name.find("norm") != std::string::npos) t.copy_(1 + 0.1 * at::randn(t.sizes()));
    else if (name.find("bias") != std::string::npos) t.copy_(0.1 * at::randn(t.sizes()));
    else t.copy_(0.3 * at::randn(t.sizes()));
  }
  if (dtype != at::kFloat) m.to(at::kCPU, dtype);
  return m;
}

inline at::Tensor arange_positions(int64_t batch, int64_t steps) {
  return at::arange(steps, at::kLong).unsqueeze(0).expand({batch, steps}).contiguous();
}

inline double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

}  // namespace scorch::test

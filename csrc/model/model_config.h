// ModelConfig: the architecture of a Llama-family model (llama, qwen2, mistral), read from and
// written back to a HuggingFace config.json. Every field the transformer needs is checked here, so
// the model code can trust it; an unsupported model_type or value is a UserError naming it.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace scorch {

struct RopeScaling {
  std::string type = "default";  // "default" | "linear" | "llama3"
  double factor = 1.0;           // linear, llama3
  double low_freq_factor = 1.0;  // llama3
  double high_freq_factor = 4.0; // llama3
  int64_t original_max_position_embeddings = 8192;  // llama3
};

struct ModelConfig {
  std::string model_type = "llama";  // "llama" | "qwen2" | "mistral"
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  // GQA: num_attention_heads % num_key_value_heads == 0
  int64_t head_dim = 0;             // default hidden_size / num_attention_heads
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  int64_t max_position_embeddings = 2048;
  bool tie_word_embeddings = false;
  bool attention_bias = false;      // llama: bias on q, k, v and o
  bool qkv_bias = false;            // qwen2: bias on q, k, v only (always true for qwen2)
  double initializer_range = 0.02;  // std of the normal init (init-model)
  int64_t bos_token_id = -1;        // -1 = none
  std::vector<int64_t> eos_token_ids;
  int64_t pad_token_id = -1;        // -1 = none
  std::string dtype = "float32";    // "float32" | "bfloat16" | "float16" (config's dtype / torch_dtype)
  // The config.json object this was parsed from; to_json() keeps its other keys untouched.
  nlohmann::json raw = nlohmann::json::object();

  // The q/k/v projections carry a bias (llama attention_bias or qwen2); o_proj only for llama's.
  bool has_qkv_bias() const { return attention_bias || qkv_bias; }
  bool has_o_bias() const { return attention_bias; }
  int64_t q_dim() const { return num_attention_heads * head_dim; }
  int64_t kv_dim() const { return num_key_value_heads * head_dim; }
};

// Parses a config.json object; `source` names it in errors (a path or "config"). Throws UserError
// for a missing required field, a wrong type, an unsupported model_type or value.
ModelConfig model_config_from_json(const nlohmann::json& j, const std::string& source = "config.json");
// Reads and parses a config.json file (UserError if missing or not JSON).
ModelConfig load_model_config(const std::string& path);
// The config.json transformers reads back: `raw` with every field above written over it.
nlohmann::json model_config_to_json(const ModelConfig& config);

}  // namespace scorch

// ModelConfig: the architecture of a Llama-family model (llama, qwen2, mistral, qwen3, olmo2, gemma,
// gemma2, gemma3_text, phi3), read from and written back to a HuggingFace config.json. Families differ by the options below (q/k
// norms, norm placement, sliding windows); the Transformer is one model that reads them. Every field the transformer needs is checked here, so
// the model code can trust it; an unsupported model_type or value is a UserError naming it.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace scorch {

struct RopeScaling {
  std::string type = "default";  // "default" | "linear" | "llama3" | "longrope"
  double factor = 1.0;           // linear, llama3, longrope
  double low_freq_factor = 1.0;  // llama3
  double high_freq_factor = 4.0; // llama3
  int64_t original_max_position_embeddings = 8192;  // llama3, longrope
  // longrope (phi3): inv_freq / short_factor[i] (positions below original_max_position_embeddings;
  // scorch refuses longer contexts, where transformers switches to long_factor), and cos / sin
  // times attention_factor.
  std::vector<double> short_factor, long_factor;
  double attention_factor = 1.0;
};

// RMSNorm on the query and key projections, before RoPE.
enum class QkNorm {
  kNone,
  kPerHead,  // qwen3: over each head's head_dim (weights q_norm, k_norm [head_dim])
  kFull,     // olmo2: over the whole projection (weights q_norm [q_dim], k_norm [kv_dim])
};

// The MLP's gate activation: act(gate) * up.
enum class Activation {
  kSilu,      // SwiGLU (llama, qwen, mistral, olmo2)
  kGeluTanh,  // GeGLU with gelu's tanh approximation (gemma: gelu_pytorch_tanh)
};

struct ModelConfig {
  std::string model_type = "llama";  // one of the types above
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
  bool attention_bias = false;      // llama, qwen3, olmo2: bias on q, k, v and o
  QkNorm qk_norm = QkNorm::kNone;
  // olmo2: no norm before attention or the MLP; their outputs are normed (post_attention_layernorm,
  // post_feedforward_layernorm) before the residual add.
  bool post_norms = false;
  // olmo2, gemma: RMSNorm multiplies by its weight in fp32 and then rounds to the dtype (llama
  // rounds first); gemma multiplies by (norm_weight_offset + weight), its norm weights stored as
  // offsets from one.
  bool norm_weight_in_fp32 = false;
  double norm_weight_offset = 0;
  // The norms before attention and the MLP (input_layernorm and post_attention_layernorm, or with
  // post_norms: pre_feedforward_layernorm); olmo2 has none.
  bool pre_norms = true;
  Activation hidden_act = Activation::kSilu;
  bool scale_embeddings = false;      // gemma: embeddings times sqrt(hidden_size), rounded to the dtype
  double query_pre_attn_scalar = 0;   // gemma2/3: attention scale query_pre_attn_scalar^-0.5 (0 = head_dim)
  double attn_logit_softcapping = 0;  // gemma2: scores = cap * tanh(scores / cap) before the mask (0 = none)
  double final_logit_softcapping = 0; // gemma2: logits = cap * tanh(logits / cap) (0 = none)
  // gemma3: the sliding-window layers' RoPE base (no scaling); 0 = every layer uses rope_theta and
  // rope_scaling.
  double local_rope_theta = 0;
  // phi3: RoPE on the first rotary_dim() dimensions of each head only (the rest pass through).
  double partial_rotary_factor = 1.0;
  // phi3: the checkpoint stores q/k/v as one qkv_proj and gate/up as one gate_up_proj (split on
  // load, fused again on export: hf_adapter.h).
  bool hf_fused_projections = false;
  bool qkv_bias = false;            // qwen2: bias on q, k, v only (always true for qwen2)
  double initializer_range = 0.02;  // std of the normal init (init-model)
  int64_t bos_token_id = -1;        // -1 = none
  std::vector<int64_t> eos_token_ids;
  int64_t pad_token_id = -1;        // -1 = none
  std::string dtype = "float32";    // "float32" | "bfloat16" | "float16" (config's dtype / torch_dtype)
  // Sliding-window attention: a query at position p sees the keys at positions p - sliding_window + 1
  // .. p (transformers' `kv_idx > q_idx - sliding_window`), in the layers marked in sliding_layers.
  // 0 = no window anywhere (sliding_layers then all false).
  int64_t sliding_window = 0;
  std::vector<bool> sliding_layers;  // [num_hidden_layers]
  // The config.json object this was parsed from; to_json() keeps its other keys untouched.
  nlohmann::json raw = nlohmann::json::object();

  // The q/k/v projections carry a bias (llama attention_bias or qwen2); o_proj only for llama's.
  bool has_qkv_bias() const { return attention_bias || qkv_bias; }
  bool has_o_bias() const { return attention_bias; }
  int64_t q_dim() const { return num_attention_heads * head_dim; }
  int64_t kv_dim() const { return num_key_value_heads * head_dim; }
  double attention_scale() const;
  int64_t rotary_dim() const;
  // The longest context scorch honours: max_position_embeddings, or for longrope the original
  // length (beyond it transformers switches RoPE tables mid-sequence).
  int64_t context_length() const;
  bool is_sliding_layer(size_t layer) const {
    return sliding_window > 0 && layer < sliding_layers.size() && sliding_layers[layer];
  }
  bool has_sliding_layers() const {
    for (size_t i = 0; i < sliding_layers.size(); ++i) {
      if (is_sliding_layer(i)) return true;
    }
    return false;
  }
};

// Parses a config.json object; `source` names it in errors (a path or "config"). Throws UserError
// for a missing required field, a wrong type, an unsupported model_type or value.
ModelConfig model_config_from_json(const nlohmann::json& j, const std::string& source = "config.json");
// Reads and parses a config.json file (UserError if missing or not JSON).
ModelConfig load_model_config(const std::string& path);
// The config.json transformers reads back: `raw` with every field above written over it.
nlohmann::json model_config_to_json(const ModelConfig& config);

}  // namespace scorch

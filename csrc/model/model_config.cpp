// config.json <-> ModelConfig. Reads both transformers 4 (`rope_theta` + `rope_scaling`, `torch_dtype`)
// and transformers 5 (`rope_parameters`, `dtype`) layouts, and writes both so either version (and
// vLLM) reads our exports. `sliding_window` is accepted and ignored: scorch always attends to the
// full causal context, which equals sliding-window attention for sequences shorter than the window.
#include "model/model_config.h"

#include <optional>

#include "common/error.h"
#include "common/fs.h"
#include "common/log.h"

namespace scorch {
namespace {

struct Reader {
  const nlohmann::json& j;
  std::string source;

  [[noreturn]] void fail(const std::string& key, const std::string& why) const {
    throw UserError(source + ": field `" + key + "` " + why);
  }
  bool has(const std::string& key) const { return j.contains(key) && !j[key].is_null(); }
  int64_t integer(const std::string& key, std::optional<int64_t> fallback, int64_t min_value) const {
    if (!has(key)) {
      if (!fallback) fail(key, "is missing (a HuggingFace config.json for this model type needs it)");
      return *fallback;
    }
    const auto& v = j[key];
    if (!v.is_number_integer() && !v.is_number_unsigned()) fail(key, "must be an integer, got " + v.dump());
    const int64_t x = v.get<int64_t>();
    if (x < min_value) fail(key, "must be >= " + std::to_string(min_value) + ", got " + std::to_string(x));
    return x;
  }
  double number(const nlohmann::json& obj, const std::string& key, std::optional<double> fallback,
                const std::string& shown) const {
    if (!obj.contains(key) || obj[key].is_null()) {
      if (!fallback) fail(shown, "is missing");
      return *fallback;
    }
    if (!obj[key].is_number()) fail(shown, "must be a number, got " + obj[key].dump());
    return obj[key].get<double>();
  }
  bool boolean(const std::string& key, bool fallback) const {
    if (!has(key)) return fallback;
    if (!j[key].is_boolean()) fail(key, "must be true or false, got " + j[key].dump());
    return j[key].get<bool>();
  }
  std::string string(const std::string& key, const std::string& fallback) const {
    if (!has(key)) return fallback;
    if (!j[key].is_string()) fail(key, "must be a string, got " + j[key].dump());
    return j[key].get<std::string>();
  }
};

void parse_rope(const Reader& r, ModelConfig& c) {
  const nlohmann::json& j = r.j;
  const bool has_params = j.contains("rope_parameters") && j["rope_parameters"].is_object();
  const nlohmann::json params = has_params ? j["rope_parameters"] : nlohmann::json::object();
  if (params.contains("rope_theta") && !params["rope_theta"].is_null()) {
    c.rope_theta = r.number(params, "rope_theta", std::nullopt, "rope_parameters.rope_theta");
  } else if (r.has("rope_theta")) {
    c.rope_theta = r.number(j, "rope_theta", std::nullopt, "rope_theta");
  } else {
    r.fail("rope_theta", "is missing (neither top level nor under rope_parameters); Llama uses 10000 or 500000");
  }
  if (!(c.rope_theta > 0)) r.fail("rope_theta", "must be positive");

  // The scaling block: rope_parameters (transformers 5) else rope_scaling (transformers 4).
  nlohmann::json s = params;
  std::string where = "rope_parameters";
  if (!has_params || (s.value("rope_type", std::string("default")) == "default" && r.has("rope_scaling"))) {
    s = r.has("rope_scaling") ? j["rope_scaling"] : nlohmann::json::object();
    where = "rope_scaling";
  }
  if (!s.is_object()) r.fail(where, "must be an object or null");
  std::string type = "default";
  if (s.contains("rope_type") && s["rope_type"].is_string()) type = s["rope_type"].get<std::string>();
  else if (s.contains("type") && s["type"].is_string()) type = s["type"].get<std::string>();
  c.rope_scaling = RopeScaling{};
  c.rope_scaling.type = type;
  if (type == "default") return;
  if (type == "linear") {
    c.rope_scaling.factor = r.number(s, "factor", std::nullopt, where + ".factor");
  } else if (type == "llama3") {
    c.rope_scaling.factor = r.number(s, "factor", std::nullopt, where + ".factor");
    c.rope_scaling.low_freq_factor = r.number(s, "low_freq_factor", std::nullopt, where + ".low_freq_factor");
    c.rope_scaling.high_freq_factor = r.number(s, "high_freq_factor", std::nullopt, where + ".high_freq_factor");
    c.rope_scaling.original_max_position_embeddings = static_cast<int64_t>(
        r.number(s, "original_max_position_embeddings", std::nullopt, where + ".original_max_position_embeddings"));
    if (!(c.rope_scaling.high_freq_factor > c.rope_scaling.low_freq_factor)) {
      r.fail(where + ".high_freq_factor", "must be greater than low_freq_factor");
    }
  } else {
    r.fail(where + ".rope_type", "'" + type + "' is not supported (scorch supports default, linear and llama3)");
  }
  if (!(c.rope_scaling.factor > 0)) r.fail(where + ".factor", "must be positive");
}

std::vector<int64_t> token_ids(const Reader& r, const std::string& key) {
  std::vector<int64_t> out;
  if (!r.has(key)) return out;
  const auto& v = r.j[key];
  if (v.is_number_integer()) {
    out.push_back(v.get<int64_t>());
  } else if (v.is_array()) {
    for (const auto& x : v) {
      if (!x.is_number_integer()) r.fail(key, "must be an integer or a list of integers");
      out.push_back(x.get<int64_t>());
    }
  } else {
    r.fail(key, "must be an integer or a list of integers, got " + v.dump());
  }
  return out;
}

}  // namespace

ModelConfig model_config_from_json(const nlohmann::json& j, const std::string& source) {
  if (!j.is_object()) throw UserError(source + ": expected a JSON object");
  Reader r{j, source};
  ModelConfig c;
  c.raw = j;
  if (!r.has("model_type")) r.fail("model_type", "is missing (expected llama, qwen2 or mistral)");
  c.model_type = r.string("model_type", "");
  int64_t default_max_pos = 2048;
  if (c.model_type == "qwen2") default_max_pos = 32768;
  else if (c.model_type == "mistral") default_max_pos = 131072;
  else if (c.model_type != "llama") {
    r.fail("model_type", "'" + c.model_type + "' is not supported (scorch supports llama, qwen2 and mistral)");
  }
  c.vocab_size = r.integer("vocab_size", std::nullopt, 1);
  c.hidden_size = r.integer("hidden_size", std::nullopt, 1);
  c.intermediate_size = r.integer("intermediate_size", std::nullopt, 1);
  c.num_hidden_layers = r.integer("num_hidden_layers", std::nullopt, 1);
  c.num_attention_heads = r.integer("num_attention_heads", std::nullopt, 1);
  c.num_key_value_heads = r.integer("num_key_value_heads", c.num_attention_heads, 1);
  if (c.num_attention_heads % c.num_key_value_heads != 0) {
    r.fail("num_key_value_heads", "(" + std::to_string(c.num_key_value_heads) + ") must divide num_attention_heads (" +
                                      std::to_string(c.num_attention_heads) + ")");
  }
  if (!r.has("head_dim") && c.hidden_size % c.num_attention_heads != 0) {
    r.fail("hidden_size", "must be a multiple of num_attention_heads when head_dim is not given");
  }
  c.head_dim = r.integer("head_dim", c.hidden_size / c.num_attention_heads, 2);
  if (c.head_dim % 2 != 0) r.fail("head_dim", "must be even (rotary embedding pairs)");
  c.rms_norm_eps = r.number(j, "rms_norm_eps", 1e-6, "rms_norm_eps");
  if (!(c.rms_norm_eps > 0)) r.fail("rms_norm_eps", "must be positive");
  parse_rope(r, c);
  c.max_position_embeddings = r.integer("max_position_embeddings", default_max_pos, 1);
  c.tie_word_embeddings = r.boolean("tie_word_embeddings", false);
  c.attention_bias = r.boolean("attention_bias", false);
  c.qkv_bias = c.model_type == "qwen2";
  c.initializer_range = r.number(j, "initializer_range", 0.02, "initializer_range");
  if (!(c.initializer_range > 0)) r.fail("initializer_range", "must be positive");
  const auto bos = token_ids(r, "bos_token_id");
  c.bos_token_id = bos.empty() ? -1 : bos.front();
  c.eos_token_ids = token_ids(r, "eos_token_id");
  const auto pad = token_ids(r, "pad_token_id");
  c.pad_token_id = pad.empty() ? -1 : pad.front();

  const std::string act = r.string("hidden_act", "silu");
  if (act != "silu") r.fail("hidden_act", "'" + act + "' is not supported (scorch's MLP is SwiGLU: silu)");
  if (r.boolean("mlp_bias", false)) r.fail("mlp_bias", "true is not supported (Llama-family MLPs have no bias)");
  if (r.has("pretraining_tp") && r.integer("pretraining_tp", 1, 1) != 1) {
    r.fail("pretraining_tp", "must be 1 (tensor-parallel pretraining slices are not supported)");
  }
  if (r.boolean("use_sliding_window", false)) {
    log::warn(source, ": use_sliding_window is ignored; scorch attends to the full causal context");
  }
  std::string dtype = r.string("dtype", r.string("torch_dtype", "float32"));
  if (dtype != "float32" && dtype != "bfloat16" && dtype != "float16") {
    r.fail(r.has("dtype") ? "dtype" : "torch_dtype", "'" + dtype + "' is not supported (float32, bfloat16, float16)");
  }
  c.dtype = dtype;
  return c;
}

ModelConfig load_model_config(const std::string& path) {
  const std::string text = fs::read_file(path, "model config");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw UserError(path + " is not valid JSON: " + e.what());
  }
  return model_config_from_json(j, path);
}

nlohmann::json model_config_to_json(const ModelConfig& c) {
  nlohmann::json j = c.raw.is_object() ? c.raw : nlohmann::json::object();
  static const char* kArch[][2] = {{"llama", "LlamaForCausalLM"}, {"qwen2", "Qwen2ForCausalLM"}, {"mistral", "MistralForCausalLM"}};
  for (const auto& a : kArch) {
    if (c.model_type == a[0]) j["architectures"] = {a[1]};
  }
  j["model_type"] = c.model_type;
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_key_value_heads;
  j["head_dim"] = c.head_dim;
  j["hidden_act"] = "silu";
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  if (c.model_type == "llama") j["attention_bias"] = c.attention_bias;
  j["initializer_range"] = c.initializer_range;
  j["bos_token_id"] = c.bos_token_id >= 0 ? nlohmann::json(c.bos_token_id) : nlohmann::json(nullptr);
  if (c.eos_token_ids.empty()) j["eos_token_id"] = nullptr;
  else if (c.eos_token_ids.size() == 1) j["eos_token_id"] = c.eos_token_ids.front();
  else j["eos_token_id"] = c.eos_token_ids;
  j["pad_token_id"] = c.pad_token_id >= 0 ? nlohmann::json(c.pad_token_id) : nlohmann::json(nullptr);
  // Both rope layouts: transformers 5 reads rope_parameters, transformers 4 and vLLM the legacy keys.
  nlohmann::json rope = {{"rope_type", c.rope_scaling.type}, {"rope_theta", c.rope_theta}};
  nlohmann::json legacy = nullptr;
  if (c.rope_scaling.type != "default") {
    rope["factor"] = c.rope_scaling.factor;
    legacy = {{"rope_type", c.rope_scaling.type}, {"factor", c.rope_scaling.factor}};
    if (c.rope_scaling.type == "llama3") {
      for (auto* obj : {&rope, &legacy}) {
        (*obj)["low_freq_factor"] = c.rope_scaling.low_freq_factor;
        (*obj)["high_freq_factor"] = c.rope_scaling.high_freq_factor;
        (*obj)["original_max_position_embeddings"] = c.rope_scaling.original_max_position_embeddings;
      }
    }
  }
  j["rope_parameters"] = rope;
  j["rope_theta"] = c.rope_theta;
  j["rope_scaling"] = legacy;
  j["dtype"] = c.dtype;
  j["torch_dtype"] = c.dtype;
  return j;
}

}  // namespace scorch

// config.json <-> ModelConfig. Reads both transformers 4 (`rope_theta` + `rope_scaling`, `torch_dtype`)
// and transformers 5 (`rope_parameters`, `dtype`) layouts, and writes both so either version (and
// vLLM) reads our exports. Sliding windows follow transformers: mistral's `sliding_window` holds in
// every layer; qwen2's only with `use_sliding_window`, in the layers `layer_types` marks
// "sliding_attention" (else layers >= `max_window_layers`).
#include "model/model_config.h"

#include <algorithm>
#include <cmath>
#include <optional>

#include "common/error.h"
#include "common/fs.h"

namespace scorch {
namespace {

constexpr const char* kSupportedTypes = "llama, qwen2, mistral, qwen3, olmo2, gemma, gemma2, gemma3_text and phi3";

struct Reader {
  const nlohmann::json& j;
  std::string source;

  [[noreturn]] void fail(const std::string& key, const std::string& why) const {
    throw UserError(source + ": field `" + key + "` " + why);
  }
  bool has(const std::string& key) const { return j.contains(key) && !j[key].is_null(); }
  // Sizes above kMaxSize are typos or hostile files (the largest real vocabularies are ~260k).
  static constexpr int64_t kMaxSize = int64_t{1} << 24;
  int64_t integer(const std::string& key, std::optional<int64_t> fallback, int64_t min_value,
                  int64_t max_value = kMaxSize) const {
    if (!has(key)) {
      if (!fallback) fail(key, "is missing (a HuggingFace config.json for this model type needs it)");
      return *fallback;
    }
    const auto& v = j[key];
    if (!v.is_number_integer() && !v.is_number_unsigned()) fail(key, "must be an integer, got " + v.dump());
    const int64_t x = v.get<int64_t>();
    if (x < min_value) fail(key, "must be >= " + std::to_string(min_value) + ", got " + std::to_string(x));
    if (x > max_value) fail(key, "must be <= " + std::to_string(max_value) + ", got " + std::to_string(x));
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

// longrope (phi3) as transformers' _compute_longrope_parameters: factors per rotary frequency, the
// scaling factor (default max / original max positions) and the cos / sin attention factor.
void parse_longrope(const Reader& r, const nlohmann::json& s, const std::string& where, ModelConfig& c) {
  RopeScaling& out = c.rope_scaling;
  out.type = "longrope";
  const auto factors = [&](const char* key) {
    std::vector<double> f;
    if (!s.contains(key) || !s[key].is_array()) r.fail(where + "." + key, "must be a list of numbers");
    for (const auto& x : s[key]) {
      if (!x.is_number() || !(x.get<double>() > 0)) r.fail(where + "." + key, "must hold positive numbers");
      f.push_back(x.get<double>());
    }
    if (static_cast<int64_t>(f.size()) != c.rotary_dim() / 2) {
      r.fail(where + "." + key, "must have rotary_dim / 2 = " + std::to_string(c.rotary_dim() / 2) + " entries, got " +
                                    std::to_string(f.size()));
    }
    return f;
  };
  out.short_factor = factors("short_factor");
  out.long_factor = factors("long_factor");
  double original = 0;
  if (s.contains("original_max_position_embeddings") && !s["original_max_position_embeddings"].is_null()) {
    original = r.number(s, "original_max_position_embeddings", std::nullopt, where + ".original_max_position_embeddings");
  } else {
    original = static_cast<double>(r.integer("original_max_position_embeddings", c.max_position_embeddings, 1));
  }
  if (!(original >= 1)) r.fail(where + ".original_max_position_embeddings", "must be >= 1");
  out.original_max_position_embeddings = static_cast<int64_t>(original);
  out.factor = r.number(s, "factor", static_cast<double>(c.max_position_embeddings) / original, where + ".factor");
  const double fallback = out.factor <= 1.0 ? 1.0 : std::sqrt(1 + std::log(out.factor) / std::log(original));
  out.attention_factor = r.number(s, "attention_factor", fallback, where + ".attention_factor");
}

// rope_theta and rope_scaling of a config with one rope for every layer.
void parse_rope_block(const Reader& r, ModelConfig& c) {
  const nlohmann::json& j = r.j;
  const bool has_params = j.contains("rope_parameters") && j["rope_parameters"].is_object();
  const nlohmann::json params = has_params ? j["rope_parameters"] : nlohmann::json::object();
  if (c.model_type == "phi3") {  // partial rotary: rope_parameters (transformers 5) or top level
    c.partial_rotary_factor = params.contains("partial_rotary_factor") && !params["partial_rotary_factor"].is_null()
                                  ? r.number(params, "partial_rotary_factor", std::nullopt, "rope_parameters.partial_rotary_factor")
                                  : r.number(j, "partial_rotary_factor", 1.0, "partial_rotary_factor");
    if (!(c.partial_rotary_factor > 0 && c.partial_rotary_factor <= 1) || c.rotary_dim() % 2 != 0 || c.rotary_dim() < 2) {
      r.fail("partial_rotary_factor", "must be in (0, 1] and give an even rotary dimension (head_dim " +
                                          std::to_string(c.head_dim) + ")");
    }
  }
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
  if (c.model_type == "phi3" && type != "longrope" && type != "su" && type != "yarn") {
    r.fail(where + ".rope_type", "'" + type + "' is not what transformers runs for phi3 (default or longrope)");
  }
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
  } else if (type == "longrope" || (c.model_type == "phi3" && (type == "su" || type == "yarn"))) {
    parse_longrope(r, s, where, c);  // transformers reads phi3's "su" and "yarn" as longrope
  } else {
    r.fail(where + ".rope_type", "'" + type + "' is not supported (scorch supports default, linear, llama3 and longrope)");
  }
  if (!(c.rope_scaling.factor > 0)) r.fail(where + ".factor", "must be positive");
}

void parse_rope(const Reader& r, ModelConfig& c) {
  if (c.model_type != "gemma3_text") return parse_rope_block(r, c);
  // gemma3: the global layers' rope (default base 1e6, maybe scaled) and the local layers' base
  // (default 10000, unscaled): rope_parameters {full_attention, sliding_attention} (transformers 5)
  // or rope_theta, rope_scaling and rope_local_base_freq (transformers 4).
  nlohmann::json flat = r.j;
  const bool nested = r.has("rope_parameters") && r.j["rope_parameters"].is_object() &&
                      r.j["rope_parameters"].contains("full_attention");
  nlohmann::json local = nlohmann::json::object();
  std::string local_where = "rope_local_base_freq";
  if (nested) {
    const nlohmann::json& params = r.j["rope_parameters"];
    flat["rope_parameters"] = params["full_attention"];
    if (params.contains("sliding_attention") && params["sliding_attention"].is_object()) local = params["sliding_attention"];
    local_where = "rope_parameters.sliding_attention";
  } else {
    flat.erase("rope_parameters");
    if (r.has("rope_local_base_freq")) local["rope_theta"] = r.j["rope_local_base_freq"];
  }
  if (!flat["rope_parameters"].is_object() || !flat["rope_parameters"].contains("rope_theta")) {
    if (!r.has("rope_theta")) flat["rope_theta"] = 1000000.0;
  }
  parse_rope_block(Reader{flat, r.source}, c);
  c.local_rope_theta = r.number(local, "rope_theta", 10000.0, local_where + (nested ? ".rope_theta" : ""));
  if (!(c.local_rope_theta > 0)) r.fail(local_where, "must be positive");
  const std::string local_type = local.contains("rope_type") && local["rope_type"].is_string()
                                     ? local["rope_type"].get<std::string>() : "default";
  if (local_type != "default") {
    r.fail(local_where + ".rope_type", "'" + local_type + "' is not supported for the local layers (default only)");
  }
}

// Which layers attend through a sliding window, and its length (ModelConfig::sliding_window).
void parse_sliding_window(const Reader& r, ModelConfig& c) {
  c.sliding_window = 0;
  c.sliding_layers.assign(static_cast<size_t>(c.num_hidden_layers), false);
  const bool qwen = c.model_type == "qwen2" || c.model_type == "qwen3";
  const bool gemma_local = c.model_type == "gemma2" || c.model_type == "gemma3_text";
  if (gemma_local && r.boolean("use_bidirectional_attention", false)) {
    r.fail("use_bidirectional_attention", "true is not supported (scorch's attention is causal)");
  }
  const bool every_layer = c.model_type == "mistral" || c.model_type == "phi3";
  const bool window_key = every_layer || gemma_local || (qwen && r.boolean("use_sliding_window", false));
  // llama, olmo2 and gemma have no window (transformers ignores the key)
  if (!window_key || !r.has("sliding_window")) return;
  c.sliding_window = r.integer("sliding_window", std::nullopt, 1);
  if (every_layer) {
    c.sliding_layers.assign(c.sliding_layers.size(), true);
    return;
  }
  if (r.has("layer_types")) {
    const auto& types = r.j["layer_types"];
    if (!types.is_array() || static_cast<int64_t>(types.size()) != c.num_hidden_layers) {
      r.fail("layer_types", "must be a list of num_hidden_layers (" + std::to_string(c.num_hidden_layers) +
                                ") strings, got " + types.dump());
    }
    for (size_t i = 0; i < types.size(); ++i) {
      const std::string t = types[i].is_string() ? types[i].get<std::string>() : types[i].dump();
      if (t != "full_attention" && t != "sliding_attention") {
        r.fail("layer_types", "entry " + std::to_string(i) + " '" + t +
                                  "' is not supported (full_attention or sliding_attention)");
      }
      c.sliding_layers[i] = t == "sliding_attention";
    }
    return;
  }
  if (gemma_local) {  // every pattern-th layer is global: gemma2 alternates, gemma3 default 6
    const int64_t pattern = c.model_type == "gemma2" ? 2 : r.integer("sliding_window_pattern", 6, 1);
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) c.sliding_layers[static_cast<size_t>(i)] = (i + 1) % pattern != 0;
    return;
  }
  const int64_t first = r.integer("max_window_layers", 28, 0);
  for (int64_t i = first; i < c.num_hidden_layers; ++i) c.sliding_layers[static_cast<size_t>(i)] = true;
}

// The families' layer options (ModelConfig) and the keys that set them.
void parse_family(const Reader& r, ModelConfig& c) {
  const std::string& t = c.model_type;
  const bool gemma = t == "gemma" || t == "gemma2" || t == "gemma3_text";
  c.attention_bias = t != "qwen2" && t != "mistral" && t != "phi3" && r.boolean("attention_bias", false);
  c.hf_fused_projections = t == "phi3";
  c.qkv_bias = t == "qwen2";
  if (t == "qwen3" || t == "gemma3_text") c.qk_norm = QkNorm::kPerHead;
  if (t == "olmo2") {
    c.qk_norm = QkNorm::kFull;
    c.post_norms = true;
    c.pre_norms = false;
    c.norm_weight_in_fp32 = true;
  }
  if (gemma) {
    c.norm_weight_in_fp32 = true;
    c.norm_weight_offset = 1.0;
    c.scale_embeddings = true;
    c.post_norms = t != "gemma";
  }
  // gemma 1 reads hidden_act (its legacy "gelu" meaning the tanh approximation), gemma2/3 hidden_activation.
  const std::string act_key = t == "gemma2" || t == "gemma3_text" ? "hidden_activation" : "hidden_act";
  const std::string act = r.string(act_key, gemma ? "gelu_pytorch_tanh" : "silu");
  if (act == "silu") c.hidden_act = Activation::kSilu;
  else if (act == "gelu_pytorch_tanh" || (t == "gemma" && act == "gelu")) c.hidden_act = Activation::kGeluTanh;
  else r.fail(act_key, "'" + act + "' is not supported (silu or gelu_pytorch_tanh)");
  if (t == "gemma2" || t == "gemma3_text") {
    c.query_pre_attn_scalar = r.number(r.j, "query_pre_attn_scalar", 256.0, "query_pre_attn_scalar");
    if (!(c.query_pre_attn_scalar > 0)) r.fail("query_pre_attn_scalar", "must be positive");
    // absent: the family's default (gemma2 50 / 30, gemma3 none); null: none
    const auto cap = [&](const std::string& key, double fallback) {
      if (!r.j.contains(key)) return fallback;
      const double x = r.j[key].is_null() ? 0.0 : r.number(r.j, key, std::nullopt, key);
      if (x < 0) r.fail(key, "must be positive or null");
      return x;
    };
    c.attn_logit_softcapping = cap("attn_logit_softcapping", t == "gemma2" ? 50.0 : 0.0);
    c.final_logit_softcapping = cap("final_logit_softcapping", t == "gemma2" ? 30.0 : 0.0);
  }
}

std::vector<int64_t> token_id_list(const Reader& r, const std::string& key) {
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

// A token id (or list of ids) from config.json; each must lie in [0, vocab_size). A negative
// pad_token_id (old Llama exports write -1) means "none".
std::vector<int64_t> token_ids(const Reader& r, const std::string& key, int64_t vocab_size) {
  std::vector<int64_t> out = token_id_list(r, key);
  if (key == "pad_token_id" && out.size() == 1 && out[0] < 0) return {};
  for (int64_t id : out) {
    if (id < 0 || id >= vocab_size) {
      r.fail(key, "holds token id " + std::to_string(id) + ", outside the vocabulary [0, " + std::to_string(vocab_size) +
                      "): fix the id or vocab_size");
    }
  }
  return out;
}

}  // namespace

ModelConfig model_config_from_json(const nlohmann::json& j, const std::string& source) {
  if (!j.is_object()) throw UserError(source + ": expected a JSON object");
  Reader r{j, source};
  ModelConfig c;
  c.raw = j;
  if (!r.has("model_type")) r.fail("model_type", std::string("is missing (expected ") + kSupportedTypes + ")");
  c.model_type = r.string("model_type", "");
  int64_t default_max_pos = 2048;
  if (c.model_type == "qwen2" || c.model_type == "qwen3") default_max_pos = 32768;
  else if (c.model_type == "mistral" || c.model_type == "gemma3_text") default_max_pos = 131072;
  else if (c.model_type == "gemma" || c.model_type == "gemma2") default_max_pos = 8192;
  else if (c.model_type == "phi3") default_max_pos = 4096;
  else if (c.model_type != "llama" && c.model_type != "olmo2") {
    r.fail("model_type", "'" + c.model_type + "' is not supported (scorch supports " + kSupportedTypes + ")");
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
  c.max_position_embeddings = r.integer("max_position_embeddings", default_max_pos, 1);
  parse_rope(r, c);
  c.tie_word_embeddings = r.boolean("tie_word_embeddings", false);
  parse_family(r, c);
  c.initializer_range = r.number(j, "initializer_range", 0.02, "initializer_range");
  if (!(c.initializer_range > 0)) r.fail("initializer_range", "must be positive");
  const auto bos = token_ids(r, "bos_token_id", c.vocab_size);
  c.bos_token_id = bos.empty() ? -1 : bos.front();
  c.eos_token_ids = token_ids(r, "eos_token_id", c.vocab_size);
  const auto pad = token_ids(r, "pad_token_id", c.vocab_size);
  c.pad_token_id = pad.empty() ? -1 : pad.front();

  if (r.boolean("mlp_bias", false)) r.fail("mlp_bias", "true is not supported (Llama-family MLPs have no bias)");
  if (r.has("pretraining_tp") && r.integer("pretraining_tp", 1, 1) != 1) {
    r.fail("pretraining_tp", "must be 1 (tensor-parallel pretraining slices are not supported)");
  }
  parse_sliding_window(r, c);
  std::string dtype = r.string("dtype", r.string("torch_dtype", "float32"));
  if (dtype != "float32" && dtype != "bfloat16" && dtype != "float16") {
    r.fail(r.has("dtype") ? "dtype" : "torch_dtype", "'" + dtype + "' is not supported (float32, bfloat16, float16)");
  }
  c.dtype = dtype;
  return c;
}

int64_t ModelConfig::rotary_dim() const {
  return static_cast<int64_t>(static_cast<double>(head_dim) * partial_rotary_factor);
}

int64_t ModelConfig::context_length() const {
  return rope_scaling.type == "longrope" ? std::min(max_position_embeddings, rope_scaling.original_max_position_embeddings)
                                         : max_position_embeddings;
}

double ModelConfig::attention_scale() const {
  return 1.0 / std::sqrt(query_pre_attn_scalar > 0 ? query_pre_attn_scalar : static_cast<double>(head_dim));
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
  static const char* kArch[][2] = {{"llama", "LlamaForCausalLM"},     {"qwen2", "Qwen2ForCausalLM"},
                                   {"mistral", "MistralForCausalLM"}, {"qwen3", "Qwen3ForCausalLM"},
                                   {"olmo2", "Olmo2ForCausalLM"},     {"gemma", "GemmaForCausalLM"},
                                   {"gemma2", "Gemma2ForCausalLM"},   {"gemma3_text", "Gemma3ForCausalLM"},
                                   {"phi3", "Phi3ForCausalLM"}};
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
  const char* act = c.hidden_act == Activation::kSilu ? "silu" : "gelu_pytorch_tanh";
  j["hidden_act"] = act;
  if (c.model_type == "gemma2" || c.model_type == "gemma3_text") {
    j["hidden_activation"] = act;
    // query_pre_attn_scalar stays as read (transformers requires an integer; absent = its default)
    const auto cap = [](double x) { return x > 0 ? nlohmann::json(x) : nlohmann::json(nullptr); };
    j["attn_logit_softcapping"] = cap(c.attn_logit_softcapping);
    j["final_logit_softcapping"] = cap(c.final_logit_softcapping);
  }
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  if (c.model_type != "qwen2" && c.model_type != "mistral" && c.model_type != "phi3") {
    j["attention_bias"] = c.attention_bias;
  }
  j["initializer_range"] = c.initializer_range;
  j["bos_token_id"] = c.bos_token_id >= 0 ? nlohmann::json(c.bos_token_id) : nlohmann::json(nullptr);
  if (c.eos_token_ids.empty()) j["eos_token_id"] = nullptr;
  else if (c.eos_token_ids.size() == 1) j["eos_token_id"] = c.eos_token_ids.front();
  else j["eos_token_id"] = c.eos_token_ids;
  j["pad_token_id"] = c.pad_token_id >= 0 ? nlohmann::json(c.pad_token_id) : nlohmann::json(nullptr);
  // Both rope layouts: transformers 5 reads rope_parameters, transformers 4 and vLLM the legacy keys.
  nlohmann::json rope = {{"rope_type", c.rope_scaling.type}, {"rope_theta", c.rope_theta}};
  nlohmann::json legacy = nullptr;
  if (c.model_type == "phi3") rope["partial_rotary_factor"] = c.partial_rotary_factor;
  if (c.rope_scaling.type == "longrope") {
    const RopeScaling& s = c.rope_scaling;
    rope["short_factor"] = s.short_factor;
    rope["long_factor"] = s.long_factor;
    rope["factor"] = s.factor;
    rope["attention_factor"] = s.attention_factor;
    rope["original_max_position_embeddings"] = s.original_max_position_embeddings;
    legacy = rope;
    legacy.erase("rope_theta");
    legacy.erase("partial_rotary_factor");
    j["original_max_position_embeddings"] = s.original_max_position_embeddings;
  } else if (c.rope_scaling.type != "default") {
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
  if (c.local_rope_theta > 0) {  // gemma3: one rope per layer type
    j["rope_parameters"] = {{"full_attention", rope},
                            {"sliding_attention", {{"rope_type", "default"}, {"rope_theta", c.local_rope_theta}}}};
    j["rope_local_base_freq"] = c.local_rope_theta;
  }
  j["dtype"] = c.dtype;
  j["torch_dtype"] = c.dtype;
  return j;
}

}  // namespace scorch

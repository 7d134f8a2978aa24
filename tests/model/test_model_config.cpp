// ModelConfig from HF config.json: every field, both transformers 4 and 5 layouts, and a UserError
// naming the field for anything missing or unsupported.
#include <gtest/gtest.h>

#include <cmath>

#include "common/error.h"
#include "model/model_config.h"

using nlohmann::json;
using scorch::model_config_from_json;

namespace {

json llama() {
  return json::parse(R"({
    "model_type": "llama", "vocab_size": 320, "hidden_size": 64, "intermediate_size": 96,
    "num_hidden_layers": 3, "num_attention_heads": 8, "num_key_value_heads": 2,
    "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "max_position_embeddings": 4096,
    "tie_word_embeddings": true, "bos_token_id": 1, "eos_token_id": [2, 7], "torch_dtype": "bfloat16",
    "some_unrelated_key": "kept"
  })");
}

void expect_error(const json& j, const std::string& fragment) {
  try {
    model_config_from_json(j, "cfg.json");
    FAIL() << "expected UserError with '" << fragment << "'";
  } catch (const scorch::UserError& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("cfg.json"), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(ModelConfig, ParsesEveryLlamaField) {
  const auto c = model_config_from_json(llama());
  EXPECT_EQ(c.model_type, "llama");
  EXPECT_EQ(c.vocab_size, 320);
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.intermediate_size, 96);
  EXPECT_EQ(c.num_hidden_layers, 3);
  EXPECT_EQ(c.num_attention_heads, 8);
  EXPECT_EQ(c.num_key_value_heads, 2);
  EXPECT_EQ(c.head_dim, 8);  // hidden_size / heads when absent
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.rope_scaling.type, "default");
  EXPECT_EQ(c.max_position_embeddings, 4096);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_FALSE(c.has_qkv_bias());
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{2, 7}));
  EXPECT_EQ(c.pad_token_id, -1);
  EXPECT_EQ(c.dtype, "bfloat16");
}

TEST(ModelConfig, ReadsTransformers5RopeParametersAndExplicitHeadDim) {
  json j = llama();
  j.erase("rope_theta");
  j["rope_parameters"] = {{"rope_type", "linear"}, {"rope_theta", 10000.0}, {"factor", 4.0}};
  j["head_dim"] = 16;
  j["eos_token_id"] = 2;
  j["attention_bias"] = true;
  const auto c = model_config_from_json(j);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  EXPECT_EQ(c.rope_scaling.type, "linear");
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 4.0);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.q_dim(), 128);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{2}));
  EXPECT_TRUE(c.has_qkv_bias());
  EXPECT_TRUE(c.has_o_bias());
}

TEST(ModelConfig, ReadsLegacyRopeScalingLlama3) {
  json j = llama();
  j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  const auto c = model_config_from_json(j);
  EXPECT_EQ(c.rope_scaling.type, "llama3");
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 8.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8192);
}

TEST(ModelConfig, Qwen2AlwaysHasQkvBiasButNoOutputBias) {
  json j = llama();
  j["model_type"] = "qwen2";
  const auto c = model_config_from_json(j);
  EXPECT_TRUE(c.has_qkv_bias());
  EXPECT_FALSE(c.has_o_bias());
}

TEST(ModelConfig, MistralSlidingWindowIsAccepted) {
  json j = llama();
  j["model_type"] = "mistral";
  j["sliding_window"] = 4096;
  j["head_dim"] = nullptr;  // transformers writes null for "derive it"
  const auto c = model_config_from_json(j);
  EXPECT_EQ(c.model_type, "mistral");
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.sliding_window, 4096);
  for (size_t i = 0; i < 3; ++i) EXPECT_TRUE(c.is_sliding_layer(i));
  j["sliding_window"] = nullptr;
  EXPECT_FALSE(model_config_from_json(j).has_sliding_layers());
}

TEST(ModelConfig, Qwen2SlidingWindowLayersAsTransformers) {
  json j = llama();
  j["model_type"] = "qwen2";
  j["sliding_window"] = 16;
  EXPECT_FALSE(model_config_from_json(j).has_sliding_layers());  // use_sliding_window defaults to false
  j["use_sliding_window"] = true;
  j["max_window_layers"] = 1;  // layers >= 1 slide
  auto c = model_config_from_json(j);
  EXPECT_EQ(c.sliding_window, 16);
  EXPECT_FALSE(c.is_sliding_layer(0));
  EXPECT_TRUE(c.is_sliding_layer(1));
  EXPECT_TRUE(c.is_sliding_layer(2));
  j["layer_types"] = {"sliding_attention", "full_attention", "sliding_attention"};  // wins over max_window_layers
  c = model_config_from_json(j);
  EXPECT_TRUE(c.is_sliding_layer(0));
  EXPECT_FALSE(c.is_sliding_layer(1));
  EXPECT_TRUE(c.is_sliding_layer(2));
  j["layer_types"] = {"sliding_attention", "chunked_attention", "full_attention"};
  expect_error(j, "chunked_attention");
  j["layer_types"] = {"sliding_attention"};
  expect_error(j, "layer_types");
  j.erase("layer_types");
  j["sliding_window"] = 0;
  expect_error(j, "sliding_window");
}

TEST(ModelConfig, MissingRequiredFieldsAreNamed) {
  for (const char* key : {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                          "num_attention_heads", "model_type"}) {
    json j = llama();
    j.erase(key);
    expect_error(j, std::string("`") + key + "` is missing");
  }
  json j = llama();
  j.erase("rope_theta");
  expect_error(j, "`rope_theta` is missing");
}

TEST(ModelConfig, UnsupportedValuesAreNamed) {
  json j = llama();
  j["model_type"] = "gpt2";
  expect_error(j, "'gpt2' is not supported");
  j = llama();
  j["rope_scaling"] = {{"type", "yarn"}, {"factor", 2.0}};
  expect_error(j, "'yarn' is not supported");
  j = llama();
  j["hidden_act"] = "gelu";
  expect_error(j, "'gelu' is not supported");
  j = llama();
  j["num_key_value_heads"] = 3;
  expect_error(j, "must divide num_attention_heads");
  j = llama();
  j["hidden_size"] = "64";
  expect_error(j, "`hidden_size` must be an integer");
  j = llama();
  j["num_hidden_layers"] = 0;
  expect_error(j, "`num_hidden_layers` must be >= 1");
  j = llama();
  j["mlp_bias"] = true;
  expect_error(j, "`mlp_bias`");
  j = llama();
  j["torch_dtype"] = "int8";
  expect_error(j, "'int8' is not supported");
}

TEST(ModelConfig, ToJsonRoundTripsAndKeepsUnknownKeys) {
  json j = llama();
  j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  const auto c = model_config_from_json(j);
  const json out = scorch::model_config_to_json(c);
  EXPECT_EQ(out["some_unrelated_key"], "kept");
  EXPECT_EQ(out["architectures"], json({"LlamaForCausalLM"}));
  EXPECT_EQ(out["rope_parameters"]["rope_type"], "llama3");
  EXPECT_EQ(out["eos_token_id"], json({2, 7}));
  const auto back = model_config_from_json(out);
  EXPECT_EQ(back.head_dim, c.head_dim);
  EXPECT_EQ(back.num_key_value_heads, c.num_key_value_heads);
  EXPECT_DOUBLE_EQ(back.rope_theta, c.rope_theta);
  EXPECT_EQ(back.rope_scaling.type, "llama3");
  EXPECT_DOUBLE_EQ(back.rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(back.eos_token_ids, c.eos_token_ids);
  EXPECT_EQ(back.tie_word_embeddings, c.tie_word_embeddings);
  EXPECT_EQ(back.dtype, c.dtype);
}

TEST(ModelConfig, FamilyOptionsFollowModelType) {
  json j = llama();
  j["model_type"] = "qwen3";
  auto c = model_config_from_json(j);
  EXPECT_EQ(c.qk_norm, scorch::QkNorm::kPerHead);
  EXPECT_FALSE(c.post_norms);
  j["model_type"] = "olmo2";
  c = model_config_from_json(j);
  EXPECT_EQ(c.qk_norm, scorch::QkNorm::kFull);
  EXPECT_TRUE(c.post_norms && !c.pre_norms && c.norm_weight_in_fp32);
  j["model_type"] = "gemma2";
  j["head_dim"] = 16;
  c = model_config_from_json(j);
  EXPECT_TRUE(c.post_norms && c.pre_norms && c.scale_embeddings);
  EXPECT_EQ(c.norm_weight_offset, 1.0);
  EXPECT_EQ(c.hidden_act, scorch::Activation::kGeluTanh);
  EXPECT_EQ(c.attn_logit_softcapping, 50.0);  // transformers' defaults when absent
  EXPECT_EQ(c.final_logit_softcapping, 30.0);
  EXPECT_DOUBLE_EQ(c.attention_scale(), 1.0 / 16.0);  // query_pre_attn_scalar 256
  j["attn_logit_softcapping"] = nullptr;  // null: none
  j["final_logit_softcapping"] = 12.5;
  j["query_pre_attn_scalar"] = 64;
  c = model_config_from_json(j);
  EXPECT_EQ(c.attn_logit_softcapping, 0.0);
  EXPECT_EQ(c.final_logit_softcapping, 12.5);
  EXPECT_DOUBLE_EQ(c.attention_scale(), 0.125);
  j["sliding_window"] = 32;  // gemma2 alternates local / global without layer_types
  c = model_config_from_json(j);
  EXPECT_TRUE(c.is_sliding_layer(0));
  EXPECT_FALSE(c.is_sliding_layer(1));
  EXPECT_TRUE(c.is_sliding_layer(2));
  j["hidden_activation"] = "relu";
  expect_error(j, "hidden_activation");
  j.erase("hidden_activation");
  j["use_bidirectional_attention"] = true;
  expect_error(j, "use_bidirectional_attention");
}

TEST(ModelConfig, Gemma3LocalRopeInBothLayouts) {
  json j = llama();
  j["model_type"] = "gemma3_text";
  j["head_dim"] = 16;
  j.erase("rope_theta");
  j["rope_parameters"] = json::parse(R"({"full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0},
                                         "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}})");
  auto c = model_config_from_json(j);
  EXPECT_EQ(c.rope_theta, 1000000.0);
  EXPECT_EQ(c.rope_scaling.type, "linear");
  EXPECT_EQ(c.rope_scaling.factor, 8.0);
  EXPECT_EQ(c.local_rope_theta, 10000.0);
  EXPECT_EQ(c.qk_norm, scorch::QkNorm::kPerHead);
  // written back nested, and read again the same
  const auto again = model_config_from_json(scorch::model_config_to_json(c));
  EXPECT_EQ(again.rope_theta, 1000000.0);
  EXPECT_EQ(again.rope_scaling.factor, 8.0);
  EXPECT_EQ(again.local_rope_theta, 10000.0);
  j.erase("rope_parameters");  // transformers 4: rope_theta, rope_local_base_freq
  j["rope_theta"] = 500000.0;
  j["rope_local_base_freq"] = 5000.0;
  c = model_config_from_json(j);
  EXPECT_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.local_rope_theta, 5000.0);
  j["sliding_window"] = 4;
  j["sliding_window_pattern"] = 3;
  c = model_config_from_json(j);
  EXPECT_TRUE(c.is_sliding_layer(0) && c.is_sliding_layer(1) && !c.is_sliding_layer(2));
}

TEST(ModelConfig, Phi3LongropeAndPartialRotary) {
  json j = llama();
  j["model_type"] = "phi3";
  j["partial_rotary_factor"] = 0.75;  // head_dim 8 -> 6 rotary dimensions, 3 frequencies
  j["original_max_position_embeddings"] = 1024;
  j["rope_scaling"] = json::parse(R"({"type": "su", "short_factor": [1.0, 1.5, 2.0], "long_factor": [3.0, 4.0, 5.0]})");
  auto c = model_config_from_json(j);
  EXPECT_EQ(c.rotary_dim(), 6);
  EXPECT_EQ(c.rope_scaling.type, "longrope");
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 1024);
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 4.0);  // max_position_embeddings 4096 / 1024
  EXPECT_DOUBLE_EQ(c.rope_scaling.attention_factor, std::sqrt(1 + std::log(4.0) / std::log(1024.0)));
  EXPECT_EQ(c.context_length(), 1024);
  EXPECT_TRUE(c.hf_fused_projections);
  j["rope_scaling"]["short_factor"] = {1.0, 2.0};
  expect_error(j, "short_factor");
  j["rope_scaling"] = json::parse(R"({"rope_type": "linear", "factor": 2.0})");
  expect_error(j, "rope_type");
}

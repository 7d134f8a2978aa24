// HF tensor names <-> Transformer weights (see hf_adapter.h). Names follow transformers'
// LlamaForCausalLM / Qwen2ForCausalLM / MistralForCausalLM state dicts.
#include "model/hf_adapter.h"

#include "common/strings.h"
#include "model/transformer.h"

namespace scorch {

std::vector<std::pair<std::string, at::Tensor*>> hf_tensor_slots(Transformer& m) {
  const ModelConfig& c = m.config();
  std::vector<std::pair<std::string, at::Tensor*>> out;
  out.emplace_back("model.embed_tokens.weight", &m.embed_tokens_);
  for (size_t i = 0; i < m.layers_.size(); ++i) {
    TransformerLayer& L = m.layers_[i];
    const std::string p = "model.layers." + std::to_string(i) + ".";
    out.emplace_back(p + "input_layernorm.weight", &L.input_norm);
    out.emplace_back(p + "self_attn.q_proj.weight", &L.q_weight);
    out.emplace_back(p + "self_attn.k_proj.weight", &L.k_weight);
    out.emplace_back(p + "self_attn.v_proj.weight", &L.v_weight);
    out.emplace_back(p + "self_attn.o_proj.weight", &L.o_weight);
    if (c.has_qkv_bias()) {
      out.emplace_back(p + "self_attn.q_proj.bias", &L.q_bias);
      out.emplace_back(p + "self_attn.k_proj.bias", &L.k_bias);
      out.emplace_back(p + "self_attn.v_proj.bias", &L.v_bias);
    }
    if (c.has_o_bias()) out.emplace_back(p + "self_attn.o_proj.bias", &L.o_bias);
    out.emplace_back(p + "post_attention_layernorm.weight", &L.post_attention_norm);
    out.emplace_back(p + "mlp.gate_proj.weight", &L.gate_weight);
    out.emplace_back(p + "mlp.up_proj.weight", &L.up_weight);
    out.emplace_back(p + "mlp.down_proj.weight", &L.down_weight);
  }
  out.emplace_back("model.norm.weight", &m.norm_);
  if (!c.tie_word_embeddings) out.emplace_back("lm_head.weight", &m.lm_head_);
  return out;
}

namespace {
constexpr const char* kProjectionNames[kNumProjections] = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                                           "gate_proj", "up_proj", "down_proj"};
}

const char* projection_module_name(Projection p) { return kProjectionNames[static_cast<int>(p)]; }

bool parse_projection(const std::string& name, Projection* out) {
  for (int i = 0; i < kNumProjections; ++i) {
    if (name == kProjectionNames[i]) {
      *out = static_cast<Projection>(i);
      return true;
    }
  }
  return false;
}

std::vector<std::pair<std::string, at::Tensor*>> lora_tensor_slots(Transformer& m) {
  std::vector<std::pair<std::string, at::Tensor*>> out;
  for (size_t i = 0; i < m.layers_.size(); ++i) {
    for (int p = 0; p < kNumProjections; ++p) {
      LoraWeights& w = m.layers_[i].lora[static_cast<size_t>(p)];
      if (!w.defined()) continue;
      const std::string parent = p <= static_cast<int>(Projection::o) ? "self_attn." : "mlp.";
      const std::string name = "base_model.model.model.layers." + std::to_string(i) + "." + parent + kProjectionNames[p];
      out.emplace_back(name + ".lora_A.weight", &w.a);
      out.emplace_back(name + ".lora_B.weight", &w.b);
    }
  }
  return out;
}

bool hf_ignorable_tensor(const std::string& name, bool tie_word_embeddings) {
  if (ends_with(name, "rotary_emb.inv_freq")) return true;
  return tie_word_embeddings && name == "lm_head.weight";
}

}  // namespace scorch

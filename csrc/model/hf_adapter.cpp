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

bool hf_ignorable_tensor(const std::string& name, bool tie_word_embeddings) {
  if (ends_with(name, "rotary_emb.inv_freq")) return true;
  return tie_word_embeddings && name == "lm_head.weight";
}

}  // namespace scorch

// HF tensor names <-> Transformer weights (see hf_adapter.h). Names follow transformers'
// LlamaForCausalLM / Qwen2ForCausalLM / MistralForCausalLM / Qwen3ForCausalLM / Olmo2ForCausalLM
// state dicts.
#include "model/hf_adapter.h"

#include <ATen/ATen.h>

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
    if (c.pre_norms) out.emplace_back(p + "input_layernorm.weight", &L.input_norm);
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
    if (c.qk_norm != QkNorm::kNone) {
      out.emplace_back(p + "self_attn.q_norm.weight", &L.q_norm);
      out.emplace_back(p + "self_attn.k_norm.weight", &L.k_norm);
    }
    out.emplace_back(p + "post_attention_layernorm.weight", &L.post_attention_norm);
    if (c.post_norms && c.pre_norms) {
      out.emplace_back(p + "pre_feedforward_layernorm.weight", &L.pre_feedforward_norm);
    }
    if (c.post_norms) out.emplace_back(p + "post_feedforward_layernorm.weight", &L.post_feedforward_norm);
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

namespace {

// (fused name, part names, part rows) of layer i's fused checkpoint tensors.
struct FusedTensor {
  std::string fused;
  std::vector<std::string> parts;
  std::vector<int64_t> rows;
};

std::vector<FusedTensor> fused_tensors(const ModelConfig& c) {
  std::vector<FusedTensor> out;
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    out.push_back({p + "self_attn.qkv_proj.weight",
                   {p + "self_attn.q_proj.weight", p + "self_attn.k_proj.weight", p + "self_attn.v_proj.weight"},
                   {c.q_dim(), c.kv_dim(), c.kv_dim()}});
    out.push_back({p + "mlp.gate_up_proj.weight",
                   {p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight"},
                   {c.intermediate_size, c.intermediate_size}});
  }
  return out;
}

}  // namespace

std::map<std::string, at::Tensor> hf_split_fused(const ModelConfig& c, std::map<std::string, at::Tensor> tensors) {
  if (!c.hf_fused_projections) return tensors;
  for (const FusedTensor& f : fused_tensors(c)) {
    auto it = tensors.find(f.fused);
    if (it == tensors.end()) continue;
    int64_t total = 0;
    for (int64_t r : f.rows) total += r;
    if (it->second.dim() != 2 || it->second.size(0) != total) continue;
    const at::Tensor whole = it->second;
    tensors.erase(it);
    int64_t row = 0;
    for (size_t k = 0; k < f.parts.size(); ++k) {
      tensors[f.parts[k]] = whole.narrow(0, row, f.rows[k]);
      row += f.rows[k];
    }
  }
  return tensors;
}

std::map<std::string, at::Tensor> hf_fuse_for_export(const ModelConfig& c, std::map<std::string, at::Tensor> tensors) {
  if (!c.hf_fused_projections) return tensors;
  for (const FusedTensor& f : fused_tensors(c)) {
    std::vector<at::Tensor> parts;
    for (const std::string& name : f.parts) {
      parts.push_back(tensors.at(name));
      tensors.erase(name);
    }
    tensors[f.fused] = at::cat(parts, 0);
  }
  return tensors;
}

bool hf_ignorable_tensor(const std::string& name, bool tie_word_embeddings) {
  if (ends_with(name, "rotary_emb.inv_freq")) return true;
  return tie_word_embeddings && name == "lm_head.weight";
}

}  // namespace scorch

// The one place that knows HuggingFace tensor names (model.layers.{i}.self_attn.q_proj.weight, ...).
// Everything else (named_parameters, load, export, init, checkpoints) enumerates the model's
// weights through hf_tensor_slots().
#pragma once
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

namespace scorch {

class Transformer;
enum class Projection;
struct ModelConfig;

// (HF name, the model's tensor slot) for every weight the config gives the model, in a fixed order
// (embedding, layers in order, final norm, lm_head when not tied). Biases appear only when the
// config has them; lm_head.weight only when tie_word_embeddings is false.
std::vector<std::pair<std::string, at::Tensor*>> hf_tensor_slots(Transformer& model);

// A projection's HF / PEFT module name: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj.
const char* projection_module_name(Projection p);
// The projection a module name denotes; false if `name` is none of the seven.
bool parse_projection(const std::string& name, Projection* out);

// (PEFT name, slot) for each LoRA tensor the model has, in layer then projection order:
// base_model.model.model.layers.{i}.{self_attn|mlp}.{module}.lora_{A|B}.weight, the keys of
// PEFT's adapter_model.safetensors.
std::vector<std::pair<std::string, at::Tensor*>> lora_tensor_slots(Transformer& model);

// Names a HF checkpoint may carry that the model does not use and that are safely ignored
// (rotary inv_freq buffers of old checkpoints; lm_head.weight of a tied model).
bool hf_ignorable_tensor(const std::string& name, bool tie_word_embeddings);

// Checkpoints that fuse projections (ModelConfig::hf_fused_projections, phi3): on load, each layer's
// self_attn.qkv_proj.weight and mlp.gate_up_proj.weight are split into the q/k/v_proj and
// gate/up_proj rows that hf_tensor_slots names; on export they are fused back. Other tensors pass
// through, and so does a fused tensor of the wrong row count (the shape check then names it).
std::map<std::string, at::Tensor> hf_split_fused(const ModelConfig& config, std::map<std::string, at::Tensor> tensors);
std::map<std::string, at::Tensor> hf_fuse_for_export(const ModelConfig& config,
                                                     std::map<std::string, at::Tensor> tensors);

}  // namespace scorch

// LoRA adapters (Hu et al. 2021, "LoRA: Low-Rank Adaptation") on the decoder's linear projections,
// in PEFT's conventions so that an adapter trained here is a PEFT adapter:
//   y = x Wᵀ + b + scaling · (dropout(x) Aᵀ) Bᵀ,   A = lora_A [r, in], B = lora_B [out, r],
//   scaling = lora_alpha / r  (rsLoRA: lora_alpha / sqrt(r)).
// Init (PEFT's init_lora_weights): B = 0, A kaiming-uniform with a = sqrt(5), i.e. U(-1/sqrt(in),
// 1/sqrt(in)) (PEFT's default, `true`), or "gaussian" N(0, (1/r)²). B = 0 makes the adapted model
// start exactly at the base.
//
// The adapter tensors live in TransformerLayer::lora, in the model's dtype and on its device; the
// forward adds each adapter's term to its projection's output (transformer.cpp's project()), so
// the fused q/k/v and gate/up GEMMs of the frozen base stay single GEMMs. Training updates only
// Transformer::trainable_parameters() (the adapter); the base tensors are never written.
//
// The rollout engine samples the adapted model through the same forward (unmerged adapters): the
// engine and the trainer read the very tensors the optimizer updates, so there is no copy of the
// policy to keep in sync and the frozen base is never merged into in place.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "model/transformer.h"

namespace scorch {

struct LoraSection;

// The projections `target_modules` names (q_proj ... down_proj, or the single entry "all-linear"
// for all seven). UserError naming the model's valid module names for anything else or an empty list.
std::vector<Projection> lora_targets(const std::vector<std::string>& target_modules);
// lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora.
double lora_scaling(const LoraSection& lora);

// Gives `model` fresh adapters on lora.target_modules (replacing any it had), initialised as above
// (deterministic in `seed`, drawn in fp32 on the CPU), requiring grad; freezes the base weights.
void add_lora(Transformer& model, const LoraSection& lora, uint64_t seed);

// The frozen reference of KL / DPO: with an adapter, the policy with the adapter disabled (it
// shares the base tensors: no second copy of the weights, as TRL's disabled-adapter reference);
// without one, a deep copy of the policy as it is now.
Transformer frozen_reference(const Transformer& policy);

// FNV-1a over the bytes of every adapter tensor, in slot order, cut to 53 bits so that it survives
// metrics.jsonl's doubles exactly: which adapter the rollout engine sampled with (logged per step
// as rollout/adapter_checksum). 0 for a model without an adapter.
double adapter_checksum(const Transformer& model);

// A new model (own storage, no adapter) whose weights are base + scaling · B A; `model` is unchanged.
Transformer merge_lora(const Transformer& model);

// PEFT adapter directory: adapter_model.safetensors (PEFT key names, the adapter's dtype) and
// adapter_config.json (peft_type LORA, task_type CAUSAL_LM, r, lora_alpha, lora_dropout,
// target_modules, use_rslora, init_lora_weights, base_model_name_or_path), plus the tokenizer
// files of `tokenizer_source` when given (as TRL saves them beside an adapter; `tokenizer_files` as
// in ExportOptions). Built beside `dir`
// and swapped in whole.
void save_peft_adapter(const Transformer& model, const LoraSection& lora, const std::string& dir,
                       const std::string& base_model_path, const std::string& tokenizer_source = "",
                       const std::map<std::string, std::string>& tokenizer_files = {});
bool is_peft_adapter_dir(const std::string& dir);
// Reads adapter_config.json into a LoraSection (enabled = true) and the base model path it names.
// UserError for a PEFT option scorch does not implement (DoRA, bias training, modules_to_save,
// rank/alpha patterns, fan_in_fan_out, another peft_type).
LoraSection read_peft_adapter_config(const std::string& dir, std::string* base_model_path = nullptr);
// Adds the adapter of `dir` to `model` (shapes checked against the model; cast to its dtype/device).
void load_peft_adapter(Transformer& model, const std::string& dir);

}  // namespace scorch

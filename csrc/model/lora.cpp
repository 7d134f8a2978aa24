// LoRA adapters: creation, merge, and PEFT's adapter directory (see lora.h).
#include "model/lora.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/GradMode.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/fs.h"
#include "common/kill_point.h"
#include "common/rng.h"
#include "common/strings.h"
#include "config/config.h"
#include "model/hf_adapter.h"
#include "model/hf_checkpoint.h"
#include "model/safetensors.h"

namespace scorch {
namespace {

const char* kAdapterWeights = "adapter_model.safetensors";
const char* kAdapterConfig = "adapter_config.json";

std::string join_path(const std::string& dir, const std::string& name) {
  return (std::filesystem::path(dir) / name).string();
}

std::string valid_module_names() {
  std::string out;
  for (int p = 0; p < kNumProjections; ++p) out += std::string(p ? ", " : "") + projection_module_name(static_cast<Projection>(p));
  return out + ", or \"all-linear\"";
}

}  // namespace

std::vector<Projection> lora_targets(const std::vector<std::string>& target_modules) {
  if (target_modules.empty()) {
    throw UserError("lora.target_modules is empty: name the projections to adapt (" + valid_module_names() + ")");
  }
  if (target_modules.size() == 1 && target_modules[0] == "all-linear") {
    std::vector<Projection> all;
    for (int p = 0; p < kNumProjections; ++p) all.push_back(static_cast<Projection>(p));
    return all;
  }
  std::vector<Projection> out;
  for (const std::string& name : target_modules) {
    Projection p;
    if (!parse_projection(name, &p)) {
      throw UserError("lora.target_modules names '" + name + "', which is not a linear module of this model: use " +
                      valid_module_names());
    }
    if (std::find(out.begin(), out.end(), p) == out.end()) out.push_back(p);
  }
  std::sort(out.begin(), out.end());
  return out;
}

double lora_scaling(const LoraSection& lora) {
  const double r = static_cast<double>(lora.r);
  return lora.use_rslora ? lora.lora_alpha / std::sqrt(r) : lora.lora_alpha / r;
}

void add_lora(Transformer& model, const LoraSection& lora, uint64_t seed) {
  const std::vector<Projection> targets = lora_targets(lora.target_modules);
  if (lora.r < 1) throw UserError("lora.r must be >= 1");
  if (model.config().hf_fused_projections) {
    throw UserError("LoRA on " + model.config().model_type + ": its HF files store the projections fused (qkv_proj, "
                    "gate_up_proj); scorch's adapters and their PEFT export name the separate q/k/v and gate/up "
                    "projections, which PEFT cannot load on this model, so LoRA is not built for it. Fix: set "
                    "lora.enabled: false (full fine-tuning)");
  }
  if (lora.init_lora_weights != "kaiming" && lora.init_lora_weights != "gaussian") {
    throw UserError("lora.init_lora_weights '" + lora.init_lora_weights + "' is not supported: use kaiming or gaussian");
  }
  c10::NoGradGuard no_grad;
  model.set_requires_grad(false);
  at::Generator gen = at::detail::createCPUGenerator(rng::derive(seed, {rng::kTagLora}));
  const auto options = at::TensorOptions().dtype(model.dtype()).device(model.device());
  for (TransformerLayer& L : model.layers_) {
    L.lora = {};
    for (Projection p : targets) {
      const at::Tensor& w = projection_weight(L, p);
      const int64_t out = w.size(0), in = w.size(1);
      at::Tensor a = at::empty({lora.r, in}, at::kFloat);
      if (lora.init_lora_weights == "gaussian") {
        a.normal_(0.0, 1.0 / static_cast<double>(lora.r), gen);
      } else {
        const double bound = 1.0 / std::sqrt(static_cast<double>(in));  // kaiming_uniform_(a=sqrt(5))
        a.uniform_(-bound, bound, gen);
      }
      LoraWeights& lw = L.lora[static_cast<size_t>(p)];
      lw.a = a.to(options).requires_grad_(true);
      lw.b = at::zeros({out, lora.r}, options).requires_grad_(true);
    }
  }
  model.set_lora_scale({lora_scaling(lora), lora.lora_dropout});
}

Transformer frozen_reference(const Transformer& policy) {
  Transformer reference = policy.has_lora() ? policy.without_lora() : policy.clone();
  reference.set_requires_grad(false);
  return reference;
}

double adapter_checksum(const Transformer& model) {
  uint64_t h = 1469598103934665603ull;
  for (const auto& [name, slot] : lora_tensor_slots(const_cast<Transformer&>(model))) {
    const at::Tensor t = slot->detach().to(at::kCPU).contiguous();
    const auto* bytes = static_cast<const unsigned char*>(t.data_ptr());
    const size_t n = static_cast<size_t>(t.numel()) * t.element_size();
    for (size_t i = 0; i < n; ++i) h = (h ^ bytes[i]) * 1099511628211ull;
  }
  return model.has_lora() ? static_cast<double>(h & ((1ull << 53) - 1)) : 0.0;
}

Transformer merge_lora(const Transformer& model) {
  Transformer merged = model.without_lora().clone();
  merged.set_requires_grad(false);
  c10::NoGradGuard no_grad;
  const double scaling = model.lora_scale().scaling;
  for (size_t i = 0; i < model.layers_.size(); ++i) {
    for (int p = 0; p < kNumProjections; ++p) {
      const LoraWeights& w = model.layers_[i].lora[static_cast<size_t>(p)];
      if (!w.defined()) continue;
      at::Tensor target = projection_weight(merged.layers_[i], static_cast<Projection>(p));  // shares the merged storage
      const at::Tensor delta = at::matmul(w.b.to(at::kFloat), w.a.to(at::kFloat)) * scaling;
      target.copy_(target.to(at::kFloat) + delta);
    }
  }
  return merged;
}

void save_peft_adapter(const Transformer& model, const LoraSection& lora, const std::string& dir,
                       const std::string& base_model_path, const std::string& tokenizer_source,
                       const std::map<std::string, std::string>& tokenizer_files) {
  if (!model.has_lora()) throw std::logic_error("save_peft_adapter: the model has no adapter");
  safetensors::TensorMap tensors;
  for (const auto& [name, t] : model.lora_parameters()) {
    if (!at::isfinite(t).all().item<bool>()) {
      throw UserError("refusing to export the adapter to '" + dir + "': '" + name +
                      "' holds NaN or infinite values; use an earlier checkpoint or train again with a lower "
                      "learning rate / gradient clipping");
    }
    tensors[name] = t.detach();
  }
  // Built beside `dir` and swapped in whole, like export_hf_model: a failure leaves `dir` as it was.
  fs::StagedDirectory staged(dir);
  safetensors::save(join_path(staged.path(), kAdapterWeights), tensors, {{"format", "pt"}});
  nlohmann::json modules = nlohmann::json::array();
  for (Projection p : lora_targets(lora.target_modules)) modules.push_back(projection_module_name(p));
  nlohmann::json config = {
      {"peft_type", "LORA"},
      {"task_type", "CAUSAL_LM"},
      {"base_model_name_or_path", base_model_path},
      {"r", lora.r},
      {"lora_alpha", lora.lora_alpha},
      {"lora_dropout", lora.lora_dropout},
      {"target_modules", modules},
      {"use_rslora", lora.use_rslora},
      {"use_dora", false},
      {"bias", "none"},
      {"fan_in_fan_out", false},
      {"modules_to_save", nullptr},
      {"inference_mode", true},
  };
  if (lora.init_lora_weights == "gaussian") config["init_lora_weights"] = "gaussian";
  else config["init_lora_weights"] = true;
  fs::atomic_write(join_path(staged.path(), kAdapterConfig), config.dump(2) + "\n");
  if (!tokenizer_source.empty()) copy_tokenizer_files(tokenizer_source, staged.path(), tokenizer_files);
  kill_point("export");
  staged.commit();
}

bool is_peft_adapter_dir(const std::string& dir) { return fs::exists(join_path(dir, kAdapterConfig)); }

LoraSection read_peft_adapter_config(const std::string& dir, std::string* base_model_path) {
  const std::string path = join_path(dir, kAdapterConfig);
  const nlohmann::json j = nlohmann::json::parse(fs::read_file(path, "adapter config"), nullptr, false);
  if (j.is_discarded() || !j.is_object()) throw UserError("'" + path + "' is not a JSON object");
  const auto unsupported = [&](const std::string& what) {
    throw UserError("'" + path + "' uses " + what + ", which scorch does not implement: only plain LoRA adapters load");
  };
  if (j.value("peft_type", std::string("LORA")) != "LORA") unsupported("peft_type " + j["peft_type"].dump());
  if (j.value("use_dora", false)) unsupported("use_dora");
  if (j.value("bias", std::string("none")) != "none") unsupported("bias " + j["bias"].dump());
  if (j.value("fan_in_fan_out", false)) unsupported("fan_in_fan_out");
  if (j.value("lora_bias", false)) unsupported("lora_bias");
  for (const char* key : {"modules_to_save", "layers_to_transform", "layers_pattern", "rank_pattern", "alpha_pattern",
                          "exclude_modules", "layer_replication", "target_parameters", "trainable_token_indices"}) {
    if (j.contains(key) && !j[key].is_null() && !j[key].empty()) unsupported(key);
  }
  LoraSection lora;
  lora.enabled = true;
  try {
    lora.r = j.at("r").get<int64_t>();
    lora.lora_alpha = j.value("lora_alpha", 8.0);
    lora.lora_dropout = j.value("lora_dropout", 0.0);
    lora.use_rslora = j.value("use_rslora", false);
    const nlohmann::json& modules = j.at("target_modules");
    lora.target_modules.clear();
    if (modules.is_string()) lora.target_modules.push_back(modules.get<std::string>());
    else for (const auto& m : modules) lora.target_modules.push_back(m.get<std::string>());
    const nlohmann::json init = j.value("init_lora_weights", nlohmann::json(true));
    lora.init_lora_weights = init.is_string() ? init.get<std::string>() : "kaiming";
  } catch (const nlohmann::json::exception& e) {
    throw UserError("'" + path + "' is not a valid LoRA adapter config: " + e.what());
  }
  if (lora.r < 1) throw UserError("'" + path + "': r must be >= 1");
  if (base_model_path) *base_model_path = j.value("base_model_name_or_path", std::string());
  return lora;
}

void load_peft_adapter(Transformer& model, const std::string& dir) {
  const LoraSection lora = read_peft_adapter_config(dir);
  const std::string file = join_path(dir, kAdapterWeights);
  if (!fs::exists(file)) throw UserError("adapter directory '" + dir + "' has no " + kAdapterWeights);
  safetensors::TensorMap tensors = safetensors::load(file);
  // Shapes come from the file; the names and projections from the config. Older PEFT versions
  // wrote the adapter name into the key (".lora_A.default.weight"); both are accepted.
  for (auto it = tensors.begin(); it != tensors.end();) {
    const std::string name = it->first;
    const size_t pos = name.find(".default.weight");
    if (pos != std::string::npos && pos + 15 == name.size()) {
      tensors[name.substr(0, pos) + ".weight"] = it->second;
      it = tensors.erase(it);
    } else {
      ++it;
    }
  }
  LoraSection shaped = lora;
  add_lora(model, shaped, 0);  // allocates every adapter slot with the right shapes
  c10::NoGradGuard no_grad;
  std::vector<std::string> missing;
  for (auto& [name, slot] : lora_tensor_slots(model)) {
    auto it = tensors.find(name);
    if (it == tensors.end()) {
      missing.push_back(name);
      continue;
    }
    if (it->second.sizes() != slot->sizes()) {
      throw UserError("adapter tensor " + name + " in '" + file + "' has the wrong shape for this base model");
    }
    slot->copy_(it->second);
    tensors.erase(it);
  }
  if (!missing.empty()) throw UserError("'" + file + "' lacks " + missing[0] + " (" + std::to_string(missing.size()) + " missing)");
  if (!tensors.empty()) {
    throw UserError("'" + file + "' holds " + tensors.begin()->first + ", which adapter_config.json does not describe");
  }
}

}  // namespace scorch

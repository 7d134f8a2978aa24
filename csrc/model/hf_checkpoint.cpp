// Loading and exporting HuggingFace model directories (see hf_checkpoint.h). Tensor names come
// from hf_adapter; this file only knows the directory layout (file names, the shard index).
#include "model/hf_checkpoint.h"

#include <map>

#include <ATen/ATen.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "common/error.h"
#include "common/fs.h"
#include "common/kill_point.h"
#include "common/log.h"
#include "model/hf_adapter.h"

namespace scorch {
namespace {

namespace stdfs = std::filesystem;

const char* kWeights = "model.safetensors";
const char* kIndex = "model.safetensors.index.json";
const char* kTokenizerFiles[] = {"tokenizer.model", "tokenizer.json", "tokenizer_config.json",
                                 "special_tokens_map.json", "added_tokens.json", "chat_template.jinja"};

std::string join(const std::string& dir, const std::string& name) { return (stdfs::path(dir) / name).string(); }

std::string shape_text(at::IntArrayRef s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

std::string listing(const std::vector<std::string>& items) {
  std::string out;
  const size_t shown = std::min<size_t>(items.size(), 12);
  for (size_t i = 0; i < shown; ++i) out += (i ? ", " : "") + items[i];
  if (items.size() > shown) out += ", ... (" + std::to_string(items.size() - shown) + " more)";
  return out;
}

void copy_file_atomic(const std::string& from, const std::string& to) {
  std::error_code ec;
  if (stdfs::exists(to, ec) && stdfs::equivalent(from, to, ec)) return;  // exporting in place
  fs::atomic_write(to, fs::read_file(from, "file"));
}

}  // namespace

at::ScalarType parse_model_dtype(const std::string& name) {
  if (name == "float32") return at::kFloat;
  if (name == "bfloat16") return at::kBFloat16;
  if (name == "float16") return at::kHalf;
  throw UserError("model dtype '" + name + "' is not supported (use float32, bfloat16 or float16)");
}

std::string model_dtype_name(at::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat: return "float32";
    case at::kBFloat16: return "bfloat16";
    case at::kHalf: return "float16";
    default: throw UserError("model weights of dtype " + std::string(c10::toString(dtype)) +
                             " are not supported (use float32, bfloat16 or float16)");
  }
}

safetensors::TensorMap read_hf_weights(const std::string& dir) {
  const std::string single = join(dir, kWeights), index = join(dir, kIndex);
  if (fs::exists(single)) return safetensors::load(single);
  if (!fs::exists(index)) {
    throw UserError("no weights in '" + dir + "': expected " + kWeights + " or " + kIndex + " with its shards");
  }
  const auto by_file = safetensors::parse_shard_index(fs::read_file(index, "safetensors index"), index);
  safetensors::TensorMap all;
  for (const auto& [file, names] : by_file) {
    safetensors::TensorMap shard = safetensors::load(join(dir, file));
    for (const auto& name : names) {
      auto found = shard.find(name);
      if (found == shard.end()) throw UserError(index + " maps '" + name + "' to " + file + ", which does not contain it");
      all[name] = found->second;
    }
  }
  return all;
}

void assign_hf_weights(Transformer& model, const safetensors::TensorMap& checkpoint, const std::string& source,
                       std::optional<at::Device> device) {
  const safetensors::TensorMap tensors = hf_split_fused(model.config(), checkpoint);
  auto slots = hf_tensor_slots(model);
  std::vector<std::string> missing, unexpected, misshaped;
  std::set<std::string> expected;
  for (auto& [name, slot] : slots) {
    expected.insert(name);
    auto it = tensors.find(name);
    if (it == tensors.end()) {
      missing.push_back(name);
    } else if (it->second.sizes() != slot->sizes()) {
      misshaped.push_back(name + " " + shape_text(it->second.sizes()) + " (config needs " + shape_text(slot->sizes()) + ")");
    }
  }
  for (const auto& [name, t] : tensors) {
    if (!expected.count(name) && !hf_ignorable_tensor(name, model.config().tie_word_embeddings)) {
      unexpected.push_back(name);
    }
  }
  if (!missing.empty() || !unexpected.empty() || !misshaped.empty()) {
    std::string msg = "weights in " + source + " do not match its config (" + model.config().model_type + ", " +
                      std::to_string(model.config().num_hidden_layers) + " layers):";
    if (!missing.empty()) msg += "\n  missing: " + listing(missing);
    if (!unexpected.empty()) msg += "\n  unexpected: " + listing(unexpected);
    if (!misshaped.empty()) msg += "\n  wrong shape: " + listing(misshaped);
    throw UserError(msg);
  }
  const auto dtype = model.dtype();
  const at::Device target = device.value_or(model.device());
  for (auto& [name, slot] : slots) {
    const at::Tensor& t = tensors.at(name);
    if (!at::isFloatingType(t.scalar_type())) {
      throw UserError("tensor '" + name + "' in " + source + " has non-float dtype " + std::string(c10::toString(t.scalar_type())));
    }
    *slot = t.to(target, dtype);
  }
  model.to(target);  // the weights are there already; this places the RoPE table beside them
}

Transformer load_hf_model(const std::string& dir, const LoadOptions& options) {
  if (!fs::is_directory(dir)) throw UserError("model directory '" + dir + "' does not exist");
  ModelConfig config = load_model_config(join(dir, "config.json"));
  safetensors::TensorMap tensors = read_hf_weights(dir);
  at::ScalarType dtype = at::kFloat;
  if (options.dtype) {
    dtype = *options.dtype;
  } else if (auto it = tensors.find("model.embed_tokens.weight"); it != tensors.end()) {
    dtype = it->second.scalar_type();
  }
  config.dtype = model_dtype_name(dtype);
  // Allocate on the meta device: assign_hf_weights replaces every slot with the loaded tensor.
  Transformer model(config, dtype, at::Device(at::kMeta));
  assign_hf_weights(model, tensors, "'" + dir + "'", options.device);
  return model;
}

namespace {
// The files of an export, written into `out_dir` (a fresh staging directory).
void write_model_directory(const Transformer& model, const std::string& out_dir, const ExportOptions& options) {
  std::map<std::string, at::Tensor> named = hf_fuse_for_export(model.config(), model.named_parameters());
  ModelConfig config = model.config();
  config.dtype = model_dtype_name(model.dtype());

  // Weights: one file, or shards filled greedily in name order plus an index.
  int64_t total = 0;
  for (const auto& [name, t] : named) total += t.numel() * t.element_size();
  std::vector<safetensors::TensorMap> shards(1);
  int64_t in_shard = 0;
  for (const auto& [name, t] : named) {
    const int64_t bytes = t.numel() * t.element_size();
    if (in_shard > 0 && in_shard + bytes > options.max_shard_bytes) {
      shards.emplace_back();
      in_shard = 0;
    }
    shards.back()[name] = t;
    in_shard += bytes;
  }
  const safetensors::Metadata meta{{"format", "pt"}};
  std::set<std::string> written;
  if (shards.size() == 1) {
    safetensors::save(join(out_dir, kWeights), shards[0], meta);
    written.insert(kWeights);
  } else {
    nlohmann::json weight_map = nlohmann::json::object();
    const size_t n = shards.size();
    for (size_t i = 0; i < n; ++i) {
      char file[64];
      std::snprintf(file, sizeof(file), "model-%05zu-of-%05zu.safetensors", i + 1, n);
      safetensors::save(join(out_dir, file), shards[i], meta);
      for (const auto& [name, t] : shards[i]) weight_map[name] = file;
      written.insert(file);
    }
    nlohmann::json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    fs::atomic_write(join(out_dir, kIndex), index.dump(2) + "\n");
    written.insert(kIndex);
  }
  fs::atomic_write(join(out_dir, "config.json"), model_config_to_json(config).dump(2) + "\n");

  const std::string gen_src = options.generation_config_source.empty()
                                  ? std::string()
                                  : join(options.generation_config_source, "generation_config.json");
  if (!gen_src.empty() && fs::exists(gen_src)) {
    copy_file_atomic(gen_src, join(out_dir, "generation_config.json"));
  } else {
    nlohmann::json gen = {{"_from_model_config", true}};
    if (config.bos_token_id >= 0) gen["bos_token_id"] = config.bos_token_id;
    if (config.eos_token_ids.size() == 1) gen["eos_token_id"] = config.eos_token_ids[0];
    else if (!config.eos_token_ids.empty()) gen["eos_token_id"] = config.eos_token_ids;
    if (config.pad_token_id >= 0) gen["pad_token_id"] = config.pad_token_id;
    fs::atomic_write(join(out_dir, "generation_config.json"), gen.dump(2) + "\n");
  }

  if (!options.tokenizer_source.empty()) copy_tokenizer_files(options.tokenizer_source, out_dir, options.tokenizer_files);
}

}  // namespace

void copy_tokenizer_files(const std::string& src, const std::string& out_dir,
                          const std::map<std::string, std::string>& converted) {
  if (!converted.empty()) {
    // The tokenizer's own file is not one transformers reads: the converted files stand for it,
    // and the side files beside it (special tokens, chat template) are copied.
    for (const auto& [name, content] : converted) fs::atomic_write(join(out_dir, name), content);
    const std::string dir = fs::is_directory(src) ? src : stdfs::path(src).parent_path().string();
    for (const char* f : kTokenizerFiles) {
      const std::string name = f;
      if (name != "tokenizer.model" && name != "tokenizer.json" && !converted.count(name) && fs::exists(join(dir, f))) {
        copy_file_atomic(join(dir, f), join(out_dir, f));
      }
    }
    return;
  }
  if (fs::is_directory(src)) {
    int copied = 0;
    for (const char* f : kTokenizerFiles) {
      if (fs::exists(join(src, f))) {
        copy_file_atomic(join(src, f), join(out_dir, f));
        ++copied;
      }
    }
    if (copied == 0) log::warn("no tokenizer files (tokenizer.model, tokenizer.json, ...) in '", src, "'");
  } else if (fs::exists(src)) {
    const std::string base = stdfs::path(src).filename().string();
    bool known = false;
    for (const char* f : kTokenizerFiles) known = known || base == f;
    // A SentencePiece model under another name becomes tokenizer.model, the name HF looks for.
    copy_file_atomic(src, join(out_dir, known ? base : std::string("tokenizer.model")));
    // A tokenizer.json needs its side files (special tokens, chat template) to load the same way.
    if (base == "tokenizer.json") {
      const std::string dir = stdfs::path(src).parent_path().string();
      for (const char* f : kTokenizerFiles) {
        if (std::string(f) != base && std::string(f) != "tokenizer.model" && fs::exists(join(dir, f))) {
          copy_file_atomic(join(dir, f), join(out_dir, f));
        }
      }
    }
  } else {
    throw UserError("tokenizer path '" + src + "' does not exist");
  }
}

std::string first_non_finite_weight(const Transformer& model) {
  for (const auto& [name, t] : model.named_parameters()) {
    if (!at::isfinite(t).all().item<bool>()) return name;
  }
  return "";
}

void check_finite_weights(const Transformer& model, const std::string& what) {
  const std::string bad = first_non_finite_weight(model);
  if (!bad.empty()) {
    throw UserError("refusing to " + what + ": weight '" + bad +
                    "' holds NaN or infinite values, so the model is broken; use an earlier checkpoint, or "
                    "train again with a lower learning rate / gradient clipping");
  }
}

void export_hf_model(const Transformer& model, const std::string& out_dir, const ExportOptions& options) {
  // Inputs first: nothing is written unless every source is usable.
  if (!options.tokenizer_source.empty() && !fs::exists(options.tokenizer_source)) {
    throw UserError("tokenizer path '" + options.tokenizer_source + "' does not exist; pass an existing tokenizer "
                    "directory or file");
  }
  check_finite_weights(model, "export to '" + out_dir + "'");
  fs::StagedDirectory staged(out_dir);
  write_model_directory(model, staged.path(), options);
  kill_point("export");
  staged.commit();
}

}  // namespace scorch

// HuggingFace model directories in and out: config.json + model.safetensors (or shards +
// model.safetensors.index.json), generation_config.json and tokenizer files. Loading checks the
// tensors against the config: missing, unexpected or mis-shaped tensors are one UserError listing them.
#pragma once
#include <cstdint>
#include <optional>
#include <map>
#include <string>

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include "model/safetensors.h"
#include "model/transformer.h"

namespace scorch {

struct LoadOptions {
  std::optional<at::ScalarType> dtype;  // nullopt = the dtype stored in the files
  at::Device device = at::kCPU;
};

// Loads `dir` (any directory holding config.json + model.safetensors or an index with shards:
// a HF model or a scorch training checkpoint).
Transformer load_hf_model(const std::string& dir, const LoadOptions& options = {});
// Every tensor of `dir`'s weights (single file or shards listed by the index), on the CPU.
safetensors::TensorMap read_hf_weights(const std::string& dir);
// Puts `tensors` (HF names) into `model`, cast to the model's dtype and to `device` (default: the
// model's); `source` names them in errors. Throws UserError listing missing, unexpected and
// mis-shaped tensors (nothing is assigned then).
void assign_hf_weights(Transformer& model, const safetensors::TensorMap& tensors, const std::string& source,
                       std::optional<at::Device> device = std::nullopt);

struct ExportOptions {
  // Above this many bytes of weights, write model-0000i-of-0000N.safetensors + index (HF default 5 GB).
  int64_t max_shard_bytes = 5'000'000'000;
  // A tokenizer directory (copies tokenizer.model, tokenizer.json, tokenizer_config.json,
  // special_tokens_map.json, added_tokens.json that exist) or a single tokenizer file; "" = none.
  std::string tokenizer_source;
  // Written in place of the tokenizer's own file when transformers cannot read that file (a tiktoken
  // rank file as tokenizer.json: Tokenizer::hf_export_files); empty = copy the files as they are.
  std::map<std::string, std::string> tokenizer_files;
  // A directory whose generation_config.json is copied; "" or absent file = one generated from the config.
  std::string generation_config_source;
};

// Copies the tokenizer files of `src` (a directory: each of tokenizer.model, tokenizer.json,
// tokenizer_config.json, special_tokens_map.json, ... that exists; or one tokenizer file, with a
// tokenizer.json's side files beside it) into `out_dir`. UserError if `src` does not exist.
// `converted` (name -> content), when not empty, is written instead of the tokenizer's own file,
// and only the side files are copied.
void copy_tokenizer_files(const std::string& src, const std::string& out_dir,
                          const std::map<std::string, std::string>& converted = {});

// Writes a directory transformers loads with from_pretrained. The directory is built beside
// `out_dir` and swapped in whole (fs::StagedDirectory): a failing export leaves `out_dir` as it
// was, and a successful one replaces it entirely. Non-finite weights are a UserError (nothing written).
// Whether an existing non-empty `out_dir` may be replaced is the caller's decision (CLI: --force).
void export_hf_model(const Transformer& model, const std::string& out_dir, const ExportOptions& options = {});
// The HF name of the first weight holding NaN/Inf, "" when all are finite.
std::string first_non_finite_weight(const Transformer& model);
// UserError naming the first weight that holds NaN/Inf ("refusing to <what>: ...").
void check_finite_weights(const Transformer& model, const std::string& what);

// "float32" | "bfloat16" | "float16" <-> ScalarType (UserError for anything else).
at::ScalarType parse_model_dtype(const std::string& name);
std::string model_dtype_name(at::ScalarType dtype);

}  // namespace scorch

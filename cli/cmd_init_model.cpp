// `scorch init-model --config CONFIG.json --out DIR [--seed N] [--tokenizer PATH] [--dtype float32|bfloat16]`:
// a randomly initialised model (normal std = initializer_range, as transformers) written as a
// HuggingFace directory. Used by tests, benchmarks and the quickstart.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "common/error.h"
#include "common/log.h"
#include "model/hf_checkpoint.h"

namespace scorch::cli {
namespace {
struct InitModelArgs {
  std::string config;
  std::string out;
  uint64_t seed = 0;
  std::string tokenizer;
  std::string tiktoken_pattern;
  std::string dtype;
  bool force = false;
};

void run_init_model(const InitModelArgs& a) {
  check_output_directory(a.out, a.force);
  ModelConfig config = load_model_config(a.config);
  const at::ScalarType dtype = parse_model_dtype(a.dtype.empty() ? config.dtype : a.dtype);
  config.dtype = model_dtype_name(dtype);
  Transformer model(config, dtype, at::kCPU);
  model.init_weights(a.seed);
  ExportOptions options;
  options.tokenizer_source = a.tokenizer;
  options.tokenizer_files = tokenizer_export_files(a.tokenizer, a.tiktoken_pattern);
  export_hf_model(model, a.out, options);
  log::info("wrote ", config.model_type, " model (", model.num_parameters(), " parameters, ", config.dtype,
            ", seed ", a.seed, ") to ", a.out);
}
}  // namespace

void register_init_model(CLI::App& app) {
  auto args = std::make_shared<InitModelArgs>();
  auto* cmd = app.add_subcommand("init-model", "Write a randomly initialised HF model directory");
  cmd->add_option("--config", args->config, "A HuggingFace config.json (model_type llama, qwen2 or mistral)")->check(non_empty_path)->required();
  cmd->add_option("--out", args->out, "Output directory")->check(non_empty_path)->required();
  cmd->add_option("--seed", args->seed, "Initialisation seed (default 0)")->check(non_negative_number);
  cmd->add_option("--tokenizer", args->tokenizer, "Tokenizer directory or tokenizer.model to copy into the output")->check(non_empty_path);
  cmd->add_option("--tiktoken-pattern", args->tiktoken_pattern, kTiktokenPatternHelp);
  cmd->add_option("--dtype", args->dtype, "float32 | bfloat16 | float16 (default: the config's dtype, else float32)");
  cmd->add_flag("--force", args->force, "Replace a non-empty --out directory (e.g. a trained model)");
  cmd->callback([args] { run_init_model(*args); });
}

}  // namespace scorch::cli

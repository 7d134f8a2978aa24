// `scorch export --model DIR --out DIR [--tokenizer PATH] [--max-shard-bytes N]`: loads any
// directory holding config.json + safetensors (a HF model or a training checkpoint) and writes a
// HuggingFace directory transformers and vLLM load. Tokenizer files come from --tokenizer, else from
// the model directory when it has them.
#include <CLI/CLI.hpp>

#include <memory>

#include "cli/commands.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/log.h"
#include "model/hf_checkpoint.h"

namespace scorch::cli {
namespace {
struct ExportArgs {
  std::string model;
  std::string out;
  std::string tokenizer;
  int64_t max_shard_bytes = 5'000'000'000;
};

void run_export(const ExportArgs& a) {
  const Transformer model = load_hf_model(a.model);
  ExportOptions options;
  options.max_shard_bytes = a.max_shard_bytes;
  options.tokenizer_source = a.tokenizer.empty() ? a.model : a.tokenizer;
  options.generation_config_source = a.model;
  export_hf_model(model, a.out, options);
  log::info("exported ", a.model, " (", model.num_parameters(), " parameters, ", model_dtype_name(model.dtype()),
            ") to ", a.out);
}
}  // namespace

void register_export(CLI::App& app) {
  auto args = std::make_shared<ExportArgs>();
  auto* cmd = app.add_subcommand("export", "Export a checkpoint to a HuggingFace directory");
  cmd->add_option("--model", args->model, "Model or checkpoint directory (config.json + safetensors)")->required();
  cmd->add_option("--out", args->out, "Output directory")->required();
  cmd->add_option("--tokenizer", args->tokenizer, "Tokenizer directory or file to copy (default: the model directory's)");
  cmd->add_option("--max-shard-bytes", args->max_shard_bytes, "Shard the weights above this size (default 5e9)")
      ->check(CLI::PositiveNumber);
  cmd->callback([args] { run_export(*args); });
}

}  // namespace scorch::cli

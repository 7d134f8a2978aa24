// `scorch export --model DIR --out DIR [--tokenizer PATH] [--max-shard-bytes N]`: loads any
// directory holding config.json + safetensors (a HF model or a training checkpoint) and writes a
// HuggingFace directory transformers and vLLM load. Tokenizer files come from --tokenizer, else from
// the model directory when it has them; a tiktoken rank file is written as tokenizer.json (which
// transformers loads), with --tiktoken-pattern for one scorch does not recognise.
// `scorch export --model ADAPTER_DIR --merge [--base DIR] --out DIR`: a LoRA adapter in PEFT's
// format (a LoRA run's export/) merged into its base model (--base, else the adapter config's
// base_model_name_or_path): W + scaling · B A, written as a plain HF model directory.
#include <CLI/CLI.hpp>

#include <memory>

#include "cli/commands.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/log.h"
#include "model/hf_checkpoint.h"
#include "config/config.h"
#include "model/lora.h"

namespace scorch::cli {
namespace {
struct ExportArgs {
  std::string model;
  std::string out;
  std::string tokenizer;
  int64_t max_shard_bytes = 5'000'000'000;
  bool merge = false;
  std::string base;
  std::string tiktoken_pattern;
  bool force = false;
};

// The base model + adapter of `adapter_dir` merged into one model; `base_dir` receives the base used.
Transformer merged_adapter(const ExportArgs& a, std::string* base_dir) {
  std::string named_base;
  read_peft_adapter_config(a.model, &named_base);
  *base_dir = a.base.empty() ? named_base : a.base;
  if (base_dir->empty()) {
    throw UserError("adapter '" + a.model + "' does not name its base model: pass --base DIR (the model it was trained on)");
  }
  Transformer adapted = load_hf_model(*base_dir);
  load_peft_adapter(adapted, a.model);
  return merge_lora(adapted);
}

void run_export(const ExportArgs& a) {
  check_output_directory(a.out, a.force);
  if (!a.tokenizer.empty() && !fs::exists(a.tokenizer)) {
    throw UserError("--tokenizer '" + a.tokenizer + "' does not exist; pass a tokenizer directory or file");
  }
  const bool adapter = is_peft_adapter_dir(a.model);
  if (adapter && !a.merge) {
    throw UserError("'" + a.model + "' is a LoRA adapter (PEFT format, adapter_config.json): add --merge to write "
                    "base + adapter as one HF model, or load it with peft.PeftModel.from_pretrained");
  }
  if (!adapter && (a.merge || !a.base.empty())) {
    throw UserError("--merge / --base need a LoRA adapter directory (with adapter_config.json) as --model; '" +
                    a.model + "' has none");
  }
  std::string source = a.model;  // where the tokenizer and generation config come from
  const Transformer model = adapter ? merged_adapter(a, &source) : load_hf_model(a.model);
  ExportOptions options;
  options.max_shard_bytes = a.max_shard_bytes;
  options.tokenizer_source = a.tokenizer.empty() ? source : a.tokenizer;
  options.tokenizer_files = tokenizer_export_files(options.tokenizer_source, a.tiktoken_pattern);
  options.generation_config_source = source;
  export_hf_model(model, a.out, options);
  log::info("exported ", a.model, " (", model.num_parameters(), " parameters, ", model_dtype_name(model.dtype()),
            ") to ", a.out);
}
}  // namespace

void register_export(CLI::App& app) {
  auto args = std::make_shared<ExportArgs>();
  auto* cmd = app.add_subcommand("export", "Export a checkpoint to a HuggingFace directory");
  cmd->add_option("--model", args->model, "Model or checkpoint directory (config.json + safetensors)")->check(non_empty_path)->required();
  cmd->add_option("--out", args->out, "Output directory")->check(non_empty_path)->required();
  cmd->add_option("--tokenizer", args->tokenizer, "Tokenizer directory or file to copy (default: the model directory's)")->check(non_empty_path);
  cmd->add_option("--max-shard-bytes", args->max_shard_bytes, "Shard the weights above this size (default 5e9)")
      ->check(positive_number);
  cmd->add_flag("--merge", args->merge, "--model is a LoRA adapter (PEFT format): write base + scaled B A as one model");
  cmd->add_option("--tiktoken-pattern", args->tiktoken_pattern, kTiktokenPatternHelp);
  cmd->add_option("--base", args->base, "With --merge: the base model directory (default: the adapter's base_model_name_or_path)");
  cmd->add_flag("--force", args->force, "Replace a non-empty --out directory");
  cmd->callback([args] { run_export(*args); });
}

}  // namespace scorch::cli

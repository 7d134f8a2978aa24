#include "train/session.h"

#include <algorithm>

#include <ATen/Parallel.h>
#include <torch/cuda.h>

#include "common/error.h"
#include "common/fs.h"
#include "common/log.h"
#include "config/config.h"
#include "dist/dist.h"
#include "model/hf_checkpoint.h"
#include "model/hf_adapter.h"
#include "model/lora.h"
#include "model/transformer.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace scorch {

int64_t ModelSession::pad_id() const {
  return tokenizer->pad_id() >= 0 ? tokenizer->pad_id() : std::max<int64_t>(0, tokenizer->eos_id());
}

ModelSession::ModelSession() = default;
ModelSession::~ModelSession() = default;
ModelSession::ModelSession(ModelSession&&) noexcept = default;
ModelSession& ModelSession::operator=(ModelSession&&) noexcept = default;

c10::Device resolve_device(const std::string& device) {
  const bool cuda = torch::cuda::is_available();
  // One GPU per local rank under a distributed launch (LOCAL_RANK), GPU 0 otherwise.
  const auto gpu = static_cast<c10::DeviceIndex>(dist::local_rank());
  if (device == "auto") return cuda ? c10::Device(c10::kCUDA, gpu) : c10::Device(c10::kCPU);
  if (device == "cpu") return c10::kCPU;
  if (device == "cuda") {
    if (!cuda) throw UserError("model.device is `cuda` but no CUDA device is available; use `auto` or `cpu`");
    return c10::Device(c10::kCUDA, gpu);
  }
  throw UserError("unknown device '" + device + "': use auto, cpu or cuda");
}

c10::ScalarType resolve_dtype(const std::string& dtype, c10::Device device) {
  if (dtype == "auto") return device.is_cuda() ? c10::kBFloat16 : c10::kFloat;
  if (dtype == "float32") return c10::kFloat;
  if (dtype == "bfloat16") return c10::kBFloat16;
  throw UserError("unknown dtype '" + dtype + "': use auto, float32 or bfloat16");
}

std::string resolve_tokenizer_path(const Config& config) {
  return config.tokenizer.path.empty() ? config.model.path : config.tokenizer.path;
}

ModelSession open_model_session(const std::string& model_dir, const std::string& tokenizer_path,
                                const std::string& chat_template, const std::string& device,
                                const std::string& dtype, const TokenizerOptions& tokenizer_options) {
  // A LoRA adapter directory (a LoRA run's export/) stands for its base model plus the adapter.
  std::string base_dir = model_dir;
  const bool adapter = is_peft_adapter_dir(model_dir);
  if (adapter) {
    read_peft_adapter_config(model_dir, &base_dir);
    if (base_dir.empty() || !fs::exists(base_dir + "/config.json")) {
      throw UserError("LoRA adapter '" + model_dir + "' names base model '" + base_dir +
                      "', which is not a model directory: merge it with `scorch export --model " + model_dir +
                      " --merge --base BASE_DIR --out DIR` and use that");
    }
  }
  ModelSession s;
  s.device = resolve_device(device);
  s.dtype = resolve_dtype(dtype, s.device);
  s.tokenizer = load_tokenizer(tokenizer_path.empty() ? base_dir : tokenizer_path, tokenizer_options);
  s.tokenizer_path = s.tokenizer->source();
  s.renderer = std::make_unique<ChatRenderer>(*s.tokenizer, chat_template, tokenizer_options.chat_template_kwargs);
  LoadOptions load;
  load.dtype = s.dtype;
  load.device = s.device;
  s.model = std::make_unique<Transformer>(load_hf_model(base_dir, load));
  if (adapter) {
    load_peft_adapter(*s.model, model_dir);
    log::info("LoRA adapter ", model_dir, " on base ", base_dir);
  }
  if (s.tokenizer->vocab_size() > s.model->config().vocab_size) {
    throw UserError("tokenizer '" + s.tokenizer_path + "' has " + std::to_string(s.tokenizer->vocab_size()) +
                    " tokens but model '" + model_dir + "' has vocab_size " +
                    std::to_string(s.model->config().vocab_size) + ": use the model's own tokenizer");
  }
  log::info("model ", model_dir, ": ", s.model->num_parameters(), " parameters on ", s.device.str(), " (",
            c10::toString(s.dtype), "), tokenizer ", s.tokenizer_path, ", chat template ", s.renderer->name());
  return s;
}

ModelSession open_model_session(const std::string& model_dir, const std::string& tokenizer_path,
                                const std::string& chat_template, const std::string& device,
                                const std::string& dtype) {
  return open_model_session(model_dir, tokenizer_path, chat_template, device, dtype, TokenizerOptions{});
}

ModelSession open_model_session(const Config& config) {
  if (config.train.threads > 0) at::set_num_threads(static_cast<int>(config.train.threads));
  if (is_peft_adapter_dir(config.model.path)) {
    throw UserError("model.path '" + config.model.path + "' is a LoRA adapter directory: training starts from a model; "
                    "merge the adapter first (`scorch export --model " + config.model.path + " --merge --out DIR`) "
                    "and set model.path to DIR");
  }
  ModelSession s = open_model_session(config.model.path, resolve_tokenizer_path(config),
                                      config.tokenizer.chat_template, config.model.device, config.model.dtype,
                                      TokenizerOptions{config.tokenizer.parse_special, config.tokenizer.chat_template_kwargs,
                                                       config.tokenizer.tiktoken_pattern});
  if (config.lora.enabled) {
    add_lora(*s.model, config.lora, config.seed);
    int64_t adapter = 0;
    for (const auto& [name, t] : s.model->lora_parameters()) adapter += t.numel();
    std::string modules;
    for (Projection p : lora_targets(config.lora.target_modules)) modules += std::string(modules.empty() ? "" : ",") + projection_module_name(p);
    log::info("LoRA r=", config.lora.r, " alpha=", config.lora.lora_alpha, " on ", modules, ": ", adapter,
              " trainable parameters (base frozen)");
  }
  s.model->set_gradient_checkpointing(config.model.gradient_checkpointing);
  s.model->set_fused_training_ops(config.model.fused_training_ops);
  return s;
}

}  // namespace scorch

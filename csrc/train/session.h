// What every trainer and the eval command load first, from the config: the device and dtype
// decisions, the policy model, its tokenizer and chat template. One place, so SFT, DPO, GRPO and
// SCoRe resolve "auto" the same way.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

namespace scorch {

struct Config;
class Transformer;
class Tokenizer;
struct TokenizerOptions;
class ChatRenderer;

// "auto" -> cuda when available, else cpu. "cuda" without a GPU is a UserError.
c10::Device resolve_device(const std::string& device);
// "auto" -> bfloat16 on CUDA, float32 on CPU (CPU runs are fp32: bf16 matmuls there are slow and
// make exact-resume tests meaningless).
c10::ScalarType resolve_dtype(const std::string& dtype, c10::Device device);
// The tokenizer path: tokenizer.path if set, else model.path (load_tokenizer picks tokenizer.json,
// else tokenizer.model, from a directory).
std::string resolve_tokenizer_path(const Config& config);

struct ModelSession {
  std::unique_ptr<Transformer> model;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<ChatRenderer> renderer;
  c10::Device device = c10::kCPU;
  c10::ScalarType dtype = c10::kFloat;
  std::string tokenizer_path;  // the file loaded (tokenizer.json or tokenizer.model)
  // The token that pads batches: the tokenizer's pad id, else its EOS, else 0 (padding is always
  // masked out of losses; this only needs to be a valid id).
  int64_t pad_id() const;
  ModelSession();
  ~ModelSession();
  ModelSession(ModelSession&&) noexcept;
  ModelSession& operator=(ModelSession&&) noexcept;
};

// Loads model.path (HF directory) onto the resolved device/dtype, the tokenizer and the chat
// template; applies train.threads; gives the model its LoRA adapter when lora.enabled (the base
// frozen, model/lora.h). Checks that the tokenizer's vocabulary fits the model's.
ModelSession open_model_session(const Config& config);
// Same from explicit arguments (used by `scorch eval` / `generate`). `model_dir` may be a LoRA
// adapter directory (PEFT format): its base model (adapter_config.json) with the adapter.
ModelSession open_model_session(const std::string& model_dir, const std::string& tokenizer_path,
                                const std::string& chat_template, const std::string& device = "auto",
                                const std::string& dtype = "auto");
ModelSession open_model_session(const std::string& model_dir, const std::string& tokenizer_path,
                                const std::string& chat_template, const std::string& device,
                                const std::string& dtype, const TokenizerOptions& tokenizer_options);

}  // namespace scorch

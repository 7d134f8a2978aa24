// scorch_model_forward: runs scorch's forward from outside, for the transformers parity test
// (tests/python/test_model_parity.py) and the forward benchmark (tools/bench/model_forward).
//
//   scorch_model_forward logits --model DIR --input IN.safetensors --output OUT.safetensors
//       IN holds "input_ids<suffix>" [B, T] I64 for one or more suffixes (and optionally
//       "positions<suffix>" [B, T] I64, default 0..T-1); OUT gets "logits<suffix>" [B, T, V] and
//       "hidden<suffix>" [B, T, hidden] in F32. The model is loaded in fp32. --adapter DIR adds a
//       LoRA adapter in PEFT's format (the PEFT parity test, tests/python/test_lora_peft.py).
//   scorch_model_forward bench --model DIR [--batch 1,8,32] [--seq 128] [--iters 5] [--threads N]
//       prints one line per batch size: "batch=B seq=T tokens_per_s=X ms_per_forward=Y"
//       (forward + LM head, inference mode, random token ids).
// Exit codes as the scorch CLI: 2 for bad input (UserError), 1 otherwise.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/strings.h"
#include "model/hf_checkpoint.h"
#include "model/lora.h"
#include "model/safetensors.h"

namespace {

std::string arg(int argc, char** argv, const char* name, const std::string& fallback = "") {
  for (int i = 2; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], name) == 0) return argv[i + 1];
  }
  if (fallback.empty()) throw scorch::UserError(std::string("missing ") + name);
  return fallback;
}

int run_logits(int argc, char** argv) {
  scorch::Transformer model = scorch::load_hf_model(arg(argc, argv, "--model"), {at::kFloat, at::kCPU});
  const std::string adapter = arg(argc, argv, "--adapter", "-");
  if (adapter != "-") scorch::load_peft_adapter(model, adapter);
  const auto inputs = scorch::safetensors::load(arg(argc, argv, "--input"));
  scorch::safetensors::TensorMap outputs;
  c10::InferenceMode guard;
  // Every "input_ids<suffix>" is one batch; its results are "logits<suffix>" and "hidden<suffix>".
  for (const auto& [name, tensor] : inputs) {
    if (name.rfind("input_ids", 0) != 0) continue;
    const std::string suffix = name.substr(9);
    const at::Tensor ids = tensor.to(at::kLong);
    if (ids.dim() != 2) throw scorch::UserError("'" + name + "' must be [B, T]");
    const auto pos_it = inputs.find("positions" + suffix);
    const at::Tensor positions = pos_it != inputs.end()
                                     ? pos_it->second.to(at::kLong)
                                     : at::arange(ids.size(1), at::kLong).unsqueeze(0).expand_as(ids).contiguous();
    const at::Tensor hidden = model.forward(ids, positions);
    outputs["logits" + suffix] = model.logits(hidden).to(at::kFloat);
    outputs["hidden" + suffix] = hidden.to(at::kFloat);
  }
  if (outputs.empty()) throw scorch::UserError("input file has no 'input_ids' tensor");
  scorch::safetensors::save(arg(argc, argv, "--output"), outputs);
  return 0;
}

int run_bench(int argc, char** argv) {
  const int threads = std::stoi(arg(argc, argv, "--threads", "0"));
  if (threads > 0) at::set_num_threads(threads);
  const scorch::Transformer model = scorch::load_hf_model(arg(argc, argv, "--model"), {at::kFloat, at::kCPU});
  const int64_t seq = std::stoll(arg(argc, argv, "--seq", "128"));
  const int iters = std::stoi(arg(argc, argv, "--iters", "5"));
  c10::InferenceMode guard;
  for (const auto& b : scorch::split(arg(argc, argv, "--batch", "1,8,32"), ',')) {
    const int64_t batch = std::stoll(b);
    at::manual_seed(0);
    const at::Tensor ids = at::randint(model.config().vocab_size, {batch, seq}, at::kLong);
    const at::Tensor pos = at::arange(seq, at::kLong).unsqueeze(0).expand({batch, seq}).contiguous();
    model.logits(model.forward(ids, pos));  // warm-up
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; ++i) model.logits(model.forward(ids, pos));
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / iters;
    std::printf("batch=%lld seq=%lld tokens_per_s=%.1f ms_per_forward=%.2f threads=%d\n", (long long)batch,
                (long long)seq, batch * seq / s, s * 1e3, at::get_num_threads());
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string mode = argc > 1 ? argv[1] : "";
    if (mode == "logits") return run_logits(argc, argv);
    if (mode == "bench") return run_bench(argc, argv);
    std::fprintf(stderr, "usage: scorch_model_forward logits|bench --model DIR ... (see the file's header)\n");
    return scorch::kExitUser;
  } catch (const scorch::UserError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return scorch::kExitUser;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "internal error: %s\n", e.what());
    return scorch::kExitInternal;
  }
}

// The training pre-flight: what a run still has to allocate once its model (and any reference
// model) is loaded — gradients, AdamW state and the activations autograd keeps for one micro-batch
// — estimated from the model's shapes and checked against the memory free on its device before
// step 1. A run that cannot fit stops with exit 2, the bytes of each part, and the settings to
// change, instead of an out-of-memory error (or the kernel's OOM killer) hours in.
//
// Activations, elements kept per token per decoder layer in the backward (model dtype):
//   a = 4·H + 2·q_dim + 2·kv_dim + 3·I
// (two norms' inputs and outputs 4·H; the rotated q, k and v: q_dim + 2·kv_dim; the attention output
// q_dim; the MLP's gate, up and act(gate)·up 3·I -- what the fused layer ops keep
// (model.fused_training_ops: RoPE keeps only its tables, SiLU * up its two inputs; the eager ops
// keep more, so the count stays a lower bound for them)) plus 2·H per token outside the layers
// (the final norm's input and output). With
// model.gradient_checkpointing a layer keeps only its input H and one layer is recomputed at a
// time: L·H + a per token instead of L·a. Attention scores are not counted (fused attention keeps
// none), nor the chunked LM head's one chunk, so for a given micro-batch shape the estimate is a
// lower bound: a shape it refuses cannot fit, one it passes may still be tight. The shape is the
// largest a task can meet: SFT/DPO rows as long as the longest example, RL rows as long as
// generation.max_prompt_length + max_completion_length (rollouts can reach it, and a run that
// would only fail once its completions grow is refused up front).
#pragma once
#include <cstdint>
#include <map>
#include <string>

namespace at {
class Tensor;
}

namespace scorch {

struct ModelConfig;

// The largest micro-batch a task runs through forward + backward (padded rows × tokens).
struct MicroBatchShape {
  int64_t rows = 0;
  int64_t tokens = 0;
  std::string length_setting;  // the config key(s) that bound `tokens`, for the message
  bool known() const { return rows > 0 && tokens > 0; }
};

struct TrainingMemory {
  double gradients = 0;    // one gradient per trainable element, in its dtype
  double optimizer = 0;    // AdamW: fp32 exp_avg + exp_avg_sq (+ an fp32 master of a bf16/fp16 weight)
  double activations = 0;  // one micro-batch's saved activations (0 when its shape is unknown)
  double total() const { return gradients + optimizer + activations; }
};

// `trainable`: the tensors the optimizer steps (every weight, or a LoRA adapter); activations are
// `activation_element_size` bytes each (the model's dtype). `optimizer_shards`:
// ZeRO-1's world size (each rank keeps 1/N of the optimizer state), else 1.
TrainingMemory estimate_training_memory(const ModelConfig& config, const std::map<std::string, at::Tensor>& trainable,
                                        int64_t activation_element_size, bool gradient_checkpointing,
                                        const MicroBatchShape& micro_batch, int64_t optimizer_shards = 1);

// Activation elements per token for one forward + backward (the formula above).
double activation_elements_per_token(const ModelConfig& config, bool gradient_checkpointing);

// "gradients 1.2 GiB + AdamW state 2.4 GiB + activations 3 GiB (a micro-batch of 8 rows × 512 tokens)".
std::string describe(const TrainingMemory& memory, const MicroBatchShape& micro_batch);

}  // namespace scorch

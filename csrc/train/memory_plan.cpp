#include "train/memory_plan.h"

#include <ATen/ATen.h>

#include "common/memory.h"
#include "model/model_config.h"

namespace scorch {

double activation_elements_per_token(const ModelConfig& c, bool gradient_checkpointing) {
  const double H = static_cast<double>(c.hidden_size), I = static_cast<double>(c.intermediate_size);
  const double L = static_cast<double>(c.num_hidden_layers);
  const double per_layer = 4 * H + 2.0 * c.q_dim() + 2.0 * c.kv_dim() + 3 * I;
  const double layers = gradient_checkpointing ? L * H + per_layer : L * per_layer;
  return layers + 2 * H;
}

TrainingMemory estimate_training_memory(const ModelConfig& config, const std::map<std::string, at::Tensor>& trainable,
                                        int64_t activation_element_size, bool gradient_checkpointing,
                                        const MicroBatchShape& micro_batch, int64_t optimizer_shards) {
  TrainingMemory m;
  for (const auto& [name, t] : trainable) {
    const double n = static_cast<double>(t.numel());
    m.gradients += n * static_cast<double>(t.element_size());
    const bool master = t.scalar_type() == at::kBFloat16 || t.scalar_type() == at::kHalf;
    m.optimizer += n * (8.0 + (master ? 4.0 : 0.0));
  }
  if (optimizer_shards > 1) m.optimizer /= static_cast<double>(optimizer_shards);
  if (micro_batch.known()) {
    m.activations = static_cast<double>(micro_batch.rows) * static_cast<double>(micro_batch.tokens) *
                    activation_elements_per_token(config, gradient_checkpointing) *
                    static_cast<double>(activation_element_size);
  }
  return m;
}

std::string describe(const TrainingMemory& m, const MicroBatchShape& mb) {
  std::string s = "gradients " + format_bytes(m.gradients) + " + AdamW state " + format_bytes(m.optimizer);
  if (mb.known()) {
    s += " + activations " + format_bytes(m.activations) + " (a micro-batch of " + std::to_string(mb.rows) +
         " rows × " + std::to_string(mb.tokens) + " tokens)";
  }
  return s;
}

}  // namespace scorch

// The training pre-flight's estimate (train/memory_plan.h): gradients and AdamW state against a
// hand count, and the activation formula against what autograd really keeps for a micro-batch
// (heap bytes in use with the graph alive): never above it, and not far below.
#include <gtest/gtest.h>
#include <malloc.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "model/model_config.h"
#include "model/transformer.h"
#include "tests/model/model_test_util.h"
#include "train/memory_plan.h"

namespace {
using namespace scorch;

ModelConfig config_of(int64_t hidden, int64_t intermediate, int64_t layers, int64_t heads, int64_t kv_heads) {
  nlohmann::json j = {{"model_type", "llama"}, {"vocab_size", 97}, {"hidden_size", hidden},
                      {"intermediate_size", intermediate}, {"num_hidden_layers", layers},
                      {"num_attention_heads", heads}, {"num_key_value_heads", kv_heads}, {"rms_norm_eps", 1e-5},
                      {"rope_theta", 10000.0}, {"tie_word_embeddings", false}, {"bos_token_id", 1}, {"eos_token_id", 2}};
  return model_config_from_json(j, "memory_plan_test");
}

TEST(MemoryPlan, GradientsAndAdamWStateAreCountedPerTrainableTensor) {
  const ModelConfig c = config_of(64, 160, 3, 4, 2);
  std::map<std::string, at::Tensor> trainable = {
      {"a", at::zeros({10, 7}, at::kFloat)}, {"b", at::zeros({5}, at::kBFloat16)}, {"c", at::zeros({3, 3}, at::kDouble)}};
  TrainingMemory m = estimate_training_memory(c, trainable, 4, false, {});
  EXPECT_DOUBLE_EQ(m.gradients, 70 * 4 + 5 * 2 + 9 * 8);
  EXPECT_DOUBLE_EQ(m.optimizer, 70 * 8 + 5 * (8 + 4) + 9 * 8);  // fp32 moments, + an fp32 master for bf16
  EXPECT_DOUBLE_EQ(m.activations, 0) << "an unknown micro-batch shape counts no activations";
  EXPECT_DOUBLE_EQ(estimate_training_memory(c, trainable, 4, false, {}, 4).optimizer, m.optimizer / 4) << "ZeRO-1";

  // Activations: rows × tokens × (L·a + 2H) elements, a = 4H + 2·q_dim + 2·kv_dim + 3I (head_dim 16).
  MicroBatchShape shape{3, 50, ""};
  m = estimate_training_memory(c, trainable, 2, false, shape);
  const double a = 4 * 64 + 2 * 64 + 2 * 32 + 3 * 160;
  EXPECT_DOUBLE_EQ(m.activations, 3.0 * 50 * (3 * a + 2 * 64) * 2);
  m = estimate_training_memory(c, trainable, 2, true, shape);
  EXPECT_DOUBLE_EQ(m.activations, 3.0 * 50 * (3 * 64 + a + 2 * 64) * 2) << "checkpointing keeps layer inputs";
  EXPECT_DOUBLE_EQ(m.total(), m.gradients + m.optimizer + m.activations);
  const std::string text = describe(m, shape);
  EXPECT_NE(text.find("3 rows × 50 tokens"), std::string::npos) << text;
}

size_t heap_in_use() {
  const struct mallinfo2 info = mallinfo2();
  return info.uordblks + info.hblkhd;
}

// Bytes autograd keeps for one forward (graph alive, before backward) of a B×T micro-batch.
double measured_activation_bytes(const Transformer& model, int64_t rows, int64_t tokens) {
  at::manual_seed(3);
  const at::Tensor ids = at::randint(3, model.config().vocab_size, {rows, tokens}, at::kLong);
  const at::Tensor positions = test::arange_positions(rows, tokens);
  const size_t before = heap_in_use();
  at::Tensor hidden = model.forward(ids, positions, {});
  auto [logp, entropy] = model.token_logprobs(hidden, ids);
  const at::Tensor loss = -logp.sum();
  hidden.reset();
  const size_t after = heap_in_use();
  return static_cast<double>(after) - static_cast<double>(before);
}

// Without checkpointing the whole graph is alive after the forward: the estimate is at most what it
// holds (with the fused layer ops, and more so with the eager ones), and not less than a third of it. With checkpointing the forward keeps each layer's input
// (the estimate minus one layer's recomputation, which lives only during the backward), and the
// whole estimate stays below the uncheckpointed graph.
TEST(MemoryPlan, ActivationEstimateIsALowerBoundOfWhatAutogradKeeps) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "ASan's allocator does not report through mallinfo2";
#endif
  at::set_num_threads(1);
  const ModelConfig c = config_of(128, 352, 3, 8, 2);
  Transformer model = test::random_model(c, 5);
  const auto params = model.trainable_parameters();
  for (const auto& [name, p] : params) p.requires_grad_(true);
  const int64_t rows = 4, tokens = 256;
  const MicroBatchShape shape{rows, tokens, ""};
  const double full = estimate_training_memory(c, params, 4, false, shape).activations;
  const double full_measured = measured_activation_bytes(model, rows, tokens);
  std::printf("no checkpointing: estimate %.0f bytes, graph %.0f bytes (ratio %.2f)\n", full, full_measured,
              full_measured / full);
  EXPECT_LE(full, full_measured);
  EXPECT_GE(full, full_measured / 3);
  // The eager layer ops (model.fused_training_ops: false) keep more: still a lower bound.
  model.set_fused_training_ops(false);
  const double eager_measured = measured_activation_bytes(model, rows, tokens);
  std::printf("eager layer ops: graph %.0f bytes (ratio %.2f)\n", eager_measured, eager_measured / full);
  EXPECT_LE(full, eager_measured);
  model.set_fused_training_ops(true);

  model.set_gradient_checkpointing(true);
  const double checkpointed = estimate_training_memory(c, params, 4, true, shape).activations;
  const double one_layer = rows * tokens * (4 * 128 + 2 * 128 + 2 * 32 + 3 * 352) * 4.0;
  const double kept_measured = measured_activation_bytes(model, rows, tokens);
  std::printf("checkpointing: estimate %.0f bytes (%.0f kept through the forward), graph %.0f bytes (ratio %.2f)\n",
              checkpointed, checkpointed - one_layer, kept_measured, kept_measured / (checkpointed - one_layer));
  EXPECT_LE(checkpointed - one_layer, kept_measured);
  EXPECT_GE(checkpointed - one_layer, kept_measured / 3);
  EXPECT_LT(checkpointed, full_measured);
}

}  // namespace

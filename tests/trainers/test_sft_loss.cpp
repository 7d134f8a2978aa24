// The SFT loss through the trainer's own task: the gradient of one optimizer step does not depend
// on how the step is split into micro-batches (the loss is normalised by the target tokens of the
// whole step), and packed rows give the same loss and gradient as padded ones.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include "config/config.h"
#include "data/batch.h"
#include "data/dataset.h"
#include "data/sft_example.h"
#include "model/model_config.h"
#include "model/transformer.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "trainers/sft/sft_task.h"

using namespace scorch;

namespace {
ModelSession tiny_session() {
  ModelSession s;
  nlohmann::json j = {{"model_type", "llama"}, {"vocab_size", 512}, {"hidden_size", 32},
                      {"intermediate_size", 48}, {"num_hidden_layers", 2}, {"num_attention_heads", 4},
                      {"num_key_value_heads", 2}, {"max_position_embeddings", 256}, {"rope_theta", 10000.0},
                      {"rms_norm_eps", 1e-6}, {"tie_word_embeddings", true}, {"bos_token_id", 1}, {"eos_token_id", 2}};
  s.model = std::make_unique<Transformer>(model_config_from_json(j), at::kFloat);
  s.model->init_weights(7);
  s.tokenizer = load_tokenizer(std::string(SCORCH_SOURCE_DIR) + "/configs/quickstart/tokenizer.model");
  s.renderer = std::make_unique<ChatRenderer>(*s.tokenizer, "plain");
  return s;
}

std::vector<data::SftExample> examples(const ChatRenderer& renderer, int n) {
  std::vector<data::SftExample> out;
  for (int i = 0; i < n; ++i) {
    data::SftRecord r;
    r.line = i + 1;
    const std::string a = std::to_string(17 * i + 3), b = std::to_string(5 * i * i + 11);
    r.messages = {{"user", "Compute " + a + "+" + b + "."},
                  {"assistant", std::string(i % 3, ' ') + "The answer is \\boxed{" + std::to_string(17 * i + 3 + 5 * i * i + 11) + "}."}};
    out.push_back(data::tokenize_sft(r, renderer, 128, data::Truncation::Error, "test"));
  }
  return out;
}

std::map<std::string, at::Tensor> step_gradient(ModelSession& s, int64_t micro, int64_t accumulation, bool packing = false) {
  Config c;
  c.seed = 3;
  c.data.shuffle = false;
  c.data.packing = packing;
  c.data.max_length = 128;
  c.train.micro_batch_size = micro;
  c.train.gradient_accumulation_steps = accumulation;
  c.train.max_steps = 1;
  trainers::SftTask task(c, s, examples(*s.renderer, 8), {}, {});
  s.model->set_requires_grad(true);
  for (auto& [name, p] : s.model->named_parameters()) p.mutable_grad() = at::Tensor();
  StepMetrics m;
  const auto units = task.prepare_step(1, m);
  double denominator = 0;
  for (auto u : units) denominator += static_cast<double>(u);
  for (size_t i = 0; i < units.size(); ++i) task.forward_backward(i, denominator, m);
  std::map<std::string, at::Tensor> grads;
  for (auto& [name, p] : s.model->named_parameters()) grads[name] = p.grad().clone();
  return grads;
}

double max_relative_error(const std::map<std::string, at::Tensor>& a, const std::map<std::string, at::Tensor>& b) {
  double worst = 0;
  for (auto& [name, g] : a) {
    const double scale = g.abs().max().item<double>() + 1e-30;
    worst = std::max(worst, (g - b.at(name)).abs().max().item<double>() / scale);
  }
  return worst;
}
}  // namespace

TEST(SftLoss, GradientDoesNotDependOnMicroBatchSplit) {
  ModelSession s = tiny_session();
  const auto whole = step_gradient(s, 8, 1);
  double norm = 0;
  for (auto& [n, g] : whole) norm += g.pow(2).sum().item<double>();
  ASSERT_GT(norm, 0.0);
  for (auto [micro, accum] : std::vector<std::pair<int, int>>{{4, 2}, {2, 4}, {1, 8}}) {
    EXPECT_LT(max_relative_error(whole, step_gradient(s, micro, accum)), 2e-5) << micro << "x" << accum;
  }
}

TEST(SftLoss, PackedRowsGiveTheSameLossAndGradientAsPadded) {
  ModelSession s = tiny_session();
  EXPECT_LT(max_relative_error(step_gradient(s, 8, 1, false), step_gradient(s, 8, 1, true)), 1e-4);
  auto ex = examples(*s.renderer, 6);
  std::vector<const data::SftExample*> ptrs;
  for (auto& e : ex) ptrs.push_back(&e);
  at::NoGradGuard no_grad;
  const auto padded = data::pad_batch(ptrs, 3);
  const auto packed = data::pack_batch(ptrs, 128, 3);
  ASSERT_LT(packed.rows, padded.rows) << "nothing was packed";
  const double a = trainers::nll_sum(*s.model, trainers::to_device(padded, false, at::kCPU)).item<double>();
  const double b = trainers::nll_sum(*s.model, trainers::to_device(packed, true, at::kCPU)).item<double>();
  EXPECT_NEAR(a, b, 1e-5 * std::abs(a));
  // Independent expectation: the loss of each sample computed alone.
  double alone = 0;
  for (auto* e : ptrs) alone += trainers::nll_sum(*s.model, trainers::to_device(data::pad_batch({e}, 3), false, at::kCPU)).item<double>();
  EXPECT_NEAR(a, alone, 1e-5 * std::abs(a));
}

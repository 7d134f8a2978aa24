// self_verify through the model-backed judge, on a tiny model whose Yes/No logits are fixed by
// construction: every layer's output projections are zero (the residual stream is the embedding),
// every embedding row is the all-ones vector (RMSNorm keeps it), and the LM head rows of "Yes" /
// "No" are a/H and b/H times ones, every other row zero. So the next-token logits are exactly
// a·k for Yes, b·k for No and 0 elsewhere (k = 1/sqrt(1 + eps)), and p(Yes)/(p(Yes)+p(No)) is
// known in closed form whatever the prompt.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <cmath>

#include "config/config.h"
#include "model/model_config.h"
#include "model/transformer.h"
#include "rewards/model_judge.h"
#include "rewards/reward.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

using namespace scorch;

TEST(ModelJudge, SelfVerifyGivesTheConstructedYesProbability) {
  auto tokenizer = load_tokenizer(std::string(SCORCH_SOURCE_DIR) + "/configs/quickstart/tokenizer.model");
  ChatRenderer renderer(*tokenizer, "plain");
  const double eps = 1e-6;
  nlohmann::json j = {{"model_type", "llama"}, {"vocab_size", 512}, {"hidden_size", 16}, {"intermediate_size", 32},
                      {"num_hidden_layers", 2}, {"num_attention_heads", 2}, {"num_key_value_heads", 1},
                      {"max_position_embeddings", 512}, {"rms_norm_eps", eps}, {"rope_theta", 10000.0}, {"tie_word_embeddings", false},
                      {"bos_token_id", 1}, {"eos_token_id", 2}};
  Transformer model(model_config_from_json(j), at::kFloat);
  model.init_weights(1);
  at::NoGradGuard no_grad;
  for (auto& layer : model.layers_) {
    layer.o_weight.zero_();
    layer.down_weight.zero_();
  }
  model.embed_tokens_.fill_(1.0);
  model.lm_head_.zero_();
  const double a = 1.5, b = -0.5, H = 16;
  for (const char* yes : {"Yes", " Yes"}) model.lm_head_[tokenizer->encode(yes).at(0)].fill_(a / H);
  for (const char* no : {"No", " No"}) model.lm_head_[tokenizer->encode(no).at(0)].fill_(b / H);

  auto judge = std::make_shared<rewards::ModelJudge>(model, renderer);
  rewards::RewardContext context;
  context.judge = judge;
  RewardSpec spec;
  spec.name = "self_verify";
  rewards::RewardSet set({spec}, context, "test");
  rewards::RewardBatch batch;
  for (int i = 0; i < 3; ++i) {
    rewards::RewardSample s;
    s.prompt = "Compute " + std::to_string(10 + i) + "+5.";
    s.completion = "The answer is \\boxed{" + std::to_string(15 + i * i) + "}.";
    s.group = i;
    batch.samples.push_back(s);
  }
  batch.index_groups();
  const auto out = set.score(batch);
  const double k = 1.0 / std::sqrt(1.0 + eps);
  const double expected = std::exp(a * k) / (std::exp(a * k) + std::exp(b * k));
  ASSERT_EQ(out.total.size(), 3u);
  for (double v : out.total) EXPECT_NEAR(v, expected, 1e-5);

  // The raw next-token log-probs: Yes/No/others from the same closed form.
  const auto prompt = judge->render_chat({{"user", "Is 2+2=4? Answer Yes or No."}});
  const auto logp = judge->next_token_logprobs({prompt}, {tokenizer->encode("Yes")[0], 7});
  const double z = 2 * std::exp(a * k) + 2 * std::exp(b * k) + (512 - 4);
  EXPECT_NEAR(logp[0][0], a * k - std::log(z), 1e-5);
  EXPECT_NEAR(logp[0][1], -std::log(z), 1e-5);
}

// Sampled evaluation (scorch eval --samples K): mean@K, pass@K and maj@K recomputed by naive
// counting from the very samples the evaluation drew (kept in the report), on a tiny random model
// whose byte-level outputs contain numbers; gold answers are set from some of those samples so
// the metrics are neither 0 nor 1.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <map>

#include "common/error.h"
#include "config/config.h"
#include "data/dataset.h"
#include "rewards/math_answer.h"
#include "tests/rollout/rollout_fixtures.h"
#include "tokenizer/chat_template.h"
#include "trainers/common/evaluation.h"

namespace scorch {
namespace {

using test::ByteTokenizer;
using test::tiny_model;

std::vector<data::PromptRecord> problems(int64_t n, const std::vector<std::string>& golds) {
  std::vector<data::PromptRecord> out;
  for (int64_t i = 0; i < n; ++i) {
    data::PromptRecord r;
    r.prompt_text = "Compute " + std::to_string(i) + "+" + std::to_string(2 * i) + ".";
    r.prompt = {ChatMessage{"user", r.prompt_text}};
    r.answer = golds.at(static_cast<size_t>(i));
    out.push_back(r);
  }
  return out;
}

TEST(EvalSamples, MeanPassAndMajorityAtKEqualNaiveCountsOverTheDrawnSamples) {
  const Transformer model = tiny_model(257, 13, /*context=*/128);
  const ByteTokenizer tok;
  const ChatRenderer chat(tok, "none");
  const int64_t n = 12, K = 6;
  EvalOptions o;
  o.samples = K;
  o.temperature = 1.0;
  o.seed = 99;
  o.max_new_tokens = 16;
  o.batch_size = 5;  // several generation batches
  o.keep_samples = n * K;
  // Pass 1 with unreachable golds: the samples (the same in pass 2: same seed, same batches).
  const EvalReport first = evaluate_accuracy(model, chat, problems(n, std::vector<std::string>(n, "-98765")), o);
  ASSERT_EQ(first.samples.size(), static_cast<size_t>(n * K));
  EXPECT_EQ(first.accuracy, 0.0);
  std::vector<std::vector<std::string>> answers(n);  // extracted answers, "" = none
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t k = 0; k < K; ++k) {
      const auto& s = first.samples[static_cast<size_t>(i * K + k)];
      ASSERT_EQ(s["sample_index"].get<int64_t>(), k);
      const auto e = rewards::math::extract_answer(s["attempt1"].get<std::string>());
      answers[i].push_back(e.ok() ? e.answer : "");
    }
  }
  // Golds: even problems take the answer of their last sample that has one; odd ones stay unreachable.
  std::vector<std::string> golds(n, "-98765");
  int64_t with_gold = 0;
  for (int64_t i = 0; i < n; i += 2) {
    for (int64_t k = K - 1; k >= 0; --k) {
      if (!answers[i][k].empty()) {
        golds[i] = answers[i][k];
        ++with_gold;
        break;
      }
    }
  }
  ASSERT_GE(with_gold, 3) << "the tiny model should print numbers in most groups of samples";

  const EvalReport r = evaluate_accuracy(model, chat, problems(n, golds), o);
  ASSERT_EQ(r.samples.size(), static_cast<size_t>(n * K));
  double right = 0, pass = 0, maj = 0;
  for (int64_t i = 0; i < n; ++i) {
    bool any = false;
    std::map<std::string, int> count;
    std::vector<std::string> order;
    for (int64_t k = 0; k < K; ++k) {
      const auto& s = r.samples[static_cast<size_t>(i * K + k)];
      EXPECT_EQ(s["attempt1"], first.samples[static_cast<size_t>(i * K + k)]["attempt1"]) << "same seed, same samples";
      const bool ok = answers[i][k] == golds[i];  // these answers are plain integers: string equality
      EXPECT_EQ(s["correct1"].get<bool>(), ok) << answers[i][k] << " vs " << golds[i];
      right += ok;
      any = any || ok;
      if (answers[i][k].empty()) continue;
      if (count[answers[i][k]]++ == 0) order.push_back(answers[i][k]);
    }
    pass += any;
    std::string best;
    for (const auto& a : order)  // the largest cluster; ties to the one sampled first
      if (best.empty() || count[a] > count[best]) best = a;
    maj += !best.empty() && best == golds[i];
  }
  EXPECT_DOUBLE_EQ(r.accuracy, right / (n * K));
  EXPECT_DOUBLE_EQ(r.pass_at_k, pass / n);
  EXPECT_DOUBLE_EQ(r.maj_at_k, maj / n);
  EXPECT_GT(r.accuracy, 0.0);
  EXPECT_LT(r.pass_at_k, 1.0);  // odd problems are unreachable
  EXPECT_GE(r.pass_at_k, with_gold / static_cast<double>(n));
  const auto j = r.to_json();
  EXPECT_EQ(j["samples"], K);
  EXPECT_DOUBLE_EQ(j["maj_at_k"].get<double>(), maj / n);
}

// The trainers' periodic evaluation with train.eval_samples: the greedy accuracy plus mean@K,
// pass@K and maj@K at generation.temperature with the config's seed — the same numbers
// evaluate_accuracy gives for those options (golds taken from one draw, so they are not all 0).
TEST(EvalSamples, TrainerEvalMetricsUseTheConfigsTemperatureSeedAndLength) {
  const Transformer model = tiny_model(257, 13, /*context=*/128);
  const ByteTokenizer tok;
  const ChatRenderer chat(tok, "none");
  Config c;
  c.seed = 1234;
  c.train.eval_samples = 5;
  c.generation.temperature = 0.9;
  c.generation.eval_max_new_tokens = 14;
  const int64_t n = 10;
  EvalOptions o;
  o.samples = 5;
  o.temperature = 0.9;
  o.seed = 1234;
  o.max_new_tokens = 14;
  o.keep_samples = n * 5;
  const EvalReport draw = evaluate_accuracy(model, chat, problems(n, std::vector<std::string>(n, "-98765")), o);
  std::vector<std::string> golds(n, "-98765");
  for (int64_t i = 0; i < n; ++i) {
    const auto e = rewards::math::extract_answer(draw.samples[static_cast<size_t>(i * 5 + 1)]["attempt1"].get<std::string>());
    if (e.ok()) golds[i] = e.answer;
  }
  const auto prompts = problems(n, golds);
  std::map<std::string, double> m;
  add_eval_metrics(c, model, chat, prompts, m);
  const EvalReport ref = evaluate_accuracy(model, chat, prompts, o);
  ASSERT_TRUE(m.count("eval_accuracy") && m.count("eval_mean_at_k") && m.count("eval_pass_at_k") && m.count("eval_maj_at_k"));
  EXPECT_GT(ref.accuracy, 0.0);
  EXPECT_DOUBLE_EQ(m["eval_mean_at_k"], ref.accuracy);
  EXPECT_DOUBLE_EQ(m["eval_pass_at_k"], ref.pass_at_k);
  EXPECT_DOUBLE_EQ(m["eval_maj_at_k"], ref.maj_at_k);
  EvalOptions greedy;
  greedy.max_new_tokens = 14;
  EXPECT_DOUBLE_EQ(m["eval_accuracy"], evaluate_accuracy(model, chat, prompts, greedy).accuracy);
  // Without eval_samples only the greedy accuracy is logged; without prompts nothing is.
  c.train.eval_samples = 0;
  std::map<std::string, double> g;
  add_eval_metrics(c, model, chat, prompts, g);
  EXPECT_EQ(g.size(), 1u);
  std::map<std::string, double> none;
  add_eval_metrics(c, model, chat, {}, none);
  EXPECT_TRUE(none.empty());
}

TEST(EvalSamples, MajorityAnswerUsesMathEquivalenceAndTiesGoToTheFirstCluster) {
  EXPECT_EQ(majority_answer({"", "3", "0.5", "1/2", "3"}), "3");    // tie 2:2 -> "3" came first
  EXPECT_EQ(majority_answer({"0.5", "3", "1/2", "\\frac{1}{2}"}), "0.5");  // 3 equivalent halves
  EXPECT_EQ(majority_answer({"", ""}), "");
}

TEST(EvalSamples, SeveralSamplesNeedSamplingAndOneAttempt) {
  const Transformer model = tiny_model(257, 13, /*context=*/128);
  const ByteTokenizer tok;
  const ChatRenderer chat(tok, "none");
  EvalOptions o;
  o.samples = 4;  // temperature 0
  EXPECT_THROW(evaluate_accuracy(model, chat, problems(2, {"1", "2"}), o), UserError);
  o.temperature = 1.0;
  o.attempts = 2;
  EXPECT_THROW(evaluate_accuracy(model, chat, problems(2, {"1", "2"}), o), UserError);
  o.attempts = 1;
  o.samples = 0;
  EXPECT_THROW(evaluate_accuracy(model, chat, problems(2, {"1", "2"}), o), UserError);
}

}  // namespace
}  // namespace scorch

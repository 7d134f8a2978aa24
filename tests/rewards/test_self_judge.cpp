// self_verify and self_rubric against a Judge whose logits and generations are fixed by
// construction, so the expected rewards are known exactly.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "common/error.h"
#include "rewards/judge.h"
#include "rewards/reward.h"

namespace scorch::rewards {
namespace {

// Vocabulary: 0 "<x>", 1 "Yes", 2 "No", 3 " Yes", 4 " No", 5 "<y>". Prompts are bytes + 10 with
// a role marker per message, so the judge can read them back.
class FixedJudge : public Judge {
 public:
  // Next-token logits [6] chosen by a keyword of the rendered prompt.
  std::map<std::string, std::vector<double>> logits;
  std::vector<std::vector<JudgeMessage>> rendered;
  std::vector<uint64_t> seeds;

  std::vector<int64_t> render_chat(const std::vector<JudgeMessage>& messages) override {
    rendered.push_back(messages);
    std::vector<int64_t> ids;
    for (const auto& m : messages) {
      ids.push_back(m.role == "user" ? 1001 : 1002);
      for (unsigned char c : m.content) ids.push_back(static_cast<int64_t>(c) + 10);
    }
    ids.push_back(999);  // generation prompt
    return ids;
  }
  int64_t single_token_id(const std::string& text) override {
    static const std::map<std::string, int64_t> vocab = {{"Yes", 1}, {"No", 2}, {" Yes", 3}, {" No", 4}};
    auto it = vocab.find(text);
    return it == vocab.end() ? -1 : it->second;
  }
  static std::string decode(const std::vector<int64_t>& ids) {
    std::string s;
    for (int64_t id : ids)
      if (id >= 10 && id < 266) s += static_cast<char>(id - 10);
    return s;
  }
  std::vector<std::vector<double>> next_token_logprobs(const std::vector<std::vector<int64_t>>& prompts,
                                                       const std::vector<int64_t>& candidates) override {
    std::vector<std::vector<double>> out;
    for (const auto& p : prompts) {
      const std::string text = decode(p);
      std::vector<double> l(6, 0.0);
      for (const auto& kv : logits)
        if (text.find(kv.first) != std::string::npos) l = kv.second;
      double z = 0;
      for (double x : l) z += std::exp(x);
      std::vector<double> row;
      for (int64_t c : candidates) row.push_back(l[static_cast<size_t>(c)] - std::log(z));
      out.push_back(row);
    }
    return out;
  }
  std::vector<std::string> generate(const std::vector<std::vector<int64_t>>& prompts, const JudgeSampling& s) override {
    seeds.push_back(s.seed);
    std::vector<std::string> out;
    for (const auto& p : prompts) {
      const std::string text = decode(p);
      if (text.find("RESP_A") != std::string::npos) out.push_back("Relevant and complete. Score: 4");
      else if (text.find("RESP_B") != std::string::npos) out.push_back("I like it a lot.");
      else if (text.find("RESP_C") != std::string::npos) out.push_back(s.seed % 2 == 0 ? "Score: 5" : "score: 2.");
      else if (text.find("RESP_D") != std::string::npos) out.push_back("Justification...\n**Score:** 3");
      else out.push_back("Score: 7");  // out of the 0..5 range
    }
    return out;
  }
};

RewardSpec spec(const std::string& name, const std::string& params = "{}") {
  RewardSpec s;
  s.name = name;
  s.params = parse_reward_params(params);
  return s;
}

RewardBatch samples(const std::vector<std::string>& completions) {
  RewardBatch b;
  for (const auto& c : completions) {
    RewardSample s;
    s.prompt = "What is 2+2?";
    s.completion = c;
    s.group = static_cast<int64_t>(b.samples.size());
    b.samples.push_back(s);
  }
  b.index_groups();
  return b;
}

double yes_ratio(const std::vector<double>& l) {
  // p(Yes)/(p(Yes)+p(No)) with both spellings, straight from the logits (the softmax
  // normaliser cancels).
  const double yes = std::exp(l[1]) + std::exp(l[3]), no = std::exp(l[2]) + std::exp(l[4]);
  return yes / (yes + no);
}

TEST(SelfVerify, RewardIsPYesOverPYesPlusPNoFromTheJudgeLogits) {
  auto judge = std::make_shared<FixedJudge>();
  judge->logits["SOL_ONE"] = {0.5, 2.0, -1.0, 0.3, 0.1, 4.0};
  judge->logits["SOL_TWO"] = {-3.0, -2.0, 1.5, -0.5, 0.7, 0.0};
  RewardContext ctx;
  ctx.judge = judge;
  RewardSet set({spec("self_verify")}, ctx);
  const auto out = set.score(samples({"SOL_ONE: 4", "SOL_TWO: 5"}));
  EXPECT_NEAR(out.components[0][0], yes_ratio(judge->logits["SOL_ONE"]), 1e-12);
  EXPECT_NEAR(out.components[0][1], yes_ratio(judge->logits["SOL_TWO"]), 1e-12);
  // The judge saw the prompt, the completion and the question as a chat.
  ASSERT_EQ(judge->rendered.size(), 2u);
  const auto& chat = judge->rendered[0];
  ASSERT_EQ(chat.size(), 3u);
  EXPECT_EQ(chat[0].content, "What is 2+2?");
  EXPECT_EQ(chat[1].role, "assistant");
  EXPECT_EQ(chat[1].content, "SOL_ONE: 4");
  EXPECT_EQ(chat[2].content, "Is this solution correct? Answer Yes or No.");
}

TEST(SelfVerify, OnlyConfiguredSingleTokenSpellingsCount) {
  auto judge = std::make_shared<FixedJudge>();
  judge->logits["S"] = {0.0, 1.0, 0.0, 3.0, -2.0, 0.0};
  RewardContext ctx;
  ctx.judge = judge;
  RewardSet set({spec("self_verify", "{yes_tokens: ['Yes', 'YES!'], no_tokens: ['No'], question: 'Right?'}")}, ctx);
  const auto out = set.score(samples({"S"}));
  EXPECT_NEAR(out.components[0][0], std::exp(1.0) / (std::exp(1.0) + std::exp(0.0)), 1e-12);
  EXPECT_EQ(judge->rendered[0][2].content, "Right?");
  EXPECT_THROW(RewardSet({spec("self_verify", "{yes_tokens: ['Oui']}")}, ctx), UserError);
}

TEST(SelfRubric, ParsesScoreNAndAveragesKJudgmentsCountingFailures) {
  auto judge = std::make_shared<FixedJudge>();
  RewardContext ctx;
  ctx.judge = judge;
  RewardSet set({spec("self_rubric", "{k: 2, seed: 10}")}, ctx);
  const auto out = set.score(samples({"RESP_A", "RESP_B", "RESP_C", "RESP_D", "RESP_E"}));
  const auto& v = out.components[0];
  EXPECT_DOUBLE_EQ(v[0], 4.0 / 5.0);
  EXPECT_TRUE(std::isnan(v[1]));                    // never parses
  EXPECT_DOUBLE_EQ(v[2], (5.0 + 2.0) / 2.0 / 5.0);  // seeds 10 and 11 give 5 and 2
  EXPECT_DOUBLE_EQ(v[3], 3.0 / 5.0);
  EXPECT_TRUE(std::isnan(v[4]));                    // 7 is outside the rubric
  EXPECT_EQ(out.metrics.at("rewards/self_rubric/parse_failures"), 4.0);
  EXPECT_EQ(out.metrics.at("rewards/self_rubric/nan_count"), 2.0);
  EXPECT_EQ(judge->seeds, (std::vector<uint64_t>{10, 11}));
  // The rubric prompt carries the question and the response.
  const std::string prompt = judge->rendered[0][0].content;
  EXPECT_NE(prompt.find("What is 2+2?"), std::string::npos);
  EXPECT_NE(prompt.find("<response>RESP_A</response>"), std::string::npos);
  EXPECT_NE(prompt.find("Score: <total points>"), std::string::npos);
}

TEST(SelfRubric, RawScoresWithoutNormalisationAndTemplateChecked) {
  auto judge = std::make_shared<FixedJudge>();
  RewardContext ctx;
  ctx.judge = judge;
  RewardSet set({spec("self_rubric", "{k: 1, normalize: false, template: 'Q={question} R={response}'}")}, ctx);
  EXPECT_DOUBLE_EQ(set.score(samples({"RESP_A"})).components[0][0], 4.0);
  EXPECT_EQ(judge->rendered[0][0].content, "Q=What is 2+2? R=RESP_A");
  EXPECT_THROW(RewardSet({spec("self_rubric", "{template: 'no placeholders'}")}, ctx), UserError);
}

TEST(RubricScoreParsing, TakesTheLastScoreInRange) {
  EXPECT_DOUBLE_EQ(parse_rubric_score("Score: 3"), 3.0);
  EXPECT_DOUBLE_EQ(parse_rubric_score("Score: 1 ... revised. SCORE: 4.5"), 4.5);
  EXPECT_DOUBLE_EQ(parse_rubric_score("**Score:** 2"), 2.0);
  EXPECT_DOUBLE_EQ(parse_rubric_score("Score: 4/5"), 4.0);
  EXPECT_TRUE(std::isnan(parse_rubric_score("Score: six")));
  EXPECT_TRUE(std::isnan(parse_rubric_score("Score: 6")));
  EXPECT_TRUE(std::isnan(parse_rubric_score("no score")));
  EXPECT_TRUE(std::isnan(parse_rubric_score("Score: 1.2.3")));
}

TEST(JudgeFactory, TheRegisteredFactoryBuildsTheJudgeAndNoneMeansNotImplemented) {
  // libscorch registers the model-backed judge: a missing model directory is a user error.
  EXPECT_THROW(make_judge("some/model"), UserError);
  register_judge_factory([](const std::string&) { return std::make_shared<FixedJudge>(); });
  EXPECT_NE(make_judge("some/model"), nullptr);
  register_judge_factory(nullptr);
  EXPECT_THROW(make_judge("some/model"), NotImplemented);
}

}  // namespace
}  // namespace scorch::rewards

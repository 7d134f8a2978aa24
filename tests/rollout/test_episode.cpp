// Multi-turn episodes: the token sequence equals the chat template's rendering of the same
// conversation, turn masks and logprobs line up with the generated tokens, KV reuse across turns
// gives what a fresh prefill of the whole history gives, the environment controls continuation.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "common/error.h"
#include "rollout/episode.h"
#include "rollout_fixtures.h"
#include "tokenizer/chat_template.h"

namespace scorch {
namespace {

using test::ByteTokenizer;
using test::full_forward_logits;
using test::tiny_model;

const std::string kCorrection = "Check it.";

std::vector<ChatMessage> user(const std::string& text) { return {ChatMessage{"user", text}}; }

TEST(Episode, TwoTurnTokensEqualTheChatRenderingAndMasksMarkTheTurns) {
  const Transformer model = tiny_model(257, 7, /*context=*/512);
  const ByteTokenizer tok;
  const ChatRenderer chat(tok, "chatml");
  GenerationEngine engine(model, &tok);
  const std::vector<std::string> questions = {"2+2?", "What is seven times six?"};
  std::vector<std::vector<int64_t>> prompts;
  for (const auto& q : questions) prompts.push_back(chat.render_prompt(user(q)));

  SamplingParams p;
  p.temperature = 1.0;
  p.n = 2;
  p.max_new_tokens = 12;
  p.seed = 77;
  int64_t calls = 0;
  const Environment env = [&](const FinishedTurn& t) {
    ++calls;
    EXPECT_EQ(t.turn, 1);
    EXPECT_EQ(t.text, tok.decode(*t.ids));
    return EnvironmentReply::user(kCorrection);
  };
  const auto episodes = run_episodes(engine, chat, prompts, p, env);
  ASSERT_EQ(episodes.size(), 4u);
  EXPECT_EQ(calls, 4);  // asked after turn 1 only (max_turns = 2)
  for (const auto& ep : episodes) {
    ASSERT_EQ(ep.turns.size(), 2u);
    const auto& t1 = ep.turns[0];
    const auto& t2 = ep.turns[1];
    // Everything before turn 2 is exactly render_prompt of [user q, assistant turn-1 text, user correction].
    const std::vector<ChatMessage> history = {ChatMessage{"user", questions[ep.prompt_index]},
                                              ChatMessage{"assistant", t1.text}, ChatMessage{"user", kCorrection}};
    const std::vector<int64_t> expected = chat.render_prompt(history);
    EXPECT_EQ(std::vector<int64_t>(ep.tokens.begin(), ep.tokens.begin() + t2.begin), expected);
    EXPECT_EQ(t1.begin, ep.prompt_length);
    // Turn 2's tokens are its completion: the text's tokens, plus end-of-turn if it ended with one.
    std::vector<int64_t> t2_expected = tok.encode(t2.text, false);
    if (t2.finish_reason == FinishReason::kEos) t2_expected.push_back(chat.end_of_turn_id());
    EXPECT_EQ(std::vector<int64_t>(ep.tokens.begin() + t2.begin, ep.tokens.end()), t2_expected);
    // Masks: 1 on turn 1's tokens, 2 on turn 2's, 0 elsewhere; logprobs nonzero exactly there.
    ASSERT_EQ(ep.turn_mask.size(), ep.tokens.size());
    ASSERT_EQ(ep.logprobs.size(), ep.tokens.size());
    for (int64_t i = 0; i < static_cast<int64_t>(ep.tokens.size()); ++i) {
      const int32_t want = (i >= t1.begin && i < t1.end) ? 1 : (i >= t2.begin && i < t2.end) ? 2 : 0;
      EXPECT_EQ(ep.turn_mask[i], want) << "token " << i;
      if (want == 0) EXPECT_EQ(ep.logprobs[i], 0.0f);
      else EXPECT_LT(ep.logprobs[i], 0.0f);
    }
    EXPECT_EQ(t1.end - t1.begin, t1.finish_reason == FinishReason::kLength ? 12 : t1.end - t1.begin);
  }
}

TEST(Episode, KvReuseAcrossTurnsEqualsAFreshPrefillOfTheHistory) {
  const Transformer model = tiny_model(257, 7, /*context=*/512);
  const ByteTokenizer tok;
  const ChatRenderer chat(tok, "plain");
  GenerationEngine engine(model, &tok);
  const std::vector<std::vector<int64_t>> prompts = {chat.render_prompt(user("Hi")),
                                                      chat.render_prompt(user("A longer question here"))};
  SamplingParams greedy;
  greedy.temperature = 0;
  greedy.max_new_tokens = 10;
  const auto episodes = run_episodes(engine, chat, prompts, greedy,
                                     [](const FinishedTurn&) { return EnvironmentReply::user(kCorrection); });
  for (const auto& ep : episodes) {
    ASSERT_EQ(ep.turns.size(), 2u);
    const auto& t2 = ep.turns[1];
    const std::vector<int64_t> history(ep.tokens.begin(), ep.tokens.begin() + t2.begin);
    // Fresh prefill of the whole history, no cache reuse.
    const auto fresh = engine.generate({history}, greedy)[0];
    EXPECT_EQ(std::vector<int64_t>(ep.tokens.begin() + t2.begin, ep.tokens.begin() + t2.end), fresh.completion_ids);
    // And the stored logprobs of both turns equal a full forward over the final sequence (T = 1 for greedy).
    const at::Tensor logp = full_forward_logits(model, ep.tokens).log_softmax(-1);  // [L, V]
    for (int64_t i = ep.prompt_length; i < static_cast<int64_t>(ep.tokens.size()); ++i) {
      if (ep.turn_mask[i] == 0) continue;
      EXPECT_NEAR(ep.logprobs[i], logp[i - 1][ep.tokens[i]].item<float>(), 1e-5) << "token " << i;
    }
  }
}

TEST(Episode, EnvironmentEndsSomeEpisodesAfterTheFirstTurn) {
  const Transformer model = tiny_model(257, 7, /*context=*/512);
  const ByteTokenizer tok;
  const ChatRenderer chat(tok, "chatml");
  GenerationEngine engine(model, &tok);
  const std::vector<std::vector<int64_t>> prompts = {chat.render_prompt(user("a")), chat.render_prompt(user("bb")),
                                                      chat.render_prompt(user("ccc"))};
  SamplingParams p;
  p.temperature = 0;
  p.max_new_tokens = 6;
  EpisodeOptions opts;
  opts.max_turns = 3;
  // Prompt 1 stops after turn 1; the others go on for all three turns.
  const auto episodes = run_episodes(engine, chat, prompts, p, [](const FinishedTurn& t) {
    return t.prompt_index == 1 ? EnvironmentReply::finish() : EnvironmentReply::user("again " + std::to_string(t.turn));
  }, opts);
  EXPECT_EQ(episodes[0].turns.size(), 3u);
  EXPECT_EQ(episodes[1].turns.size(), 1u);
  EXPECT_EQ(episodes[2].turns.size(), 3u);
  // The surviving episodes equal running them without their finished batchmate.
  const auto without = run_episodes(engine, chat, {prompts[0], prompts[2]}, p, [](const FinishedTurn& t) {
    return EnvironmentReply::user("again " + std::to_string(t.turn));
  }, opts);
  EXPECT_EQ(episodes[0].tokens, without[0].tokens);
  EXPECT_EQ(episodes[2].tokens, without[1].tokens);
  // Turn 3's prompt ends with the continuation "again 2" + generation prompt, rendered append-only.
  const auto& ep = episodes[2];
  const std::vector<ChatMessage> history = {
      ChatMessage{"user", "ccc"}, ChatMessage{"assistant", ep.turns[0].text}, ChatMessage{"user", "again 1"},
      ChatMessage{"assistant", ep.turns[1].text}, ChatMessage{"user", "again 2"}};
  EXPECT_EQ(std::vector<int64_t>(ep.tokens.begin(), ep.tokens.begin() + ep.turns[2].begin), chat.render_prompt(history));
}

// A reply longer than the room reserved for continuations grows the KV cache (KvCache::reserve)
// instead of failing, and turn 2 is then what a fresh prefill of the whole history gives.
TEST(Episode, LongEnvironmentReplyGrowsTheCacheAndEqualsAFreshPrefill) {
  const Transformer model = tiny_model(257, 7, /*context=*/512);
  const ByteTokenizer tok;
  const ChatRenderer chat(tok, "chatml");
  GenerationEngine engine(model, &tok);
  SamplingParams p;
  p.temperature = 0;
  p.max_new_tokens = 6;
  EpisodeOptions opts;
  opts.max_continuation_tokens = 8;
  const std::string reply(50, 'y');
  const auto episodes = run_episodes(engine, chat, {chat.render_prompt(user("x")), chat.render_prompt(user("zz"))}, p,
                                     [&](const FinishedTurn&) { return EnvironmentReply::user(reply); }, opts);
  for (const auto& ep : episodes) {
    ASSERT_EQ(ep.turns.size(), 2u);
    const auto& t2 = ep.turns[1];
    EXPECT_GT(t2.begin - ep.turns[0].end, 50) << "the whole reply is in the history";
    const std::vector<int64_t> history(ep.tokens.begin(), ep.tokens.begin() + t2.begin);
    const auto fresh = engine.generate({history}, p)[0];
    EXPECT_EQ(std::vector<int64_t>(ep.tokens.begin() + t2.begin, ep.tokens.begin() + t2.end), fresh.completion_ids);
  }
}

// Episodes with static-shape decode steps (the CUDA default; eager on the CPU) give the same
// tokens and log-probs as with dynamic steps.
TEST(Episode, StaticDecodeStepsGiveTheSameEpisodes) {
  const Transformer model = tiny_model(257, 7, /*context=*/512);
  const ByteTokenizer tok;
  const ChatRenderer chat(tok, "chatml");
  EngineOptions static_opts;
  static_opts.decode_steps = DecodeSteps::kStatic;
  GenerationEngine dynamic(model, &tok), stat(model, &tok, static_opts);
  const std::vector<std::vector<int64_t>> prompts = {chat.render_prompt(user("2+2?")), chat.render_prompt(user("a"))};
  SamplingParams p;
  p.temperature = 0;
  p.n = 2;
  p.max_new_tokens = 10;
  const Environment env = [](const FinishedTurn& t) {
    return t.prompt_index == 1 && t.turn == 2 ? EnvironmentReply::finish() : EnvironmentReply::user(kCorrection);
  };
  EpisodeOptions opts;
  opts.max_turns = 3;
  const auto a = run_episodes(dynamic, chat, prompts, p, env, opts);
  const auto b = run_episodes(stat, chat, prompts, p, env, opts);
  EXPECT_GT(stat.last_stats().static_steps, 0);
  ASSERT_EQ(a.size(), b.size());
  for (size_t e = 0; e < a.size(); ++e) {
    EXPECT_EQ(a[e].tokens, b[e].tokens) << "episode " << e;
    EXPECT_EQ(a[e].turn_mask, b[e].turn_mask) << "episode " << e;
    ASSERT_EQ(a[e].logprobs.size(), b[e].logprobs.size());
    for (size_t t = 0; t < a[e].logprobs.size(); ++t) EXPECT_NEAR(a[e].logprobs[t], b[e].logprobs[t], 1e-5);
  }
}

}  // namespace
}  // namespace scorch

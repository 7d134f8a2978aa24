// Multi-turn episodes (SCoRe, feedback environments): the model answers, an environment reads the
// answer and either ends the episode or replies with new messages, the model answers again, ...
//
// Every episode keeps ONE token sequence that only ever grows: prompt | turn 1 | continuation |
// turn 2 | ... The continuation is ChatRenderer::render_continuation(messages) (the assistant
// separator, the new messages, the next generation prompt), so sampled tokens are never
// re-tokenized and turn 2 sees turn 1's exact tokens. A turn that did not end with the template's
// end-of-turn id (cut by length, or by a stop string / stop id) is closed with that id before the
// continuation; the closing id is not a generated token (mask 0), so the conversation stays
// well-formed and equals ChatRenderer::render of the decoded turns whenever those re-tokenize to
// the same ids.
//
// The batch of episodes (prompts × n samples) lives in one KV cache for the whole run: each turn
// appends the continuation tokens of the episodes that continue (one left-padded forward) and
// decodes; finished episodes are dropped from the cache between turns (keep_rows), and within a
// turn rows that finished early sit out with a false token mask (their KV is needed next turn).
// A reply longer than the room reserved for it grows the cache (EpisodeOptions).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "rollout/engine.h"
#include "rollout/sampling.h"
#include "tokenizer/chat_template.h"

namespace scorch {

struct EpisodeTurn {
  int64_t begin = 0, end = 0;  // [begin, end): the tokens this turn generated, in Episode::tokens
  FinishReason finish_reason = FinishReason::kLength;
  std::string text;            // decode of those tokens
};

struct Episode {
  int64_t prompt_index = 0, sample_index = 0;
  int64_t prompt_length = 0;        // tokens[0, prompt_length) is the prompt
  std::vector<int64_t> tokens;      // the whole conversation as ids
  std::vector<int32_t> turn_mask;   // [tokens]: t >= 1 if turn t generated the token, 0 otherwise
                                    // (prompt, continuations, closing end-of-turn ids)
  std::vector<float> logprobs;      // [tokens]: sampling log-prob of generated tokens, 0 elsewhere
  std::vector<EpisodeTurn> turns;
};

// What the environment sees after each turn.
struct FinishedTurn {
  int64_t episode = 0;              // index in the returned vector
  int64_t prompt_index = 0, sample_index = 0;
  int64_t turn = 1;                 // 1-based: the turn that just finished
  const std::vector<int64_t>* ids = nullptr;  // the tokens it generated
  std::string text;                 // their decode
  FinishReason finish_reason = FinishReason::kLength;
};

// The environment's answer: done, or the messages to add (typically one user message).
struct EnvironmentReply {
  bool done = true;
  std::vector<ChatMessage> messages;
  static EnvironmentReply finish() { return {}; }
  static EnvironmentReply user(std::string content) { return {false, {ChatMessage{"user", std::move(content)}}}; }
};

using Environment = std::function<EnvironmentReply(const FinishedTurn&)>;

struct EpisodeOptions {
  int64_t max_turns = 2;  // the environment is not asked after the last turn
  // Room reserved in the KV cache up front for each continuation (separator + messages + generation
  // prompt). A longer continuation grows the cache (KvCache::reserve: one copy of it); only the
  // model's context length bounds an episode.
  int64_t max_continuation_tokens = 256;
};

// Runs params.n episodes per prompt (prompts already rendered, e.g. with render_prompt) to
// completion. Sampling, stop rules and seeds as GenerationEngine::generate; the renderer's stop ids
// (end-of-turn, EOS) end a turn with finish_reason eos. Returns episodes ordered by
// (prompt_index, sample_index); the engine's last_stats() holds the totals.
std::vector<Episode> run_episodes(GenerationEngine& engine, const ChatRenderer& renderer,
                                  const std::vector<std::vector<int64_t>>& prompts, const SamplingParams& params,
                                  const Environment& environment, const EpisodeOptions& options = {});

}  // namespace scorch

// Multi-turn episode runner: turns of decode_rows (engine_internal.h) over one KV cache, joined by the
// chat template's append-only continuations. Design in episode.h.
#include "rollout/episode.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>

#include "common/error.h"
#include "common/stopwatch.h"
#include "model/kv_cache.h"
#include "model/transformer.h"
#include "rollout/engine_internal.h"
#include "tokenizer/tokenizer.h"

namespace scorch {

std::vector<Episode> run_episodes(GenerationEngine& engine, const ChatRenderer& renderer,
                                  const std::vector<std::vector<int64_t>>& prompts, const SamplingParams& params,
                                  const Environment& environment, const EpisodeOptions& options) {
  validate_sampling_params(params);
  if (prompts.empty()) throw UserError("episodes: no prompts given");
  if (options.max_turns < 1) throw UserError("episodes: max_turns must be >= 1, got " + std::to_string(options.max_turns));
  if (options.max_continuation_tokens < 1) {
    throw UserError("episodes: max_continuation_tokens must be >= 1, got " + std::to_string(options.max_continuation_tokens));
  }
  const Transformer& model = engine.model();
  const Tokenizer& tokenizer = renderer.tokenizer();
  const int64_t ctx = engine.context_length(), V = model.config().vocab_size;
  int64_t longest = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    validate_prompt(prompts[i], static_cast<int64_t>(i), ctx, V);
    longest = std::max<int64_t>(longest, static_cast<int64_t>(prompts[i].size()));
  }
  c10::InferenceMode inference;
  GenerationStats stats;
  const int64_t B = static_cast<int64_t>(prompts.size()), n = params.n, R = B * n;
  const int64_t eot = renderer.end_of_turn_id();
  const std::vector<int64_t> turn_stop_ids = renderer.stop_ids();
  // Slots: the prompt, every turn's decode steps, every continuation (+ a closing end-of-turn id
  // and the turn's last sampled token, which decode_rows() leaves out of the cache).
  const int64_t turn_room = options.max_continuation_tokens + 2 + params.max_new_tokens;  // each later turn
  const int64_t slots = longest + params.max_new_tokens + (options.max_turns - 1) * turn_room;
  KvCache cache = KvCache::for_model(model.config(), B, cache_slots(engine, slots), model.dtype(), model.device());
  at::Generator generator = make_sampling_generator(params.seed, model.device());

  std::vector<Episode> episodes(R);
  for (int64_t e = 0; e < R; ++e) {
    Episode& ep = episodes[e];
    ep.prompt_index = e / n;
    ep.sample_index = e % n;
    ep.tokens = prompts[e / n];
    ep.prompt_length = static_cast<int64_t>(ep.tokens.size());
    ep.turn_mask.assign(ep.tokens.size(), 0);
    ep.logprobs.assign(ep.tokens.size(), 0.0f);
  }

  Stopwatch prefill_clock;
  at::Tensor logits = engine.append_tokens(cache, prompts);  // [B, V]
  if (n > 1) {
    cache.repeat_rows(n);
    logits = logits.repeat_interleave(n, 0);  // [R, V]
  }
  stats.prefill_seconds += prefill_clock.seconds();
  for (const auto& p : prompts) stats.prompt_tokens += static_cast<int64_t>(p.size());

  std::vector<int64_t> live(R);  // live[i] = the episode in cache row i
  for (int64_t i = 0; i < R; ++i) live[i] = i;
  for (int64_t turn = 1; turn <= options.max_turns && !live.empty(); ++turn) {
    std::vector<DecodeRow> rows(live.size());
    for (size_t i = 0; i < live.size(); ++i) {
      rows[i].budget = std::min(params.max_new_tokens, ctx - static_cast<int64_t>(episodes[live[i]].tokens.size()));
    }
    // No compaction inside a turn: the cache rows must survive for the next turn.
    decode_rows(engine, cache, logits, rows, params, generator, /*compact=*/false, turn_stop_ids, stats);

    std::vector<int64_t> keep_rows, keep_live;
    std::vector<std::vector<int64_t>> continuations;
    for (size_t i = 0; i < live.size(); ++i) {
      Episode& ep = episodes[live[i]];
      DecodeRow& row = rows[i];
      EpisodeTurn span;
      span.begin = static_cast<int64_t>(ep.tokens.size());
      ep.tokens.insert(ep.tokens.end(), row.ids.begin(), row.ids.end());
      ep.turn_mask.insert(ep.turn_mask.end(), row.ids.size(), static_cast<int32_t>(turn));
      ep.logprobs.insert(ep.logprobs.end(), row.logprobs.begin(), row.logprobs.end());
      span.end = static_cast<int64_t>(ep.tokens.size());
      span.finish_reason = row.finish_reason;
      span.text = tokenizer.decode(row.ids);
      ep.turns.push_back(span);
      if (turn == options.max_turns) continue;

      FinishedTurn finished;
      finished.episode = live[i];
      finished.prompt_index = ep.prompt_index;
      finished.sample_index = ep.sample_index;
      finished.turn = turn;
      finished.ids = &row.ids;
      finished.text = span.text;
      finished.finish_reason = row.finish_reason;
      const EnvironmentReply reply = environment(finished);
      if (reply.done) continue;

      std::vector<int64_t> cont;
      if (row.ids.empty() || row.ids.back() != eot) cont.push_back(eot);  // close the turn (not generated)
      const std::vector<int64_t> rendered = renderer.render_continuation(reply.messages);
      cont.insert(cont.end(), rendered.begin(), rendered.end());
      // No room left in the context to answer: the episode ends here.
      if (static_cast<int64_t>(ep.tokens.size() + cont.size()) >= ctx) continue;
      ep.tokens.insert(ep.tokens.end(), cont.begin(), cont.end());
      ep.turn_mask.insert(ep.turn_mask.end(), cont.size(), 0);
      ep.logprobs.insert(ep.logprobs.end(), cont.size(), 0.0f);
      keep_rows.push_back(static_cast<int64_t>(i));
      keep_live.push_back(live[i]);
      // decode_rows() leaves each row's final sampled token out of the cache: it goes in first.
      if (!row.ids.empty()) cont.insert(cont.begin(), row.ids.back());
      continuations.push_back(std::move(cont));
    }
    if (turn == options.max_turns || keep_live.empty()) break;
    if (keep_live.size() < live.size()) cache.keep_rows(at::tensor(keep_rows, at::kLong).to(model.device()));
    live = std::move(keep_live);
    // A reply longer than the room reserved for it grows the cache (one copy): room for the longest
    // continuation, this turn's decode, and the planned room of the turns after it.
    int64_t longest_continuation = 0;
    for (const auto& c : continuations) longest_continuation = std::max<int64_t>(longest_continuation, c.size());
    const int64_t needed = cache.used() + longest_continuation + params.max_new_tokens +
                           (options.max_turns - turn - 1) * turn_room;
    if (needed > cache.max_len()) cache.reserve(cache_slots(engine, needed));
    prefill_clock.restart();
    logits = engine.append_tokens(cache, continuations);  // [live, V]
    stats.prefill_seconds += prefill_clock.seconds();
    for (const auto& c : continuations) stats.prompt_tokens += static_cast<int64_t>(c.size());
  }
  set_last_stats(engine, stats);
  return episodes;
}

}  // namespace scorch

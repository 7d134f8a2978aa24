// GenerationEngine: prefill, group expansion and the decode loop, which puts together the stop rules
// (stop_rules.h), the compaction policy (compaction.h), the step kinds (decode_step.h) and the step
// profiler (step_profiler.h). The design is described in engine.h; the KV cache layout in
// model/kv_cache.h.
#include "rollout/engine.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <memory>
#include <set>

#include "common/error.h"
#include "common/stopwatch.h"
#include "model/kv_cache.h"
#include "model/transformer.h"
#include "rollout/compaction.h"
#include "rollout/decode_step.h"
#include "rollout/engine_internal.h"
#include "rollout/static_decoder.h"
#include "rollout/step_profiler.h"
#include "tokenizer/tokenizer.h"

namespace scorch {
namespace {

[[noreturn]] void throw_no_valid_token(int64_t step, int64_t row) {
  throw NonFiniteStop("generation: decode step " + std::to_string(step) + " drew no valid token for sample " +
                      std::to_string(row) + " (its logits are NaN, +inf or all -inf): the model's weights or " +
                      "activations are not finite");
}

// The end of a decode: each row's log-probs from the device buffer [R, steps] (column = step).
void finish_rows(std::vector<DecodeRow>& rows, const at::Tensor& logprob_buffer, GenerationStats& stats) {
  const at::Tensor lp_host = logprob_buffer.to(at::kCPU);
  const auto lp = lp_host.accessor<float, 2>();
  for (size_t r = 0; r < rows.size(); ++r) {
    DecodeRow& row = rows[r];
    row.logprobs.resize(row.ids.size());
    for (size_t t = 0; t < row.ids.size(); ++t) row.logprobs[t] = lp[static_cast<int64_t>(r)][static_cast<int64_t>(t)];
    if (!row.finished) {  // cannot happen (budget <= the decode's steps), kept for safety
      row.finished = true;
      row.finish_reason = FinishReason::kLength;
    }
    stats.generated_tokens += static_cast<int64_t>(row.ids.size());
  }
}

}  // namespace

GenerationEngine::GenerationEngine(const Transformer& model, const Tokenizer* tokenizer, EngineOptions options)
    : model_(model), tokenizer_(tokenizer), options_(std::move(options)) {
  // The same checks for `generate`/`eval` flags and a config's generation.* keys: an option that
  // cannot take effect is an error, never silently dropped.
  const bool cli = options_.settings_from_cli;
  const std::string steps_name = cli ? "--decode-steps" : "generation.decode_steps";
  const std::string fused_name = cli ? "--fused-decode-attention" : "generation.fused_decode_attention";
  if (options_.decode_steps == DecodeSteps::kCudaGraph && !model.device().is_cuda()) {
    throw UserError(steps_name + " `cuda_graph` needs a CUDA device, and the model is on the CPU: use `auto`, "
                    "`dynamic` or `static`");
  }
  if (options_.fused_decode_attention && !static_decode_steps()) {
    throw UserError(fused_name + " runs inside static decode steps, and " + steps_name + " `" +
                    decode_steps_name(options_.decode_steps) + "` " +
                    (options_.decode_steps == DecodeSteps::kAuto ? "is dynamic on the CPU" : "is dynamic") +
                    ": set " + steps_name + " `static` (or `cuda_graph` on CUDA), or " +
                    (cli ? "drop " + fused_name : "set " + fused_name + ": false"));
  }
  std::set<int64_t> eos(model.config().eos_token_ids.begin(), model.config().eos_token_ids.end());
  if (tokenizer_ && tokenizer_->eos_id() >= 0) eos.insert(tokenizer_->eos_id());
  eos.insert(options_.extra_eos_ids.begin(), options_.extra_eos_ids.end());
  for (int64_t id : eos) {
    if (id >= 0) eos_ids_.push_back(id);
  }
}

int64_t GenerationEngine::context_length() const { return model_.config().context_length(); }

bool GenerationEngine::static_decode_steps() const {
  return resolve_decode_steps(options_.decode_steps, model_.device()) != DecodeSteps::kDynamic;
}

int64_t cache_slots(const GenerationEngine& engine, int64_t needed) {
  // Static steps attend over every slot, and CUDA's memory-efficient attention pads a mask whose
  // rows are not a multiple of 16 elements on every call: round up (at most 15 idle slots).
  return engine.static_decode_steps() ? (needed + 15) / 16 * 16 : needed;
}

void set_last_stats(GenerationEngine& engine, const GenerationStats& stats) { engine.stats_ = stats; }

at::Tensor GenerationEngine::append_tokens(KvCache& cache, const std::vector<std::vector<int64_t>>& tokens) const {
  const int64_t R = static_cast<int64_t>(tokens.size());
  if (R != cache.batch()) throw std::invalid_argument("GenerationEngine::append_tokens: one token list per cache row");
  int64_t T = 1;
  for (const auto& t : tokens) T = std::max<int64_t>(T, static_cast<int64_t>(t.size()));
  // Left padding: every row's last real token sits at position T - 1, whose logits predict its next token.
  at::Tensor ids = at::zeros({R, T}, at::kLong);        // [R, T]
  at::Tensor mask = at::zeros({R, T}, at::kBool);       // [R, T] true = real token
  auto ids_a = ids.accessor<int64_t, 2>();
  auto mask_a = mask.accessor<bool, 2>();
  for (int64_t r = 0; r < R; ++r) {
    const int64_t pad = T - static_cast<int64_t>(tokens[r].size());
    for (size_t t = 0; t < tokens[r].size(); ++t) {
      ids_a[r][pad + static_cast<int64_t>(t)] = tokens[r][t];
      mask_a[r][pad + static_cast<int64_t>(t)] = true;
    }
  }
  const auto dev = model_.device();
  ids = ids.to(dev);
  mask = mask.to(dev);
  const at::Tensor positions = cache.next_positions(T, mask);
  const at::Tensor hidden = model_.forward(ids, positions, mask, &cache);  // [R, T, hidden]
  return model_.logits(hidden.select(1, T - 1)).to(at::kFloat);          // [R, V]
}

// The decode loop. Per step: sample from the logits (log-probs stay on the device), bring the tokens
// to the host, apply the stop rules row by row, let the compaction policy drop or mask the rows
// that finished, and take the next step (decode_step.h) on the tokens of the rows that go on.
//
// Lookahead (EngineOptions::lookahead): the next static step is queued on the device before the
// host has read this step's tokens (they go to the host by an asynchronous copy that waits for
// sampling alone), so the host's stop rules overlap the device's next step instead of leaving it
// idle. A row that finishes takes part in one more step than it needs, whose token is dropped;
// masks and compaction decided on this step's tokens apply from the step after the queued one
// (compaction selects the queued step's logits of the rows kept). Only where finished rows are
// not needed afterwards (compact: generate(), not episodes, whose cache rows carry on) and not
// while profiling steps (whose waits would serialise it anyway).
void decode_rows(const GenerationEngine& engine, KvCache& cache, const at::Tensor& next_logits,
                 std::vector<DecodeRow>& rows, const SamplingParams& params, at::Generator& generator, bool compact,
                 const std::vector<int64_t>& extra_eos, GenerationStats& stats) {
  const int64_t R0 = static_cast<int64_t>(rows.size());
  if (R0 != cache.batch() || next_logits.size(0) != R0) {
    throw std::invalid_argument("decode_rows: rows, cache and logits disagree on the batch");
  }
  const StopRules stop_rules(engine.eos_ids(), extra_eos, params, engine.tokenizer());
  const EngineOptions& options = engine.options();
  const auto dev = engine.model().device();
  const int64_t vocab = engine.model().config().vocab_size;

  int64_t max_steps = 0;
  for (const auto& r : rows) max_steps = std::max(max_steps, r.budget);
  // Sampling log-probs stay on the device until the end: [R0, max_steps], column = step.
  at::Tensor logprob_buffer = at::zeros({R0, std::max<int64_t>(max_steps, 1)}, next_logits.options().dtype(at::kFloat));

  const std::unique_ptr<DecodeStep> decode_step =
      make_decode_step(engine.model(), options.decode_steps, options.fused_decode_attention);
  CompactionPolicy batch(R0, compact, decode_step->static_shapes(), dev);
  int64_t finished_count = 0;
  for (auto& r : rows) {
    if (r.budget <= 0) {  // no room at all (context full): nothing to generate
      r.finished = true;
      r.finish_reason = FinishReason::kLength;
      ++finished_count;
      batch.row_finished();
    }
  }
  StepProfiler profiler(options.profile_steps, dev);
  const bool lookahead = decode_step->static_shapes() && compact && options.lookahead && !profiler.enabled();
  AsyncHostCopy host_tokens;

  const Stopwatch clock;
  profiler.restart();
  at::Tensor logits = next_logits;  // [R, V]
  for (int64_t step = 0; finished_count < R0 && step < max_steps; ++step) {
    const SampledTokens s = sample_next_tokens(logits, params, generator);  // [R], [R]
    logprob_buffer.select(1, step).index_copy_(0, batch.live_device(), s.logprobs);
    profiler.lap(stats.step_sample_seconds);
    host_tokens.start(s.tokens);
    at::Tensor ahead;  // [R, V]: the next step's logits, queued before this step's tokens are read
    if (lookahead && step + 1 < max_steps) {
      ahead = decode_step->step(cache, s.tokens, batch.token_mask());
      stats.decode_steps += 1;
    }
    const at::Tensor& tokens_host = host_tokens.wait();  // the per-step synchronisation
    const int64_t* tok = tokens_host.data_ptr<int64_t>();
    const std::vector<int64_t>& live = batch.live();
    const int64_t R = static_cast<int64_t>(live.size());
    stats.row_steps += R;
    for (int64_t i = 0; i < R; ++i) {
      DecodeRow& row = rows[live[i]];
      if (row.finished) continue;  // sitting out
      if (tok[i] < 0 || tok[i] >= vocab) throw_no_valid_token(step, live[i]);
      row.ids.push_back(tok[i]);
      if (const std::optional<FinishReason> reason = stop_rules.finished(row.ids, row.budget)) {
        row.finished = true;
        row.finish_reason = *reason;
        row.decode_seconds = clock.seconds();
        ++finished_count;
        batch.row_finished();
      }
    }
    if (finished_count == R0) break;

    at::Tensor next = s.tokens;  // [R]
    const at::Tensor kept = batch.update(cache, rows, stats);
    if (kept.defined()) {  // compacted: the next step takes the kept rows' tokens (or logits, queued)
      if (ahead.defined()) {
        ahead = ahead.index_select(0, kept);
      } else {
        next = next.index_select(0, kept);
      }
    }
    profiler.lap(stats.step_host_seconds);
    if (ahead.defined()) {
      logits = ahead;
    } else {
      logits = decode_step->step(cache, next, batch.token_mask());  // [R, V]
      stats.decode_steps += 1;
    }
    profiler.lap(stats.step_forward_seconds);
  }
  profiler.lap(stats.step_host_seconds);  // the last step's host part (it ended the loop)
  stats.decode_seconds += clock.seconds();
  decode_step->add_stats(stats);

  finish_rows(rows, logprob_buffer, stats);
}

std::vector<Sample> GenerationEngine::generate(const std::vector<std::vector<int64_t>>& prompts,
                                               const SamplingParams& params) {
  validate_sampling_params(params);
  if (prompts.empty()) throw UserError("generate: no prompts given");
  if (!params.stop_strings.empty() && !tokenizer_) {
    throw UserError("sampling: stop strings need a tokenizer to decode text (give the engine one)");
  }
  const int64_t ctx = context_length(), V = model_.config().vocab_size;
  int64_t longest = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    validate_prompt(prompts[i], static_cast<int64_t>(i), ctx, V);
    longest = std::max<int64_t>(longest, static_cast<int64_t>(prompts[i].size()));
  }
  c10::InferenceMode inference;
  stats_ = GenerationStats{};
  const int64_t B = static_cast<int64_t>(prompts.size()), n = params.n;
  const int64_t max_new = std::min(params.max_new_tokens, ctx - 1);
  KvCache cache = KvCache::for_model(model_.config(), B, cache_slots(*this, longest + max_new), model_.dtype(), model_.device());
  at::Generator generator = make_sampling_generator(params.seed, model_.device());

  const Stopwatch prefill_clock;
  at::Tensor logits = append_tokens(cache, prompts);  // [B, V]
  if (n > 1) {
    cache.repeat_rows(n);
    logits = logits.repeat_interleave(n, 0);  // [B * n, V]
  }
  stats_.prefill_seconds = prefill_clock.seconds();
  for (const auto& p : prompts) stats_.prompt_tokens += static_cast<int64_t>(p.size());

  std::vector<DecodeRow> rows(B * n);
  for (int64_t r = 0; r < B * n; ++r) {
    rows[r].budget = std::min(params.max_new_tokens, ctx - static_cast<int64_t>(prompts[r / n].size()));
  }
  decode_rows(*this, cache, logits, rows, params, generator, options_.compact, {}, stats_);

  std::vector<Sample> out(B * n);
  for (int64_t r = 0; r < B * n; ++r) {
    Sample& s = out[r];
    s.prompt_index = r / n;
    s.sample_index = r % n;
    s.completion_ids = std::move(rows[r].ids);
    s.logprobs = std::move(rows[r].logprobs);
    s.finish_reason = rows[r].finish_reason;
    s.timings.prefill_seconds = stats_.prefill_seconds;
    s.timings.decode_seconds = rows[r].decode_seconds;
  }
  return out;
}

}  // namespace scorch

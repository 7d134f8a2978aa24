// GenerationEngine: prefill, group expansion, the decode loop with stop rules and compaction.
// The design is described in engine.h; the KV cache layout in model/kv_cache.h.
#include "rollout/engine.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <set>

#include "common/error.h"
#include "model/kv_cache.h"
#include "model/transformer.h"
#include "rollout/static_decoder.h"
#include "tokenizer/tokenizer.h"

namespace scorch {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

bool contains(const std::vector<int64_t>& v, int64_t x) { return std::find(v.begin(), v.end(), x) != v.end(); }

// Stop-string matcher over a row's generated tokens. Decoding the whole completion every step would
// be quadratic; a stop string of S bytes lies within the last S + 2 tokens once it is complete
// (every non-control token decodes to at least one byte; +2 covers a byte-fallback character cut
// at the window's start), so only that tail is decoded. A match must end in the newest token:
// any earlier one would have stopped the row at an earlier step.
class StopStringMatcher {
 public:
  StopStringMatcher(const Tokenizer* tokenizer, const std::vector<std::string>& stops) : tokenizer_(tokenizer), stops_(stops) {
    for (const auto& s : stops_) window_ = std::max<int64_t>(window_, static_cast<int64_t>(s.size()) + 2);
  }
  bool active() const { return !stops_.empty(); }
  bool matches(const std::vector<int64_t>& ids) const {
    const int64_t n = static_cast<int64_t>(ids.size());
    const int64_t from = std::max<int64_t>(0, n - window_);
    const std::string tail = tokenizer_->decode(std::vector<int64_t>(ids.begin() + from, ids.end()));
    for (const auto& s : stops_) {
      if (tail.find(s) != std::string::npos) return true;
    }
    return false;
  }

 private:
  const Tokenizer* tokenizer_;
  const std::vector<std::string>& stops_;
  int64_t window_ = 0;
};

}  // namespace

const char* finish_reason_name(FinishReason reason) {
  switch (reason) {
    case FinishReason::kEos: return "eos";
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
  }
  return "unknown";
}

GenerationEngine::GenerationEngine(const Transformer& model, const Tokenizer* tokenizer, EngineOptions options)
    : model_(model), tokenizer_(tokenizer), options_(std::move(options)) {
  // The same checks for `generate`/`eval` flags and a config's generation.* keys: an option that
  // cannot take effect is an error, never silently dropped.
  if (options_.decode_steps == DecodeSteps::kCudaGraph && !model.device().is_cuda()) {
    throw UserError("decode steps `cuda_graph` need a CUDA device, and the model is on the CPU: use `auto`, "
                    "`dynamic` or `static`");
  }
  if (options_.fused_decode_attention && !static_decode_steps()) {
    throw UserError(std::string("fused decode attention runs inside static decode steps, and decode steps `") +
                    decode_steps_name(options_.decode_steps) + "` are dynamic" +
                    (options_.decode_steps == DecodeSteps::kAuto ? " on the CPU" : "") +
                    ": use decode steps `static` (or `cuda_graph` on CUDA), or turn fused decode attention off");
  }
  std::set<int64_t> eos(model.config().eos_token_ids.begin(), model.config().eos_token_ids.end());
  if (tokenizer_ && tokenizer_->eos_id() >= 0) eos.insert(tokenizer_->eos_id());
  eos.insert(options_.extra_eos_ids.begin(), options_.extra_eos_ids.end());
  for (int64_t id : eos) {
    if (id >= 0) eos_ids_.push_back(id);
  }
}

DecodeSteps parse_decode_steps(const std::string& name) {
  if (name == "auto") return DecodeSteps::kAuto;
  if (name == "dynamic") return DecodeSteps::kDynamic;
  if (name == "static") return DecodeSteps::kStatic;
  if (name == "cuda_graph") return DecodeSteps::kCudaGraph;
  throw UserError("decode steps must be auto, dynamic, static or cuda_graph, got '" + name + "'");
}

const char* decode_steps_name(DecodeSteps steps) {
  switch (steps) {
    case DecodeSteps::kAuto: return "auto";
    case DecodeSteps::kDynamic: return "dynamic";
    case DecodeSteps::kStatic: return "static";
    case DecodeSteps::kCudaGraph: return "cuda_graph";
  }
  return "unknown";
}

int64_t GenerationEngine::context_length() const { return model_.config().context_length(); }

int64_t GenerationEngine::cache_slots(int64_t needed) const {
  // Static steps attend over every slot, and CUDA's memory-efficient attention pads a mask whose
  // rows are not a multiple of 16 elements on every call: round up (at most 15 idle slots).
  return static_decode_steps() ? (needed + 15) / 16 * 16 : needed;
}

bool GenerationEngine::static_decode_steps() const {
  switch (options_.decode_steps) {
    case DecodeSteps::kAuto: return model_.device().is_cuda();
    case DecodeSteps::kDynamic: return false;
    case DecodeSteps::kStatic:
    case DecodeSteps::kCudaGraph: return true;
  }
  return false;
}

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

void GenerationEngine::decode(KvCache& cache, at::Tensor next_logits, std::vector<DecodeRow>& rows,
                              const SamplingParams& params, at::Generator& generator, bool compact,
                              const std::vector<int64_t>& extra_eos, GenerationStats& stats) const {
  const int64_t R0 = static_cast<int64_t>(rows.size());
  if (R0 != cache.batch() || next_logits.size(0) != R0) {
    throw std::invalid_argument("GenerationEngine::decode: rows, cache and logits disagree on the batch");
  }
  const StopStringMatcher stop_strings(tokenizer_, params.stop_strings);
  if (stop_strings.active() && !tokenizer_) {
    throw UserError("sampling: stop strings need a tokenizer to decode text (give the engine one)");
  }
  std::vector<int64_t> eos = eos_ids_;
  eos.insert(eos.end(), extra_eos.begin(), extra_eos.end());
  const auto dev = model_.device();
  const auto long_opts = at::TensorOptions().dtype(at::kLong).device(dev);
  const int64_t vocab = model_.config().vocab_size;

  int64_t max_steps = 0;
  for (const auto& r : rows) max_steps = std::max(max_steps, r.budget);
  // Sampling log-probs stay on the device until the end: [R0, max_steps], column = step.
  at::Tensor logprob_buffer = at::zeros({R0, std::max<int64_t>(max_steps, 1)}, next_logits.options().dtype(at::kFloat));

  // live[i] = the original row index of cache row i (changes with compaction).
  std::vector<int64_t> live(R0);
  for (int64_t i = 0; i < R0; ++i) live[i] = i;
  at::Tensor live_dev = at::arange(R0, long_opts);
  int64_t finished_count = 0;
  for (auto& r : rows) {
    if (r.budget <= 0) {  // no room at all (context full): nothing to generate
      r.finished = true;
      r.finish_reason = FinishReason::kLength;
      ++finished_count;
    }
  }

  std::unique_ptr<StaticDecoder> static_decoder;
  if (static_decode_steps()) {
    static_decoder = std::make_unique<StaticDecoder>(model_, options_.decode_steps != DecodeSteps::kStatic,
                                                     options_.fused_decode_attention);
  }
  // On CPU the lm_head matmul of a decode step ([R, hidden] x [hidden, V], small R) is 1.2-4x
  // faster against a contiguous [hidden, V] copy of the weight than through at::linear's transposed
  // view, where MKL repacks the whole V x hidden matrix every call (measured at V = 32000, 1 thread:
  // 5.9 vs 1.4 ms at R = 1, 22 vs 18 ms at R = 32). The copy is made once per decode() call, so it
  // follows weights that change between calls (training). CUDA keeps at::linear (cuBLAS needs no
  // repacking, and a copy would cost V x hidden of device memory).
  const at::Tensor head_t = dev.is_cpu() && !static_decoder ? model_.lm_head_weight().t().contiguous() : at::Tensor();
  const auto next_token_logits = [&](const at::Tensor& h) {  // h [R, hidden] -> [R, V] in the model's dtype
    return head_t.defined() ? model_.cap_logits(at::mm(h, head_t)) : model_.logits(h);
  };

  // Step profile (EngineOptions::profile_steps): a copy to the host waits for the device's queue.
  const bool profile = options_.profile_steps;
  const at::Tensor probe = profile ? at::empty({1}, at::TensorOptions().device(dev)) : at::Tensor();
  auto mark = Clock::now();
  const auto lap = [&](double& total) {
    if (!profile) return;
    probe.cpu();
    const auto now = Clock::now();
    total += std::chrono::duration<double>(now - mark).count();
    mark = now;
  };

  // Lookahead (EngineOptions::lookahead): the next static step is queued on the device before the
  // host has read this step's tokens (they go to the host by an asynchronous copy that waits for
  // sampling alone), so the host's stop rules overlap the device's next step instead of leaving it
  // idle. A row that finishes takes part in one more step than it needs, whose token is dropped;
  // masks and compaction decided on this step's tokens apply from the step after the queued one
  // (compaction selects the queued step's logits of the rows kept). Only where finished rows are
  // not needed afterwards (compact: generate(), not episodes, whose cache rows carry on) and not
  // while profiling steps (whose waits would serialise it anyway).
  const bool lookahead = static_decoder && compact && options_.lookahead && !profile;
  AsyncHostCopy host_tokens;

  const auto t0 = Clock::now();
  mark = t0;
  at::Tensor logits = next_logits;
  at::Tensor token_mask;  // [R, 1] bool when some rows sit out, else undefined
  bool rows_changed = finished_count > 0;  // rows finished since the cache was last compacted / masked
  for (int64_t step = 0; finished_count < R0 && step < max_steps; ++step) {
    const SampledTokens s = sample_next_tokens(logits, params, generator);  // [R], [R]
    logprob_buffer.select(1, step).index_copy_(0, live_dev, s.logprobs);
    lap(stats.step_sample_seconds);
    host_tokens.start(s.tokens);
    at::Tensor ahead;  // [R, V]: the next step's logits, queued before this step's tokens are read
    if (lookahead && step + 1 < max_steps) {
      ahead = static_decoder->step(cache, s.tokens, token_mask);
      stats.static_steps += 1;
      stats.decode_steps += 1;
    }
    const at::Tensor& tokens_host = host_tokens.wait();  // the per-step synchronisation
    const int64_t* tok = tokens_host.data_ptr<int64_t>();
    const int64_t R = static_cast<int64_t>(live.size());
    stats.row_steps += R;
    for (int64_t i = 0; i < R; ++i) {
      DecodeRow& row = rows[live[i]];
      if (row.finished) continue;  // sitting out
      if (tok[i] < 0 || tok[i] >= vocab) {
        throw NonFiniteStop("generation: decode step " + std::to_string(step) + " drew no valid token for sample " +
                            std::to_string(live[i]) + " (its logits are NaN, +inf or all -inf): the model's weights or " +
                            "activations are not finite");
      }
      row.ids.push_back(tok[i]);
      if (contains(eos, tok[i])) {
        row.finished = true;
        row.finish_reason = FinishReason::kEos;
      } else if (contains(params.stop_token_ids, tok[i]) || (stop_strings.active() && stop_strings.matches(row.ids))) {
        row.finished = true;
        row.finish_reason = FinishReason::kStop;
      } else if (static_cast<int64_t>(row.ids.size()) >= row.budget) {
        row.finished = true;
        row.finish_reason = FinishReason::kLength;
      }
      if (row.finished) {
        row.decode_seconds = seconds_since(t0);
        ++finished_count;
        rows_changed = true;
      }
    }
    if (finished_count == R0) break;

    at::Tensor next = s.tokens;  // [R]
    std::optional<at::Tensor> mask;
    bool compact_now = rows_changed && compact;
    if (compact_now && static_decoder) {  // compact a static-step batch once at most half of it runs
      int64_t running = 0;
      for (int64_t i = 0; i < R; ++i) running += rows[live[i]].finished ? 0 : 1;
      compact_now = 2 * running <= R;
    }
    if (compact_now) {
      std::vector<int64_t> keep, keep_live;
      for (int64_t i = 0; i < R; ++i) {
        if (!rows[live[i]].finished) {
          keep.push_back(i);
          keep_live.push_back(live[i]);
        }
      }
      const at::Tensor keep_host = at::tensor(keep, at::kLong);
      const at::Tensor keep_dev = to_device_async(keep_host, dev);
      cache.keep_rows(keep_host);  // checked on the host
      if (ahead.defined()) {
        ahead = ahead.index_select(0, keep_dev);
      } else {
        next = next.index_select(0, keep_dev);
      }
      live = std::move(keep_live);
      live_dev = to_device_async(at::tensor(live, at::kLong), dev);
      token_mask = at::Tensor();  // every row left runs
      stats.compactions += 1;
    } else if (!compact || static_decoder) {
      if (rows_changed) {  // masking: finished rows write an invalid slot from now on
        at::Tensor m = at::empty({R, 1}, at::kBool);
        auto ma = m.accessor<bool, 2>();
        for (int64_t i = 0; i < R; ++i) ma[i][0] = !rows[live[i]].finished;
        token_mask = to_device_async(m, dev);
      }
      if (token_mask.defined()) mask = token_mask;
    }
    rows_changed = false;
    lap(stats.step_host_seconds);
    if (ahead.defined()) {
      logits = ahead;
    } else if (static_decoder) {
      logits = static_decoder->step(cache, next, token_mask);  // [R, V]
      stats.static_steps += 1;
    } else {
      const at::Tensor positions = cache.next_positions(1, mask);
      const at::Tensor hidden = model_.forward(next.view({-1, 1}), positions, mask, &cache);  // [R, 1, hidden]
      logits = next_token_logits(hidden.select(1, 0));                                        // [R, V]
    }
    if (!ahead.defined()) stats.decode_steps += 1;
    lap(stats.step_forward_seconds);
  }
  lap(stats.step_host_seconds);  // the last step's host part (it ended the loop)
  stats.decode_seconds += seconds_since(t0);
  if (static_decoder) {
    stats.graph_captures += static_decoder->captures();
    stats.graph_replays += static_decoder->replays();
  }

  const at::Tensor lp_host = logprob_buffer.to(at::kCPU);
  const auto lp = lp_host.accessor<float, 2>();
  for (int64_t r = 0; r < R0; ++r) {
    DecodeRow& row = rows[r];
    row.logprobs.resize(row.ids.size());
    for (size_t t = 0; t < row.ids.size(); ++t) row.logprobs[t] = lp[r][static_cast<int64_t>(t)];
    if (!row.finished) {  // cannot happen (budget <= max_steps), kept for safety
      row.finished = true;
      row.finish_reason = FinishReason::kLength;
    }
    stats.generated_tokens += static_cast<int64_t>(row.ids.size());
  }
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
  KvCache cache = KvCache::for_model(model_.config(), B, cache_slots(longest + max_new), model_.dtype(), model_.device());
  at::Generator generator = make_sampling_generator(params.seed, model_.device());

  const auto t0 = Clock::now();
  at::Tensor logits = append_tokens(cache, prompts);  // [B, V]
  if (n > 1) {
    cache.repeat_rows(n);
    logits = logits.repeat_interleave(n, 0);  // [B * n, V]
  }
  stats_.prefill_seconds = seconds_since(t0);
  for (const auto& p : prompts) stats_.prompt_tokens += static_cast<int64_t>(p.size());

  std::vector<DecodeRow> rows(B * n);
  for (int64_t r = 0; r < B * n; ++r) {
    rows[r].budget = std::min(params.max_new_tokens, ctx - static_cast<int64_t>(prompts[r / n].size()));
  }
  decode(cache, logits, rows, params, generator, options_.compact, {}, stats_);

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

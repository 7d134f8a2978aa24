// GenerationEngine: batched sampling from a Transformer with a preallocated KV cache — the part of
// RL that takes most of the wall time (DESIGN.md "The walk of one GRPO step").
//
// One generate() call:
//   1. prefill: the B prompts, LEFT-padded to the longest, in one forward with a token mask (pad
//      slots are invalid in the cache, RoPE positions count real tokens only, so every row computes
//      exactly what it would alone); only the last position goes through the LM head.
//   2. repeat_rows(n): each prompt's KV is copied to its n sample rows (prefilled once per prompt).
//   3. decode: one token per row per step. After each step the new tokens come to the host (the one
//      synchronisation per step) for the stop rules (stop_rules.h); log-probs stay on the device
//      until the end. Finished rows leave the batch by the compaction policy (compaction.h):
//      dropped from the cache with keep_rows so they stop costing compute, or sitting out with a
//      false token mask (EngineOptions::compact = false: same results; the benchmark measures the
//      difference).
// Greedy output does not depend on which other prompts share the batch (up to floating-point
// reassociation in batched matmuls).
//
// Decode steps come in kinds (EngineOptions::decode_steps, decode_step.h). Dynamic steps (the
// default on CPU) attend over the slots used so far and compact the cache as soon as a row
// finishes. Static steps (the default on CUDA: rollout/static_decoder.h) have fixed shapes —
// attention over the whole cache, inputs in fixed buffers — so each step is replayed from a CUDA
// graph with one launch; a static-step batch is compacted only once at most half of its rows still
// run (each compaction reallocates the cache and costs a new capture), finished rows sit out masked
// until then.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include "config/options.h"
#include "rollout/sampling.h"
#include "rollout/stop_rules.h"

namespace scorch {

class Transformer;
class Tokenizer;
class KvCache;

struct SampleTimings {
  double prefill_seconds = 0;  // the batch's prefill (shared by all samples of the call)
  double decode_seconds = 0;   // from the first decode step until this sample finished
};

struct Sample {
  int64_t prompt_index = 0;             // index into the prompts given to generate()
  int64_t sample_index = 0;             // 0 .. n-1
  std::vector<int64_t> completion_ids;  // generated ids, the final EOS / stop id included; with a stop
                                        // string, up to and including the token that completed it
  std::vector<float> logprobs;          // [completion_ids] sampling log-probs (sampling.h)
  FinishReason finish_reason = FinishReason::kLength;
  SampleTimings timings;
};

struct EngineOptions {
  // Drop finished rows from the batch (true) or let them sit out masked (false).
  bool compact = true;
  DecodeSteps decode_steps = DecodeSteps::kAuto;
  // End-of-sequence ids in addition to the model config's eos_token_ids and the tokenizer's EOS.
  std::vector<int64_t> extra_eos_ids;
  // Benchmarks: wait for the device after each part of a decode step and time the parts
  // (GenerationStats' step_*_seconds). The waits cost time and serialise host and device: the
  // parts say where a step goes, the totals are then slower than without.
  bool profile_steps = false;
  // Static steps: each layer's RoPE, cache write and attention in one kernel (kernels'
  // decode_attention) instead of rope_kv_write + SDPA + a copy. The same ops on the CPU; on CUDA
  // scorch's own kernel, off until tools/gpu/check.sh has checked and measured it on a GPU
  // (bench_generate --fused-attention; run.py prints both).
  bool fused_decode_attention = false;
  // Static steps of generate(): queue the next step before the host reads this step's tokens, so
  // the host's per-step work overlaps the device's (engine.cpp, decode_rows()). The same tokens; a row
  // that finishes costs one extra step of compute, and the last step of a call may be wasted.
  bool lookahead = true;
  // How refusals name decode_steps and fused_decode_attention: the CLI's flags (`--decode-steps`,
  // `--fused-decode-attention`) or the config's keys (generation.decode_steps, ...).
  bool settings_from_cli = false;
};

// Totals of the last generate() / episode call (benchmarks and logs).
struct GenerationStats {
  double prefill_seconds = 0, decode_seconds = 0;
  int64_t prompt_tokens = 0;      // real (unpadded) prompt tokens prefilled
  int64_t generated_tokens = 0;   // tokens in the returned samples
  int64_t decode_steps = 0;       // forward passes of the decode loop
  int64_t row_steps = 0;          // sum over decode steps of the rows in the batch (compute spent)
  int64_t compactions = 0;
  int64_t static_steps = 0;       // decode steps taken with static shapes (static_decoder.h)
  int64_t graph_captures = 0;     // CUDA graphs captured
  int64_t graph_replays = 0;      // decode steps served by a graph replay
  // With EngineOptions::profile_steps (else 0), summed over the decode steps: the model's step
  // (graph replay or eager forward, logits included), sampling (draw + log-probs), and the host's
  // part (the tokens' copy to the host, stop rules, compaction / masks, the next step's inputs).
  double step_forward_seconds = 0, step_sample_seconds = 0, step_host_seconds = 0;
};

class GenerationEngine {
 public:
  // `tokenizer` (may be null) decodes text for stop strings and adds its EOS id. Keeps references:
  // the model and tokenizer must outlive the engine.
  GenerationEngine(const Transformer& model, const Tokenizer* tokenizer = nullptr, EngineOptions options = {});

  // Samples params.n completions for every prompt; returns them ordered by (prompt_index, sample_index).
  // UserError for invalid params or prompts (sampling.h), or stop strings without a tokenizer.
  std::vector<Sample> generate(const std::vector<std::vector<int64_t>>& prompts, const SamplingParams& params);

  const GenerationStats& last_stats() const { return stats_; }
  const std::vector<int64_t>& eos_ids() const { return eos_ids_; }
  const Transformer& model() const { return model_; }
  const Tokenizer* tokenizer() const { return tokenizer_; }
  const EngineOptions& options() const { return options_; }
  // The model's context length (ModelConfig::context_length()).
  int64_t context_length() const;
  // Whether decoding takes static-shape steps (options and the model's device).
  bool static_decode_steps() const;

  // Appends each row's `tokens` (rows may differ in length; an empty list = the row sits this step
  // out) to `cache`, left-padded, in one forward; returns the next-token logits [R, V] fp32 of every
  // row (garbage for rows that sat out).
  at::Tensor append_tokens(KvCache& cache, const std::vector<std::vector<int64_t>>& tokens) const;

 private:
  const Transformer& model_;
  const Tokenizer* tokenizer_;
  EngineOptions options_;
  std::vector<int64_t> eos_ids_;
  GenerationStats stats_;

  friend void set_last_stats(GenerationEngine& engine, const GenerationStats& stats);  // engine_internal.h
};

}  // namespace scorch

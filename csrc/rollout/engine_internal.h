// What GenerationEngine::generate() shares with the episode runner (episode.cpp) and no caller
// outside rollout/ needs: the decode loop over rows of a KV cache, the cache's size, the stats.
#pragma once
#include <cstdint>
#include <vector>

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include "rollout/engine.h"

namespace scorch {

class KvCache;

// One sequence being decoded.
struct DecodeRow {
  std::vector<int64_t> ids;       // tokens generated in this decode
  std::vector<float> logprobs;
  int64_t budget = 0;             // most tokens this row may generate
  bool finished = false;
  FinishReason finish_reason = FinishReason::kLength;
  double decode_seconds = 0;
};

// Decodes rows[i] = cache row i from `next_logits` [R, V] until every row finishes (stop_rules.h:
// the engine's eos ids + `extra_eos`, stop ids, stop strings, budget). With compact = true finished
// rows are dropped from the cache (do that only when the cache is not needed afterwards); otherwise
// the cache keeps all R rows in order and finished rows sit out (compaction.h). Each row's LAST
// sampled token is not written to the cache (nothing needs its KV unless the sequence continues:
// the caller appends it first). Adds to `stats`.
void decode_rows(const GenerationEngine& engine, KvCache& cache, const at::Tensor& next_logits,
                 std::vector<DecodeRow>& rows, const SamplingParams& params, at::Generator& generator, bool compact,
                 const std::vector<int64_t>& extra_eos, GenerationStats& stats);

// KV-cache slots to allocate for `needed` (rounded up for static steps).
int64_t cache_slots(const GenerationEngine& engine, int64_t needed);

// Makes `stats` the engine's last_stats() (the episode runner's totals).
void set_last_stats(GenerationEngine& engine, const GenerationStats& stats);

}  // namespace scorch

// CompactionPolicy: when and how rows that finished leave a decode batch.
//
// Each cache row is one sequence still in the batch; live() maps cache rows to the decode's rows.
// After a step's stop rules, update() either
//   - compacts: drops the finished rows from the KV cache (KvCache::keep_rows) so they stop costing
//     compute, and renumbers live(); or
//   - masks: keeps every row in the cache in order, finished rows sit out with a false token mask
//     (they write an invalid slot from then on, and nothing attends to it).
// When:
//   compact = false (episodes, whose cache rows carry on to the next turn): always mask.
//   dynamic steps: compact as soon as a row finishes (the next step attends over fewer rows).
//   static steps: attention covers every row either way and each compaction reallocates the cache
//     (and costs a new CUDA graph capture), so compact only once at most half the rows still run,
//     and mask until then. One batch of R rows compacts at most log2(R) + 1 times.
#pragma once
#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

namespace scorch {

class KvCache;
struct DecodeRow;
struct GenerationStats;

class CompactionPolicy {
 public:
  // `rows` cache rows = the decode's rows 0 .. rows-1; static_steps: DecodeStep::static_shapes().
  CompactionPolicy(int64_t rows, bool compact, bool static_steps, const c10::Device& device);

  const std::vector<int64_t>& live() const { return live_; }  // live[i] = the decode's row in cache row i
  const at::Tensor& live_device() const { return live_dev_; }  // live() [R] int64 on the device
  // [R, 1] bool on the device, false = the row sits out; undefined while every row runs.
  const at::Tensor& token_mask() const { return token_mask_; }

  void row_finished() { rows_changed_ = true; }  // a row finished since the last update()
  // Compacts `cache` or updates the mask for the rows finished since the last call (rows[live[i]]
  // describes cache row i). Returns the cache rows kept [R'] int64 on the device when it compacted
  // (select the step's next inputs with them), else undefined.
  at::Tensor update(KvCache& cache, const std::vector<DecodeRow>& rows, GenerationStats& stats);

 private:
  bool compact_, static_steps_;
  c10::Device device_;
  std::vector<int64_t> live_;
  at::Tensor live_dev_;
  at::Tensor token_mask_;
  bool rows_changed_ = false;
};

}  // namespace scorch

// Micro-batches of SFT samples as flat row-major [B, T] arrays (no torch here: the trainer wraps
// them with at::from_blob / at::tensor). Two layouts:
//   padded  one sample per row, right-padded to the longest sample of the micro-batch;
//   packed  several samples per row (in order, greedily filled up to row_length), positions reset
//           per sample and a segment id per token, so the model can build a block-diagonal causal
//           mask (token i may attend to j iff segment_ids match and j <= i) and no attention or
//           loss crosses a sample boundary (ALGORITHMS.md §1).
// Targets are already shifted: logits at [b, t] predict targets[b, t] = input_ids[b, t + 1], and
// loss_mask[b, t] says whether that prediction is trained (a target token of the same sample).
#pragma once
#include <cstdint>
#include <vector>

#include "data/sft_example.h"

namespace scorch::data {

struct Batch {
  int64_t rows = 0;                  // B
  int64_t length = 0;                // T
  std::vector<int64_t> input_ids;    // [B, T]; padding = pad_id
  std::vector<int64_t> positions;    // [B, T]; 0, 1, ... within each sample; 0 on padding
  std::vector<int64_t> segment_ids;  // [B, T]; 0, 1, ... per sample within its row; -1 on padding
  std::vector<int64_t> targets;      // [B, T]; input_ids shifted left by one; pad_id where none
  std::vector<uint8_t> loss_mask;    // [B, T]; 1 where targets[b, t] is a trained token
  int64_t num_samples = 0;
  int64_t num_target_tokens = 0;     // sum of loss_mask: the SFT loss normaliser's share

  int64_t at(int64_t b, int64_t t) const { return b * length + t; }  // flat index
};

// One sample per row. `samples` must be non-empty.
Batch pad_batch(const std::vector<const SftExample*>& samples, int64_t pad_id);

// Which samples share a row: greedy in order, a new row when the next sample does not fit in
// row_length. Throws std::invalid_argument for a sample longer than row_length (truncation to
// data.max_length <= row_length prevents it).
std::vector<std::vector<int64_t>> plan_packing(const std::vector<int64_t>& lengths, int64_t row_length);

// Packed rows of at most row_length tokens; T = the longest row.
Batch pack_batch(const std::vector<const SftExample*>& samples, int64_t row_length, int64_t pad_id);

}  // namespace scorch::data

// Padded and packed micro-batches (see batch.h for the layout and the shifted-target convention).
#include "data/batch.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace scorch::data {
namespace {

Batch empty_batch(int64_t rows, int64_t length, int64_t pad_id) {
  Batch b;
  b.rows = rows;
  b.length = length;
  const size_t n = static_cast<size_t>(rows * length);
  b.input_ids.assign(n, pad_id);
  b.positions.assign(n, 0);
  b.segment_ids.assign(n, -1);
  b.targets.assign(n, pad_id);
  b.loss_mask.assign(n, 0);
  return b;
}

// Writes `ex` into row `row` from column `offset` as segment `segment`.
void place(Batch& b, const SftExample& ex, int64_t row, int64_t offset, int64_t segment) {
  const int64_t n = static_cast<int64_t>(ex.input_ids.size());
  for (int64_t t = 0; t < n; ++t) {
    const int64_t i = b.at(row, offset + t);
    b.input_ids[i] = ex.input_ids[t];
    b.positions[i] = t;
    b.segment_ids[i] = segment;
    if (t + 1 < n) {
      b.targets[i] = ex.input_ids[t + 1];
      b.loss_mask[i] = ex.loss_mask[t + 1];
      b.num_target_tokens += ex.loss_mask[t + 1];
    }
  }
  ++b.num_samples;
}

}  // namespace

Batch pad_batch(const std::vector<const SftExample*>& samples, int64_t pad_id) {
  if (samples.empty()) throw std::invalid_argument("pad_batch: no samples");
  int64_t longest = 0;
  for (const SftExample* ex : samples) longest = std::max<int64_t>(longest, ex->input_ids.size());
  Batch b = empty_batch(static_cast<int64_t>(samples.size()), longest, pad_id);
  for (size_t r = 0; r < samples.size(); ++r) place(b, *samples[r], static_cast<int64_t>(r), 0, 0);
  return b;
}

std::vector<std::vector<int64_t>> plan_packing(const std::vector<int64_t>& lengths, int64_t row_length) {
  std::vector<std::vector<int64_t>> rows;
  int64_t used = 0;
  for (size_t i = 0; i < lengths.size(); ++i) {
    if (lengths[i] > row_length) {
      throw std::invalid_argument("plan_packing: sample of " + std::to_string(lengths[i]) +
                                  " tokens does not fit a row of " + std::to_string(row_length));
    }
    if (rows.empty() || used + lengths[i] > row_length) {
      rows.emplace_back();
      used = 0;
    }
    rows.back().push_back(static_cast<int64_t>(i));
    used += lengths[i];
  }
  return rows;
}

Batch pack_batch(const std::vector<const SftExample*>& samples, int64_t row_length, int64_t pad_id) {
  if (samples.empty()) throw std::invalid_argument("pack_batch: no samples");
  std::vector<int64_t> lengths;
  for (const SftExample* ex : samples) lengths.push_back(static_cast<int64_t>(ex->input_ids.size()));
  const auto plan = plan_packing(lengths, row_length);
  int64_t longest = 0;
  for (const auto& row : plan) {
    int64_t used = 0;
    for (int64_t i : row) used += lengths[i];
    longest = std::max(longest, used);
  }
  Batch b = empty_batch(static_cast<int64_t>(plan.size()), longest, pad_id);
  for (size_t r = 0; r < plan.size(); ++r) {
    int64_t offset = 0;
    for (size_t s = 0; s < plan[r].size(); ++s) {
      const SftExample& ex = *samples[plan[r][s]];
      place(b, ex, static_cast<int64_t>(r), offset, static_cast<int64_t>(s));
      offset += static_cast<int64_t>(ex.input_ids.size());
    }
  }
  return b;
}

}  // namespace scorch::data

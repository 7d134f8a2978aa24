// CompactionPolicy (compaction.h).
#include "rollout/compaction.h"

#include <ATen/ATen.h>

#include "model/kv_cache.h"
#include "rollout/engine.h"
#include "rollout/engine_internal.h"

namespace scorch {

CompactionPolicy::CompactionPolicy(int64_t rows, bool compact, bool static_steps, const c10::Device& device)
    : compact_(compact), static_steps_(static_steps), device_(device), live_(rows),
      live_dev_(at::arange(rows, at::TensorOptions().dtype(at::kLong).device(device))) {
  for (int64_t i = 0; i < rows; ++i) live_[i] = i;
}

at::Tensor CompactionPolicy::update(KvCache& cache, const std::vector<DecodeRow>& rows, GenerationStats& stats) {
  if (!rows_changed_) return at::Tensor();
  rows_changed_ = false;
  const int64_t R = static_cast<int64_t>(live_.size());
  bool compact_now = compact_;
  if (compact_now && static_steps_) {
    int64_t running = 0;
    for (int64_t i = 0; i < R; ++i) running += rows[live_[i]].finished ? 0 : 1;
    compact_now = 2 * running <= R;
  }
  if (compact_now) {
    std::vector<int64_t> keep, keep_live;
    for (int64_t i = 0; i < R; ++i) {
      if (!rows[live_[i]].finished) {
        keep.push_back(i);
        keep_live.push_back(live_[i]);
      }
    }
    const at::Tensor keep_host = at::tensor(keep, at::kLong);
    const at::Tensor keep_dev = to_device_async(keep_host, device_);
    cache.keep_rows(keep_host);  // checked on the host
    live_ = std::move(keep_live);
    live_dev_ = to_device_async(at::tensor(live_, at::kLong), device_);
    token_mask_ = at::Tensor();  // every row left runs
    stats.compactions += 1;
    return keep_dev;
  }
  // Masking: finished rows write an invalid slot from now on.
  at::Tensor m = at::empty({R, 1}, at::kBool);
  auto ma = m.accessor<bool, 2>();
  for (int64_t i = 0; i < R; ++i) ma[i][0] = !rows[live_[i]].finished;
  token_mask_ = to_device_async(m, device_);
  return at::Tensor();
}

}  // namespace scorch

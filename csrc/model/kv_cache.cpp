// KvCache implementation; the design (shared slots + per-row validity) is described in kv_cache.h.
#include "model/kv_cache.h"

#include <ATen/ATen.h>

#include "common/error.h"
#include "model/device_memory.h"
#include "model/model_config.h"

namespace scorch {
namespace {
// Refuses, before allocating, a cache of `batch` rows that the device (or host) cannot hold.
void check_cache_memory(int64_t num_layers, int64_t batch, int64_t kv_heads, int64_t max_len, int64_t head_dim,
                        at::ScalarType dtype, at::Device device) {
  const double bytes = 2.0 * num_layers * batch * kv_heads * max_len * head_dim * c10::elementSize(dtype);
  check_memory(device, bytes, "the KV cache for " + std::to_string(batch) + " rows of " + std::to_string(max_len) + " tokens",
                    "generate fewer sequences at once (--n, --batch-size, or prompts per step × num_generations) "
                    "or fewer tokens (max_new_tokens / max_completion_length)");
}
}  // namespace

KvCache::KvCache(int64_t num_layers, int64_t batch, int64_t kv_heads, int64_t max_len, int64_t head_dim,
                 at::ScalarType dtype, at::Device device)
    : batch_(batch), max_len_(max_len) {
  if (num_layers < 1 || batch < 1 || kv_heads < 1 || max_len < 1 || head_dim < 1) {
    throw UserError("KvCache needs positive sizes (layers " + std::to_string(num_layers) + ", batch " +
                    std::to_string(batch) + ", max_len " + std::to_string(max_len) + ")");
  }
  check_cache_memory(num_layers, batch, kv_heads, max_len, head_dim, dtype, device);
  const auto opts = at::TensorOptions().dtype(dtype).device(device);
  for (int64_t l = 0; l < num_layers; ++l) {
    k_.push_back(at::zeros({batch, kv_heads, max_len, head_dim}, opts));
    v_.push_back(at::zeros({batch, kv_heads, max_len, head_dim}, opts));
  }
  valid_ = at::zeros({batch, max_len}, at::TensorOptions().dtype(at::kBool).device(device));
  lengths_ = at::zeros({batch}, at::TensorOptions().dtype(at::kLong).device(device));
  positions_ = at::zeros({batch, max_len}, lengths_.options());
}

KvCache KvCache::for_model(const ModelConfig& c, int64_t batch, int64_t max_len, at::ScalarType dtype,
                           at::Device device) {
  return KvCache(c.num_hidden_layers, batch, c.num_key_value_heads, max_len, c.head_dim, dtype, device);
}

at::Tensor KvCache::next_positions(int64_t steps, const std::optional<at::Tensor>& token_mask) const {
  at::Tensor real = token_mask ? token_mask->to(lengths_.device(), at::kLong)
                               : at::ones({batch_, steps}, lengths_.options());
  // Exclusive prefix count of real tokens within the step, offset by the row's length so far.
  return lengths_.unsqueeze(1) + real.cumsum(1) - real;
}

at::Tensor KvCache::begin_step(int64_t steps, const std::optional<at::Tensor>& token_mask) {
  if (pending_ >= 0) throw std::logic_error("KvCache::begin_step called twice without end_step");
  if (used_ + steps > max_len_) {
    throw UserError("KV cache overflow: " + std::to_string(used_) + " slots used + " + std::to_string(steps) +
                    " new tokens > max_len " + std::to_string(max_len_) + " (allocate a longer cache)");
  }
  const auto dev = valid_.device();
  at::Tensor real = token_mask ? token_mask->to(dev, at::kBool) : at::ones({batch_, steps}, valid_.options());
  if (real.dim() != 2 || real.size(0) != batch_ || real.size(1) != steps) {
    throw std::invalid_argument("KvCache: token_mask must be [B, T] bool matching input_ids");
  }
  valid_.narrow(1, used_, steps).copy_(real);
  positions_.narrow(1, used_, steps).copy_(next_positions(steps, real));
  pending_counts_ = real.sum(1).to(at::kLong);
  pending_ = steps;
  const int64_t total = used_ + steps;
  // key slot j visible to query slot s = used + t iff valid[b, j] && j <= s, or j == s.
  const at::Tensor q_slot = at::arange(used_, total, at::TensorOptions().dtype(at::kLong).device(dev)).view({steps, 1});
  const at::Tensor k_slot = at::arange(0, total, at::TensorOptions().dtype(at::kLong).device(dev)).view({1, total});
  const at::Tensor causal = k_slot.le(q_slot);  // [T, total]
  const at::Tensor self = k_slot.eq(q_slot);
  at::Tensor mask = valid_.narrow(1, 0, total).view({batch_, 1, 1, total}).logical_and(causal);
  return mask.logical_or(self);  // [B, 1, T, total]
}

std::pair<at::Tensor, at::Tensor> KvCache::write(int64_t layer, const at::Tensor& k, const at::Tensor& v) {
  if (pending_ < 0) throw std::logic_error("KvCache::write outside begin_step/end_step");
  k_[layer].narrow(2, used_, pending_).copy_(k);
  v_[layer].narrow(2, used_, pending_).copy_(v);
  return {k_[layer].narrow(2, 0, used_ + pending_), v_[layer].narrow(2, 0, used_ + pending_)};
}

void KvCache::end_step() {
  if (pending_ < 0) throw std::logic_error("KvCache::end_step without begin_step");
  used_ += pending_;
  lengths_.add_(pending_counts_);
  pending_ = -1;
}

KvCache::StaticStep KvCache::begin_static_step(const at::Tensor& slot, const at::Tensor& token_mask) {
  if (pending_ >= 0) throw std::logic_error("KvCache::begin_static_step inside a step");
  if (token_mask.dim() != 2 || token_mask.size(0) != batch_ || token_mask.size(1) != 1 || slot.numel() != 1) {
    throw std::invalid_argument("KvCache::begin_static_step: token_mask must be [B, 1] bool and slot [1] int64");
  }
  StaticStep step;
  step.positions = lengths_.unsqueeze(1).clone();  // before this step's tokens count
  valid_.index_copy_(1, slot, token_mask);
  positions_.index_copy_(1, slot, step.positions);
  lengths_.add_(token_mask.squeeze(1).to(at::kLong));
  const at::Tensor slots = at::arange(max_len_, lengths_.options());  // [max_len]
  step.attention_mask = valid_.view({batch_, 1, 1, max_len_}).logical_or(slots.eq(slot).view({1, 1, 1, max_len_}));
  return step;
}

std::pair<at::Tensor, at::Tensor> KvCache::write_at(int64_t layer, const at::Tensor& k, const at::Tensor& v,
                                                    const at::Tensor& slot) {
  k_[layer].index_copy_(2, slot, k);
  v_[layer].index_copy_(2, slot, v);
  return {k_[layer], v_[layer]};
}

void KvCache::advance_static_step() {
  if (used_ >= max_len_) throw std::logic_error("KvCache::advance_static_step past max_len (check free_slots() first)");
  used_ += 1;
}

void KvCache::reserve(int64_t max_len) {
  if (pending_ >= 0) throw std::logic_error("KvCache::reserve inside a step");
  if (max_len <= max_len_) return;
  const auto grow = [&](const at::Tensor& t, int64_t dim) {
    std::vector<int64_t> sizes = t.sizes().vec();
    sizes[dim] = max_len;
    at::Tensor bigger = at::zeros(sizes, t.options());
    bigger.narrow(dim, 0, used_).copy_(t.narrow(dim, 0, used_));
    return bigger;
  };
  for (auto& t : k_) t = grow(t, 2);
  for (auto& t : v_) t = grow(t, 2);
  valid_ = grow(valid_, 1);
  positions_ = grow(positions_, 1);
  max_len_ = max_len;
  ++version_;
}

void KvCache::index_select(const at::Tensor& rows) {
  if (pending_ >= 0) throw std::logic_error("KvCache row surgery inside a step");
  if (rows.dim() != 1 || rows.numel() == 0) throw std::invalid_argument("KvCache::index_select needs a non-empty 1-D index");
  // Checked where the index lives: an index on the host costs the device no synchronisation.
  const at::Tensor checked = rows.to(at::kLong);
  const int64_t lo = checked.min().item<int64_t>(), hi = checked.max().item<int64_t>();
  const at::Device dev = valid_.device();
  const at::Tensor idx = checked.is_cpu() ? to_device_async(checked, dev) : checked.to(dev);
  if (lo < 0 || hi >= batch_) {
    throw std::out_of_range("KvCache row index " + std::to_string(lo < 0 ? lo : hi) + " outside [0, " +
                            std::to_string(batch_) + ")");
  }
  for (auto& t : k_) t = t.index_select(0, idx);
  for (auto& t : v_) t = t.index_select(0, idx);
  valid_ = valid_.index_select(0, idx);
  positions_ = positions_.index_select(0, idx);
  lengths_ = lengths_.index_select(0, idx);
  batch_ = idx.size(0);
  ++version_;
}

void KvCache::repeat_rows(int64_t n) {
  if (n < 1) throw std::invalid_argument("KvCache::repeat_rows needs n >= 1");
  if (n == 1) return;
  // The rows a prompt's samples get are the bulk of a rollout's memory: checked before they exist.
  check_cache_memory(num_layers(), batch_ * n, k_[0].size(1), max_len_, k_[0].size(3), k_[0].scalar_type(),
                     valid_.device());
  index_select(at::arange(batch_, at::TensorOptions().dtype(at::kLong)).repeat_interleave(n));
}

void KvCache::keep_rows(const at::Tensor& rows) { index_select(rows); }

void KvCache::reset() {
  valid_.zero_();
  lengths_.zero_();
  positions_.zero_();
  used_ = 0;
  pending_ = -1;
}

at::Tensor to_device_async(const at::Tensor& host, const at::Device& dev) {
  if (dev.is_cpu()) return host;
  return host.pin_memory().to(dev, /*non_blocking=*/true);
}

}  // namespace scorch

// KvCache: preallocated keys/values for incremental decoding by the rollout engine.
//
// Design ("shared slots + per-row validity"): every layer holds k, v [B, kv_heads, max_len, head_dim].
// All rows write the same slot range in a step (a step with T new tokens fills slots
// [used, used + T) of every row, a plain slice copy), and `valid` [B, max_len] bool records which
// slots hold a real token of that row. Rows of different prompt lengths decode together by
// left-padding prompts (pad slots invalid); a row that sits a step out (finished, or no tokens in a
// new turn) passes token_mask = false for it. Attention in a step lets query slot s of row b see key
// slot j iff valid[b, j] and j <= s (plus s itself, so pad queries never see an empty row and
// never produce NaN). Position ids are per row and explicit: `lengths` [B] counts each row's real
// tokens, and next_positions() turns a token mask into the RoPE positions the model expects, so a
// row's positions are 0, 1, 2, ... over its real tokens whatever padding sits between them.
//
// Typical rollout: prefill the left-padded prompts once (B rows), repeat_rows(G) so each prompt's
// G samples share its KV, decode one token per step, keep_rows() to drop finished rows; a new turn is
// appended to a row by forwarding its tokens (token_mask marks which rows take part).
#pragma once
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

namespace scorch {

struct ModelConfig;

class KvCache {
 public:
  KvCache(int64_t num_layers, int64_t batch, int64_t kv_heads, int64_t max_len, int64_t head_dim,
          at::ScalarType dtype, at::Device device);
  // Sized for `config`: one layer per transformer layer.
  static KvCache for_model(const ModelConfig& config, int64_t batch, int64_t max_len, at::ScalarType dtype,
                           at::Device device);

  int64_t batch() const { return batch_; }
  int64_t max_len() const { return max_len_; }
  int64_t num_layers() const { return static_cast<int64_t>(k_.size()); }
  int64_t used() const { return used_; }                 // slots written so far (same for all rows)
  const at::Tensor& lengths() const { return lengths_; } // [B] int64: real tokens per row
  const at::Tensor& valid() const { return valid_; }     // [B, max_len] bool
  // [B, max_len] int64: the RoPE position of the token in each slot (meaningful where valid), for
  // sliding-window masks (a window counts positions, i.e. real tokens, not slots).
  const at::Tensor& slot_positions() const { return positions_; }
  const at::Tensor& keys(int64_t layer) const { return k_[layer]; }    // [B, kv_heads, max_len, head_dim]
  const at::Tensor& values(int64_t layer) const { return v_[layer]; }

  // RoPE positions for the next step's tokens: lengths[b] + (number of real tokens before t in the
  // step); pad tokens get the position of the next real token (any value is harmless for them).
  // token_mask [B, T] bool (true = real token), or nullopt for all real. Returns [B, T] int64.
  at::Tensor next_positions(int64_t steps, const std::optional<at::Tensor>& token_mask = std::nullopt) const;

  // Row surgery (all layers, lengths, validity): the new row i is the old row rows[i].
  void index_select(const at::Tensor& rows);        // rows [B'] int64 (repeats and reorders allowed)
  void repeat_rows(int64_t n);                      // row b becomes rows b*n .. b*n+n-1
  void keep_rows(const at::Tensor& rows);           // drop finished rows: keep these, in this order
  void reset();                                     // empty every row (no reallocation)

  // --- used by Transformer::forward ---
  // Starts a step of T tokens: marks their slots valid where token_mask is true, records their
  // positions (next_positions(T, token_mask)) and returns the attention mask [B, 1, T, used + T] bool
  // (true = attend). Throws UserError if max_len would overflow.
  at::Tensor begin_step(int64_t steps, const std::optional<at::Tensor>& token_mask);
  // Writes this step's k, v [B, kv_heads, T, head_dim] of `layer`; returns the keys and values of
  // slots [0, used + T) as views [B, kv_heads, used + T, head_dim].
  std::pair<at::Tensor, at::Tensor> write(int64_t layer, const at::Tensor& k, const at::Tensor& v);
  // Ends the step: `used` advances by T and lengths by the real tokens written.
  void end_step();

  // --- static-shape decode steps (Transformer::decode_step, captured in CUDA graphs) ---
  // The same bookkeeping as begin_step(1) / write / end_step, split so that everything a step does
  // on the device reads the slot from a device tensor (a graph replays it unchanged) and only the
  // host-side count moves outside: slot [1] int64 on the cache's device (= used()), token_mask
  // [B, 1] bool. Marks the slot valid where token_mask is true, records the slot's positions,
  // advances lengths, and returns the
  // step's RoPE positions [B, 1] (lengths before the step) and the attention mask over ALL max_len
  // slots [B, 1, 1, max_len] (valid slots, plus the slot itself; slots past used() are never valid).
  struct StaticStep {
    at::Tensor positions;       // [B, 1] int64
    at::Tensor attention_mask;  // [B, 1, 1, max_len] bool
  };
  StaticStep begin_static_step(const at::Tensor& slot, const at::Tensor& token_mask);
  // Writes k, v [B, kv_heads, 1, head_dim] of `layer` at `slot`; returns the full keys and values
  // [B, kv_heads, max_len, head_dim].
  std::pair<at::Tensor, at::Tensor> write_at(int64_t layer, const at::Tensor& k, const at::Tensor& v,
                                             const at::Tensor& slot);
  // After the step ran (or was replayed): `used` advances by one. Check free_slots() before the step.
  void advance_static_step();
  int64_t free_slots() const { return max_len_ - used_; }

  // Grows every row to `max_len` slots (a copy; no-op when the cache is already that long), e.g.
  // for an environment reply longer than was reserved.
  void reserve(int64_t max_len);
  // Changes whenever the cache's tensors are reallocated (row surgery, reserve): a CUDA graph
  // captured on the old tensors must be captured again.
  int64_t version() const { return version_; }

 private:
  std::vector<at::Tensor> k_, v_;
  at::Tensor valid_, lengths_, positions_;
  at::Tensor pending_counts_;  // [B] real tokens of the step in flight
  int64_t batch_, max_len_, used_ = 0, pending_ = -1, version_ = 0;
};

// A small host tensor (row indices, masks) on `dev` without waiting for the device: a pageable
// host-to-device copy waits for the whole stream (ATen synchronises it), which would stall a decode
// step already queued; from pinned memory the copy is queued like a kernel. On the CPU: `host`.
at::Tensor to_device_async(const at::Tensor& host, const at::Device& dev);

}  // namespace scorch

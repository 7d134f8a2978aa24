// StaticDecoder: the rollout engine's decode step with static shapes, replayed from a CUDA graph.
//
// Eager decoding launches a few hundred small kernels per token (per layer: two norms, seven
// projections, RoPE, attention, the MLP's activations); at the batch sizes of RL rollouts on a GPU
// the launch overhead, not the math, sets the pace. A CUDA graph records the whole step once and
// replays it with one launch. A graph fixes shapes and addresses, so this step
// (Transformer::decode_step) attends over all max_len slots of the cache (invalid ones masked)
// and reads its inputs — tokens, token mask, slot index — from buffers owned here. Sampling and the
// stop rules stay outside the graph: they need the host once per step anyway.
//
// Life cycle per cache shape: the first step after the cache's tensors changed (a new cache,
// compaction, reserve — KvCache::version()) runs eagerly on a side stream, which is also the
// warm-up a capture needs (cuBLAS workspaces, allocator pools); the next step is captured and
// every later one replays. The engine compacts a static-step batch only when at most half of its
// rows still run, so one generate() call captures at most log2(batch) + 1 graphs. On CPU (where it
// serves the tests) and with graphs off, the same static step runs eagerly every time. If a capture
// fails, the decoder prints one warning and continues eagerly with the same results.
#pragma once
#include <cstdint>
#include <memory>

#include <ATen/core/Tensor.h>

namespace scorch {

class Transformer;
class KvCache;

class StaticDecoder {
 public:
  // cuda_graph: capture and replay when the model is on CUDA (ignored on CPU). fused_attention:
  // Transformer::decode_step's fused_attention (kernels' decode_attention per layer).
  StaticDecoder(const Transformer& model, bool cuda_graph, bool fused_attention = false);
  ~StaticDecoder();
  StaticDecoder(const StaticDecoder&) = delete;
  StaticDecoder& operator=(const StaticDecoder&) = delete;

  // Appends `tokens` [R] int64 (R = cache.batch(), on the model's device) to `cache` and returns the
  // next-token logits [R, V] in the model's dtype. token_mask [R, 1] bool (false = the row sits
  // out) or undefined = every row takes part. The returned tensor is overwritten by the next call. UserError when the
  // cache has no free slot.
  at::Tensor step(KvCache& cache, const at::Tensor& tokens, const at::Tensor& token_mask);

  bool uses_cuda_graph() const { return use_graph_; }
  int64_t captures() const { return captures_; }  // graphs captured so far
  int64_t replays() const { return replays_; }    // steps served by a replay

 private:
  struct Graph;  // the CUDA side (static_decoder.cpp), absent from CPU-only builds
  at::Tensor run(KvCache& cache) const;  // one static step on the bound buffers
  void bind(KvCache& cache);             // (re)allocates the buffers for this cache, drops the graph
  at::Tensor run_and_capture(KvCache& cache);

  const Transformer& model_;
  bool use_graph_;
  bool fused_attention_;
  std::unique_ptr<Graph> graph_;
  at::Tensor tokens_, token_mask_, slot_;  // [R, 1] int64, [R, 1] bool, [1] int64
  at::Tensor logits_;                      // [R, V]: the captured graph's output
  const KvCache* bound_cache_ = nullptr;
  int64_t bound_version_ = -1;
  int64_t captures_ = 0, replays_ = 0;
};

// A device tensor's copy to the host that does not wait for the whole stream: start() queues the copy
// (into pinned memory, non-blocking) and records an event behind it; wait() waits for that event
// alone, so device work queued after start() -- the next decode step -- keeps running while the host
// reads the tokens. On the CPU start() keeps the tensor itself and wait() returns it.
class AsyncHostCopy {
 public:
  AsyncHostCopy();
  ~AsyncHostCopy();
  AsyncHostCopy(const AsyncHostCopy&) = delete;
  AsyncHostCopy& operator=(const AsyncHostCopy&) = delete;

  void start(const at::Tensor& t);
  const at::Tensor& wait();  // the host tensor; valid until the next start()

 private:
  struct Event;  // the CUDA event (static_decoder.cpp), absent from CPU-only builds
  std::unique_ptr<Event> event_;
  at::Tensor host_;
  bool pending_ = false;
};

}  // namespace scorch

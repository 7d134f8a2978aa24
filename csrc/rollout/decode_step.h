// DecodeStep: the model's part of one decode step, behind one seam so the decode loop (engine.cpp)
// reads the same for every kind of step (the option that picks one: config/options.h):
//   dynamic     eager forward attending over the cache slots used so far; the loop drops finished
//               rows from the batch at once (the CPU default)
//   static      fixed shapes (StaticDecoder: attention over the whole cache, inputs in fixed
//               buffers), eager
//   cuda_graph  the static step captured once per cache shape and replayed from a CUDA graph (the
//               CUDA default; on CPU the same as static)
// One is made per decode (make_decode_step); the loop calls step() once per token position.
#pragma once
#include <cstdint>
#include <memory>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "config/options.h"

namespace scorch {

class Transformer;
class KvCache;
struct GenerationStats;

class DecodeStep {
 public:
  virtual ~DecodeStep() = default;
  // Appends `tokens` [R] int64 (R = cache.batch(), on the model's device) to `cache` and returns the
  // next-token logits [R, V] in the model's dtype (a static step overwrites them on its next call).
  // token_mask [R, 1] bool: false = the row sits this step out; undefined = every row takes part.
  virtual at::Tensor step(KvCache& cache, const at::Tensor& tokens, const at::Tensor& token_mask) = 0;
  // Static shapes: every step attends over the whole cache, so dropping rows pays only in bulk
  // (compaction.h), and a step can be queued before the previous one's tokens are read (lookahead).
  virtual bool static_shapes() const = 0;
  // Adds the steps taken with static shapes and the CUDA graphs captured / replayed to `stats`.
  virtual void add_stats(GenerationStats& stats) const = 0;
};

// `steps` resolved for a model on `device`: kDynamic, kStatic or kCudaGraph (kAuto: CUDA graphs on
// CUDA, dynamic on the CPU).
DecodeSteps resolve_decode_steps(DecodeSteps steps, const c10::Device& device);

// A step of kind resolve_decode_steps(steps, model.device()). fused_attention: static kinds only
// (EngineOptions::fused_decode_attention).
std::unique_ptr<DecodeStep> make_decode_step(const Transformer& model, DecodeSteps steps, bool fused_attention);

}  // namespace scorch

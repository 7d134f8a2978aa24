// The decode step kinds (decode_step.h).
#include "rollout/decode_step.h"

#include <ATen/ATen.h>

#include "model/kv_cache.h"
#include "model/transformer.h"
#include "rollout/engine.h"
#include "rollout/static_decoder.h"

namespace scorch {
namespace {

class DynamicStep final : public DecodeStep {
 public:
  // On CPU the lm_head matmul of a decode step ([R, hidden] x [hidden, V], small R) is faster
  // against a contiguous [hidden, V] copy of the weight than through at::linear's transposed view,
  // where MKL repacks the whole V x hidden matrix every call (bench/RESULTS.md, the decode LM-head
  // entry). The copy is made once per decode (a step is made
  // per decode), so it follows weights that change between calls (training). CUDA keeps at::linear
  // (cuBLAS needs no repacking, and a copy would cost V x hidden of device memory).
  explicit DynamicStep(const Transformer& model)
      : model_(model), head_t_(model.device().is_cpu() ? model.lm_head_weight().t().contiguous() : at::Tensor()) {}

  at::Tensor step(KvCache& cache, const at::Tensor& tokens, const at::Tensor& token_mask) override {
    std::optional<at::Tensor> mask;
    if (token_mask.defined()) mask = token_mask;
    const at::Tensor positions = cache.next_positions(1, mask);
    const at::Tensor hidden = model_.forward(tokens.view({-1, 1}), positions, mask, &cache);  // [R, 1, hidden]
    const at::Tensor h = hidden.select(1, 0);                                                 // [R, hidden]
    return head_t_.defined() ? model_.cap_logits(at::mm(h, head_t_)) : model_.logits(h);     // [R, V]
  }
  bool static_shapes() const override { return false; }
  void add_stats(GenerationStats&) const override {}

 private:
  const Transformer& model_;
  at::Tensor head_t_;  // [hidden, V] on CPU, else undefined
};

// Static and CUDA-graph steps: StaticDecoder with graphs off or on.
class StaticStep final : public DecodeStep {
 public:
  StaticStep(const Transformer& model, bool cuda_graph, bool fused_attention)
      : decoder_(model, cuda_graph, fused_attention) {}

  at::Tensor step(KvCache& cache, const at::Tensor& tokens, const at::Tensor& token_mask) override {
    ++steps_;
    return decoder_.step(cache, tokens, token_mask);
  }
  bool static_shapes() const override { return true; }
  void add_stats(GenerationStats& stats) const override {
    stats.static_steps += steps_;
    stats.graph_captures += decoder_.captures();
    stats.graph_replays += decoder_.replays();
  }

 private:
  StaticDecoder decoder_;
  int64_t steps_ = 0;
};

}  // namespace

DecodeSteps resolve_decode_steps(DecodeSteps steps, const c10::Device& device) {
  if (steps == DecodeSteps::kAuto) return device.is_cuda() ? DecodeSteps::kCudaGraph : DecodeSteps::kDynamic;
  return steps;
}

std::unique_ptr<DecodeStep> make_decode_step(const Transformer& model, DecodeSteps steps, bool fused_attention) {
  switch (resolve_decode_steps(steps, model.device())) {
    case DecodeSteps::kDynamic: return std::make_unique<DynamicStep>(model);
    case DecodeSteps::kStatic: return std::make_unique<StaticStep>(model, /*cuda_graph=*/false, fused_attention);
    case DecodeSteps::kAuto:
    case DecodeSteps::kCudaGraph: break;
  }
  return std::make_unique<StaticStep>(model, /*cuda_graph=*/true, fused_attention);
}

}  // namespace scorch

// StaticDecoder: static-shape decode steps, captured in a CUDA graph on CUDA. Design in the header.
#include "rollout/static_decoder.h"

#include <ATen/ATen.h>

#include <atomic>
#include <stdexcept>
#include <string>

#include "common/error.h"
#include "common/log.h"
#include "model/kv_cache.h"
#include "model/transformer.h"

#if defined(SCORCH_WITH_CUDA)
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#endif

namespace scorch {
namespace {
// Once a capture has failed in this process, later decoders do not try again (and warn once).
std::atomic<bool> g_capture_failed{false};
}  // namespace

#if defined(SCORCH_WITH_CUDA)
struct StaticDecoder::Graph {
  at::cuda::CUDAGraph graph;
};
#else
struct StaticDecoder::Graph {};
#endif

StaticDecoder::StaticDecoder(const Transformer& model, bool cuda_graph, bool fused_attention)
    : model_(model),
      use_graph_(cuda_graph && model.device().is_cuda() && !g_capture_failed.load()),
      fused_attention_(fused_attention) {
#if !defined(SCORCH_WITH_CUDA)
  use_graph_ = false;
#endif
}

StaticDecoder::~StaticDecoder() = default;

void StaticDecoder::bind(KvCache& cache) {
  const int64_t R = cache.batch();
  const auto dev = model_.device();
  logits_ = at::Tensor();  // the old graph's output (its memory pool goes once no tensor holds it)
  graph_.reset();          // captured on the old buffers / cache tensors
  tokens_ = at::zeros({R, 1}, at::TensorOptions().dtype(at::kLong).device(dev));
  token_mask_ = at::ones({R, 1}, at::TensorOptions().dtype(at::kBool).device(dev));
  slot_ = at::zeros({1}, at::TensorOptions().dtype(at::kLong).device(dev));
  bound_cache_ = &cache;
  bound_version_ = cache.version();
}

at::Tensor StaticDecoder::run(KvCache& cache) const {
  const at::Tensor hidden = model_.decode_step(tokens_, token_mask_, slot_, cache, fused_attention_);  // [R, 1, hidden]
  return model_.logits(hidden.select(1, 0));  // [R, V] in the model's dtype (the sampler reads bf16 as it is)
}

at::Tensor StaticDecoder::step(KvCache& cache, const at::Tensor& tokens, const at::Tensor& token_mask) {
  if (cache.free_slots() < 1) {
    throw UserError("KV cache overflow: all " + std::to_string(cache.max_len()) +
                    " slots are used (allocate a longer cache)");
  }
  if (&cache != bound_cache_ || cache.version() != bound_version_ || tokens_.size(0) != cache.batch()) bind(cache);
  const int64_t R = cache.batch();
  if (tokens.numel() != R) throw std::invalid_argument("StaticDecoder::step: one token per cache row");
  tokens_.copy_(tokens.view({R, 1}));
  if (token_mask.defined()) {
    token_mask_.copy_(token_mask.view({R, 1}));
  } else {
    token_mask_.fill_(true);
  }
  slot_.fill_(cache.used());  // a fill kernel with the value as argument: no synchronisation

  at::Tensor out;
  if (!use_graph_) {
    out = run(cache);
  } else if (graph_) {
#if defined(SCORCH_WITH_CUDA)
    graph_->graph.replay();
#endif
    out = logits_;
    ++replays_;
  } else {
    out = run_and_capture(cache);
  }
  cache.advance_static_step();
  return out;
}

at::Tensor StaticDecoder::run_and_capture(KvCache& cache) {
#if defined(SCORCH_WITH_CUDA)
  // The step runs for real on a side stream (a capture must start on a non-default stream, and its
  // warm-up belongs there too), then the same step is recorded — recording executes nothing, so the
  // cache sees this step once. The current stream waits for the side stream before it goes on.
  const c10::cuda::CUDAStream current = c10::cuda::getCurrentCUDAStream();
  const c10::cuda::CUDAStream side = c10::cuda::getStreamFromPool();
  c10::cuda::CUDAEvent ready;
  ready.record(current);
  ready.block(side);
  at::Tensor out;
  {
    c10::cuda::CUDAStreamGuard guard(side);
    out = run(cache);
    side.synchronize();  // begin the capture on an idle stream
    auto graph = std::make_unique<Graph>();
    bool capturing = false;
    try {
      graph->graph.capture_begin();
      capturing = true;
      at::Tensor captured = run(cache);
      capturing = false;
      graph->graph.capture_end();
      logits_ = captured;
      graph_ = std::move(graph);
      ++captures_;
    } catch (const std::exception& e) {
      if (capturing) {
        try {
          graph->graph.capture_end();  // leaves capture mode and the graph's memory pool
        } catch (const std::exception&) {
        }
      }
      (void)cudaGetLastError();  // an invalidated capture is not a sticky error; clear it
      use_graph_ = false;
      graph_.reset();
      if (!g_capture_failed.exchange(true)) {
        log::warn("rollout: capturing the decode step in a CUDA graph failed; decoding without graphs (", e.what(), ")");
      }
    }
  }
  c10::cuda::CUDAEvent done;
  done.record(side);
  done.block(current);
  out.record_stream(current);  // allocated on the side stream, read on the current one
  return out;
#else
  return run(cache);
#endif
}

#if defined(SCORCH_WITH_CUDA)
struct AsyncHostCopy::Event {
  c10::cuda::CUDAEvent event;
};
#else
struct AsyncHostCopy::Event {};
#endif

AsyncHostCopy::AsyncHostCopy() = default;
AsyncHostCopy::~AsyncHostCopy() = default;

void AsyncHostCopy::start(const at::Tensor& t) {
  pending_ = false;
  if (!t.is_cuda()) {
    host_ = t;
    return;
  }
#if defined(SCORCH_WITH_CUDA)
  host_ = at::empty(t.sizes(), t.options().device(at::kCPU).pinned_memory(true));
  host_.copy_(t, /*non_blocking=*/true);
  if (!event_) event_ = std::make_unique<Event>();
  event_->event.record(c10::cuda::getCurrentCUDAStream());
  pending_ = true;
#else
  throw std::logic_error("AsyncHostCopy: a CUDA tensor in a build without CUDA");
#endif
}

const at::Tensor& AsyncHostCopy::wait() {
#if defined(SCORCH_WITH_CUDA)
  if (pending_) event_->event.synchronize();
#endif
  pending_ = false;
  return host_;
}

}  // namespace scorch

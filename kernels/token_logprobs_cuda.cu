// token_logprobs, CUDA. Fused so that the logits are read once in the forward and once in the
// backward, and nothing of size [N, V] is allocated except the gradient itself (in the logits' dtype).
//
// Forward: a row is owned by one warp (V <= kWarpRowMaxVocab) or one 256-thread block. Each thread
// streams its share of the row with 16-byte loads (8 bf16 / 4 fp32), keeping an online softmax
// state in fp32 — running max m of the raw logits, s = sum 2^d, t = sum 2^d * d with
// d = (x - m) * log2(e) / T — then the states are merged across the warp / block. From it:
//   lse = m / T + ln s,   entropy = ln s - ln 2 * t / s,   logp = x[target] / T - lse.
// Working in base 2 makes each element one FFMA + one ex2 (the SFU instruction), which keeps the
// kernel memory-bound on H100 even with the entropy accumulator.
// Backward: per element, log2 p = x * log2(e) / T - lse * log2(e), p = 2^(log2 p), and
//   grad = -p * (g_logp / T + g_H / T * (ln p + H)),  + g_logp / T at the target,
// written straight to the output dtype. Rows are handled as in the forward (no reduction needed).
// Rows may be strided (row_stride >= V); the vector loop starts at the row's first 16-byte
// boundary, so any V and any alignment work (a scalar head and tail cover the rest).
#include "kernels/cuda_compat.cuh"
#include "kernels/ops_impl.h"

#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include <cstdint>

namespace scorch::kernels {
namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
constexpr int kBlockThreads = 256;
constexpr int kWarpRowMaxVocab = 4096;  // up to here a warp per row (8 rows per block), else a block per row

template <typename T>
struct alignas(16) Vec {
  static constexpr int kSize = 16 / sizeof(T);
  T v[kSize];
};

// Online softmax state of some elements of one row (see the file note).
struct State {
  float m;  // max of the raw logits seen
  float s;  // sum 2^d
  float t;  // sum 2^d * d (only with entropy)
};

__device__ __forceinline__ State empty_state() { return State{-INFINITY, 0.f, 0.f}; }

// Adds n values to the state: one rescale per call (not per element) when the max grows.
template <bool kEntropy, int n>
__device__ __forceinline__ void absorb(State& st, const float (&x)[n], float scale) {
  float new_max = st.m;
  bool has_nan = false;
#pragma unroll
  for (int i = 0; i < n; ++i) {
    new_max = fmaxf(new_max, x[i]);
    has_nan |= x[i] != x[i];
  }
  if (has_nan) st.s = NAN;  // fmaxf skips NaN: make the row's result NaN instead of hiding it
  if (new_max > st.m) {
    if (st.s > 0.f) {
      const float d = (st.m - new_max) * scale;
      const float a = exp2f(d);
      if (kEntropy) st.t = a * (st.t + st.s * d);
      st.s *= a;
    }
    st.m = new_max;
  }
  if (st.m == -INFINITY) return;  // only -inf so far: they contribute nothing
  const float shift = st.m * scale;
#pragma unroll
  for (int i = 0; i < n; ++i) {
    const float d = fmaf(x[i], scale, -shift);
    const float e = exp2f(d);
    st.s += e;
    if (kEntropy) st.t += e > 0.f ? e * d : 0.f;  // 0 * (-inf) would be NaN for x = -inf
  }
}

__device__ __forceinline__ State merge(const State& a, const State& b, float scale) {
  if (a.m == -INFINITY && a.s == 0.f) return b;
  if (b.m == -INFINITY && b.s == 0.f) return a;
  const float m = fmaxf(a.m, b.m);
  const float da = (a.m - m) * scale, db = (b.m - m) * scale;
  const float ea = exp2f(da), eb = exp2f(db);
  return State{m, a.s * ea + b.s * eb, ea * (a.t + a.s * da) + eb * (b.t + b.s * db)};
}

__device__ __forceinline__ State warp_reduce(State st, float scale) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) {
    State other{__shfl_xor_sync(0xffffffffu, st.m, offset), __shfl_xor_sync(0xffffffffu, st.s, offset),
                __shfl_xor_sync(0xffffffffu, st.t, offset)};
    st = merge(st, other, scale);
  }
  return st;
}

// Reduces over the row's group of threads; the result is valid in the group's lane 0.
template <int kGroupThreads>
__device__ __forceinline__ State group_reduce(State st, float scale) {
  st = warp_reduce(st, scale);
  if constexpr (kGroupThreads > 32) {
    constexpr int kWarps = kGroupThreads / 32;
    __shared__ State warp_states[kWarps];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) warp_states[warp] = st;
    __syncthreads();
    if (warp == 0) st = warp_reduce(lane < kWarps ? warp_states[lane] : empty_state(), scale);
    __syncthreads();  // the next row reuses warp_states
  }
  return st;
}

// Number of leading elements before the first 16-byte boundary of p (at most v).
template <typename T>
__device__ __forceinline__ int head_elements(const T* p, int v) {
  const int misalign = static_cast<int>(reinterpret_cast<uintptr_t>(p) & 15u);
  return min(v, ((16 - misalign) & 15) / static_cast<int>(sizeof(T)));
}

template <typename T, int kGroupThreads, bool kEntropy>
__global__ void __launch_bounds__(kBlockThreads)
    forward_kernel(const T* __restrict__ logits, int64_t row_stride, const int64_t* __restrict__ targets,
                   int64_t rows, int vocab, float inv_t, float* __restrict__ logp, float* __restrict__ entropy,
                   float* __restrict__ lse) {
  constexpr int kRowsPerBlock = kBlockThreads / kGroupThreads;
  constexpr int kVec = Vec<T>::kSize;
  const int lane = threadIdx.x % kGroupThreads;
  const float scale = inv_t * kLog2e;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kGroupThreads; row < rows;
       row += static_cast<int64_t>(gridDim.x) * kRowsPerBlock) {
    const T* r = logits + row * row_stride;
    State st = empty_state();
    const int head = head_elements(r, vocab);
    for (int i = lane; i < head; i += kGroupThreads) absorb<kEntropy, 1>(st, {static_cast<float>(r[i])}, scale);
    const int vectors = (vocab - head) / kVec;
    const Vec<T>* rv = reinterpret_cast<const Vec<T>*>(r + head);
    int i = lane;
    for (; i + kGroupThreads < vectors; i += 2 * kGroupThreads) {  // two 16-byte loads in flight
      const Vec<T> a = rv[i], b = rv[i + kGroupThreads];
      float xa[kVec], xb[kVec];
#pragma unroll
      for (int k = 0; k < kVec; ++k) xa[k] = static_cast<float>(a.v[k]), xb[k] = static_cast<float>(b.v[k]);
      absorb<kEntropy>(st, xa, scale);
      absorb<kEntropy>(st, xb, scale);
    }
    if (i < vectors) {
      const Vec<T> a = rv[i];
      float xa[kVec];
#pragma unroll
      for (int k = 0; k < kVec; ++k) xa[k] = static_cast<float>(a.v[k]);
      absorb<kEntropy>(st, xa, scale);
    }
    for (int j = head + vectors * kVec + lane; j < vocab; j += kGroupThreads)
      absorb<kEntropy, 1>(st, {static_cast<float>(r[j])}, scale);

    st = group_reduce<kGroupThreads>(st, scale);
    if (lane == 0) {
      const float log_s = logf(st.s);
      const float row_lse = st.m * inv_t + log_s;
      lse[row] = row_lse;
      const int64_t target = targets[row];
      // target >= vocab cannot be reported without a sync: make it visible as NaN instead.
      logp[row] = target < 0 ? 0.f : target >= vocab ? NAN : static_cast<float>(r[target]) * inv_t - row_lse;
      if (kEntropy) entropy[row] = log_s - kLn2 * st.t / st.s;
    }
  }
}

template <typename T, int kGroupThreads, bool kLogp, bool kEntropy>
__global__ void __launch_bounds__(kBlockThreads)
    backward_kernel(const T* __restrict__ logits, int64_t row_stride, const int64_t* __restrict__ targets,
                    const float* __restrict__ lse, const float* __restrict__ entropy,
                    const float* __restrict__ grad_logp, const float* __restrict__ grad_entropy, int64_t rows,
                    int vocab, float inv_t, T* __restrict__ grad) {
  constexpr int kRowsPerBlock = kBlockThreads / kGroupThreads;
  constexpr int kVec = Vec<T>::kSize;
  const int lane = threadIdx.x % kGroupThreads;
  const float scale = inv_t * kLog2e;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kGroupThreads; row < rows;
       row += static_cast<int64_t>(gridDim.x) * kRowsPerBlock) {
    const T* r = logits + row * row_stride;
    T* out = grad + row * static_cast<int64_t>(vocab);
    const float lse2 = lse[row] * kLog2e;
    const int64_t target = targets[row];
    const float a = (kLogp && target >= 0) ? grad_logp[row] * inv_t : 0.f;  // ignored rows: no logp gradient
    const float b = kEntropy ? grad_entropy[row] * inv_t : 0.f;
    const float h = kEntropy ? entropy[row] : 0.f;
    auto grad_at = [&](float x, int j) {
      const float log2_p = fmaf(x, scale, -lse2);
      const float p = exp2f(log2_p);
      float g = kEntropy ? -p * (a + b * fmaf(log2_p, kLn2, h)) : -p * a;
      if (kLogp && j == target) g += a;
      return g;
    };
    // Vector path only when input and output rows share their alignment (always for contiguous logits).
    const int head = head_elements(r, vocab);
    const bool aligned = head == head_elements(out, vocab);
    const int vectors = aligned ? (vocab - head) / kVec : 0;
    const int scalar_head = aligned ? head : vocab;
    for (int j = lane; j < scalar_head; j += kGroupThreads) out[j] = static_cast<T>(grad_at(static_cast<float>(r[j]), j));
    const Vec<T>* rv = reinterpret_cast<const Vec<T>*>(r + head);
    Vec<T>* ov = reinterpret_cast<Vec<T>*>(out + head);
    for (int i = lane; i < vectors; i += kGroupThreads) {
      const Vec<T> x = rv[i];
      Vec<T> g;
      const int j0 = head + i * kVec;
#pragma unroll
      for (int k = 0; k < kVec; ++k) g.v[k] = static_cast<T>(grad_at(static_cast<float>(x.v[k]), j0 + k));
      ov[i] = g;
    }
    if (aligned)
      for (int j = head + vectors * kVec + lane; j < vocab; j += kGroupThreads)
        out[j] = static_cast<T>(grad_at(static_cast<float>(r[j]), j));
  }
}

int64_t grid_for(int64_t rows, int rows_per_block) {
  const int64_t blocks = (rows + rows_per_block - 1) / rows_per_block;
  return std::min<int64_t>(blocks, int64_t{1} << 30);  // the kernels loop over the rest
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> token_logprobs_forward_cuda(
    const at::Tensor& logits, const at::Tensor& targets_in, double temperature, bool with_entropy) {
  check_token_logprobs_inputs(logits, targets_in, temperature);
  const c10::cuda::CUDAGuard guard(logits.device());
  const int64_t rows = logits.size(0);
  TORCH_CHECK(logits.size(1) < (int64_t{1} << 31), "scorch::token_logprobs: vocabulary too large");
  const int vocab = static_cast<int>(logits.size(1));
  const at::Tensor targets = targets_in.contiguous();
  const auto f32 = logits.options().dtype(at::kFloat);
  at::Tensor logp = at::empty({rows}, f32);
  at::Tensor entropy = at::empty({with_entropy ? rows : 0}, f32);
  at::Tensor lse = at::empty({rows}, f32);
  if (rows == 0) return {logp, entropy, lse};
  const int64_t row_stride = logits.stride(0);
  const float inv_t = static_cast<float>(1.0 / temperature);
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, logits.scalar_type(), "token_logprobs_forward", [&] {
    const auto* x = logits.const_data_ptr<scalar_t>();
    auto launch = [&](auto group_threads, auto entropy_flag) {
      constexpr int kGroup = decltype(group_threads)::value;
      constexpr bool kEntropy = decltype(entropy_flag)::value;
      SCORCH_LAUNCH(grid_for(rows, kBlockThreads / kGroup), kBlockThreads, 0, stream, forward_kernel<scalar_t, kGroup, kEntropy>)(
          x, row_stride, targets.const_data_ptr<int64_t>(), rows, vocab, inv_t, logp.data_ptr<float>(),
          kEntropy ? entropy.data_ptr<float>() : nullptr, lse.data_ptr<float>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    };
    using Warp = std::integral_constant<int, 32>;
    using Block = std::integral_constant<int, kBlockThreads>;
    if (vocab <= kWarpRowMaxVocab) {
      with_entropy ? launch(Warp{}, std::true_type{}) : launch(Warp{}, std::false_type{});
    } else {
      with_entropy ? launch(Block{}, std::true_type{}) : launch(Block{}, std::false_type{});
    }
  });
  return {logp, entropy, lse};
}

at::Tensor token_logprobs_backward_cuda(const at::Tensor& grad_logp_in, const at::Tensor& grad_entropy_in,
                                        const at::Tensor& logits, const at::Tensor& targets_in,
                                        const at::Tensor& lse_in, const at::Tensor& entropy_in, double temperature) {
  check_token_logprobs_inputs(logits, targets_in, temperature);
  const c10::cuda::CUDAGuard guard(logits.device());
  const int64_t rows = logits.size(0);
  const int vocab = static_cast<int>(logits.size(1));
  const bool has_logp = grad_logp_in.defined(), has_entropy = grad_entropy_in.defined();
  TORCH_CHECK(!has_entropy || entropy_in.numel() == rows,
              "scorch::token_logprobs backward: an entropy gradient needs the forward's entropy (with_entropy=true)");
  if (!has_logp && !has_entropy) return at::zeros({rows, vocab}, logits.options());
  at::Tensor grad = at::empty({rows, vocab}, logits.options());
  if (rows == 0) return grad;
  // [N] vectors: contiguous fp32 (an expanded gradient of a sum has stride 0).
  const at::Tensor targets = targets_in.contiguous();
  const at::Tensor lse = lse_in.to(at::kFloat).contiguous();
  const at::Tensor g_logp = has_logp ? grad_logp_in.to(at::kFloat).contiguous() : at::Tensor();
  const at::Tensor g_entropy = has_entropy ? grad_entropy_in.to(at::kFloat).contiguous() : at::Tensor();
  const at::Tensor entropy = has_entropy ? entropy_in.to(at::kFloat).contiguous() : at::Tensor();
  const float inv_t = static_cast<float>(1.0 / temperature);
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, logits.scalar_type(), "token_logprobs_backward", [&] {
    auto launch = [&](auto group_threads, auto logp_flag, auto entropy_flag) {
      constexpr int kGroup = decltype(group_threads)::value;
      constexpr bool kLogp = decltype(logp_flag)::value;
      constexpr bool kEntropy = decltype(entropy_flag)::value;
      SCORCH_LAUNCH(grid_for(rows, kBlockThreads / kGroup), kBlockThreads, 0, stream, backward_kernel<scalar_t, kGroup, kLogp, kEntropy>)(
              logits.const_data_ptr<scalar_t>(), logits.stride(0), targets.const_data_ptr<int64_t>(),
              lse.const_data_ptr<float>(), kEntropy ? entropy.const_data_ptr<float>() : nullptr,
              kLogp ? g_logp.const_data_ptr<float>() : nullptr,
              kEntropy ? g_entropy.const_data_ptr<float>() : nullptr, rows, vocab, inv_t,
              grad.data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    };
    auto with_group = [&](auto group_threads) {
      if (has_logp && has_entropy) launch(group_threads, std::true_type{}, std::true_type{});
      else if (has_logp) launch(group_threads, std::true_type{}, std::false_type{});
      else launch(group_threads, std::false_type{}, std::true_type{});
    };
    if (vocab <= kWarpRowMaxVocab) with_group(std::integral_constant<int, 32>{});
    else with_group(std::integral_constant<int, kBlockThreads>{});
  });
  return grad;
}

}  // namespace scorch::kernels

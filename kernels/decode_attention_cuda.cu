// decode_attention, CUDA (ops.h): one decode step's RoPE, cache write and grouped-query attention in
// one kernel, plus a merge kernel when the slots are split over several blocks.
//
// Grid (B * KV, splits), 128 threads. Block (b, kv head, split):
//   1. ropes its G = H / KV query heads and its KV head's new key from qkv (rope_pair: the rounding
//      of fused_rope / rope_kv_write, so the cache holds what rope_kv_write would write) into shared
//      memory as floats, with the new value; split 0 writes key and value to the caches at `slot`.
//      The slot's key and value are taken from shared memory, never read back from the cache, so no
//      block depends on another block's write.
//   2. scores its range of slots: one slot per thread, its key row read once (16-byte loads where the
//      rows allow) and dotted with the G
//      query heads (shared memory, broadcast), times scale, plus the additive mask: [G, chunk] floats
//      in shared memory.
//   3. one warp per head: max over the range, exp(s - max) in place, sum (fp32; exact expf).
//   4. one thread per (head, d): the P.V sum over the range, values read once per warp row (coalesced
//      along d). With one split the block writes dtype(acc / sum) to out[b, 0, h * D + d]; with several
//      it writes (max, sum, acc[D]) to a float workspace, and the merge kernel rescales the splits by
//      exp(max_s - max) and writes dtype(sum_s w_s acc_s / sum_s w_s l_s).
// Splits: enough blocks for two per SM when B * KV alone would leave SMs idle (batch 1, long caches),
// at least kMinSplitSlots slots each, and as many as the shared-memory score buffer needs. Shapes only (never
// values) decide them, so a CUDA graph can capture the launch. Not compiled with --use_fast_math.
#include "kernels/decode_device.cuh"
#include "kernels/cuda_compat.cuh"
#include "kernels/ops_impl.h"

#include <ATen/Dispatch.h>
#ifndef SCORCH_CUDA_EMULATION
#include <ATen/cuda/CUDAContext.h>
#endif
#include <ATen/ops/empty.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace scorch::kernels {
namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int64_t kSharedBytes = 48 * 1024;  // the default dynamic shared memory limit per block
constexpr int kMaxGroup = static_cast<int>(kDecodeAttentionMaxGroup);
// A split takes at least this many slots: below it the merge kernel costs more than the parallelism
// gains (a batch-64 Qwen2.5-0.5B step, 128 blocks of 192 slots, stays one kernel).
constexpr int64_t kMinSplitSlots = 256;

struct AttentionGeometry {
  int64_t q_heads, kv_heads, group, d, half, slots;
  int64_t xs0, xs1;  // qkv's strides over (B, heads)
  int64_t cb, sb;    // cos / sin strides over B, 0 where broadcast
  int64_t mb, ms;    // mask strides over (B, slots), mb 0 where broadcast
  int64_t chunk;     // slots per split
  int splits;
  float scale;
  bool has_mask;
  bool vector_rows;  // cache rows start 16-byte aligned and hold whole 16-byte pieces
};

__device__ __forceinline__ float warp_max(float v) {
  for (int offset = 16; offset > 0; offset /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}
__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

template <typename T>
struct alignas(16) Row16 {
  T v[16 / sizeof(T)];
};

// acc[gi] += q[gi, d] * kd for the group's heads (q_s [G, D] in shared memory, read as a broadcast).
__device__ __forceinline__ void dot_into(float (&acc)[kMaxGroup], const float* q_s, int64_t D, int64_t G, int64_t d,
                                         float kd) {
#pragma unroll
  for (int gi = 0; gi < kMaxGroup; ++gi) {
    if (gi < G) acc[gi] = fmaf(q_s[gi * D + d], kd, acc[gi]);
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    decode_attention_kernel(const T* __restrict__ qkv, const T* __restrict__ cos, const T* __restrict__ sin,
                            const T* __restrict__ mask, T* __restrict__ k_cache, T* __restrict__ v_cache,
                            const int64_t* __restrict__ slot_ptr, T* __restrict__ out, float* __restrict__ partial,
                            AttentionGeometry g) {
  SCORCH_EXTERN_SHARED(float, smem);
  const int64_t G = g.group, D = g.d, half = g.half;
  float* q_s = smem;                  // [G, D] roped queries
  float* k_new = q_s + G * D;         // [D] this step's roped key
  float* v_new = k_new + D;           // [D] this step's value
  float* p_s = v_new + D;             // [G, chunk] scores, then exp(score - max)
  float* stats = p_s + G * g.chunk;   // [G, 2] max, sum

  const int64_t bk = blockIdx.x;  // b * KV + kv head
  const int64_t b = bk / g.kv_heads, kvh = bk % g.kv_heads;
  const int split = static_cast<int>(blockIdx.y);
  const int64_t slot = *slot_ptr;
  const bool write = split == 0 && slot >= 0 && slot < g.slots;
  const T* xrow = qkv + b * g.xs0;
  const T* c = cos + b * g.cb;
  const T* s = sin + b * g.sb;
  T* k_rows = k_cache + bk * g.slots * D;
  T* v_rows = v_cache + bk * g.slots * D;

  // 1. RoPE of the group's q heads (m < G) and of the new key (m == G); the new value.
  for (int64_t idx = threadIdx.x; idx < (G + 1) * half; idx += blockDim.x) {
    const int64_t i = idx % half, m = idx / half;
    const int64_t head = m < G ? kvh * G + m : g.q_heads + kvh;
    const T* xr = xrow + head * g.xs1;
    T o1, o2;
    rope_pair(xr[i], xr[i + half], c[i], s[i], c[i + half], s[i + half], o1, o2);
    float* dst = m < G ? q_s + m * D : k_new;
    dst[i] = to_float(o1);
    dst[i + half] = to_float(o2);
    if (m == G && write) {
      k_rows[slot * D + i] = o1;
      k_rows[slot * D + i + half] = o2;
    }
  }
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
    const T v = xrow[(g.q_heads + g.kv_heads + kvh) * g.xs1 + i];
    v_new[i] = to_float(v);
    if (write) v_rows[slot * D + i] = v;
  }
  __syncthreads();

  // 2. Scores of this split's slots [s0, s0 + n).
  const int64_t s0 = static_cast<int64_t>(split) * g.chunk;
  const int64_t n = min(g.chunk, g.slots - s0);
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
    const int64_t sj = s0 + j;
    float acc[kMaxGroup];
#pragma unroll
    for (int gi = 0; gi < kMaxGroup; ++gi) acc[gi] = 0.f;
    const T* kr = k_rows + sj * D;
    if (sj == slot) {
      for (int64_t d = 0; d < D; ++d) dot_into(acc, q_s, D, G, d, k_new[d]);
    } else if (g.vector_rows) {  // 16-byte loads of the key row
      constexpr int kVec = 16 / sizeof(T);
      for (int64_t d0 = 0; d0 < D; d0 += kVec) {
        const Row16<T> pk = *reinterpret_cast<const Row16<T>*>(kr + d0);
#pragma unroll
        for (int e = 0; e < kVec; ++e) dot_into(acc, q_s, D, G, d0 + e, to_float(pk.v[e]));
      }
    } else {
      for (int64_t d = 0; d < D; ++d) dot_into(acc, q_s, D, G, d, to_float(kr[d]));
    }
    const float add = g.has_mask ? to_float(mask[b * g.mb + sj * g.ms]) : 0.f;
#pragma unroll
    for (int gi = 0; gi < kMaxGroup; ++gi) {
      if (gi < G) p_s[gi * g.chunk + j] = acc[gi] * g.scale + add;
    }
  }
  __syncthreads();

  // 3. Softmax pieces per head: max, exp in place, sum.
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int64_t gi = warp; gi < G; gi += kWarps) {
    float* row = p_s + gi * g.chunk;
    float m = -INFINITY;
    for (int64_t j = lane; j < n; j += 32) m = fmaxf(m, row[j]);
    m = warp_max(m);
    float l = 0.f;
    for (int64_t j = lane; j < n; j += 32) {
      const float e = m == -INFINITY ? 0.f : expf(row[j] - m);  // a fully masked range weighs nothing
      row[j] = e;
      l += e;
    }
    l = warp_sum(l);
    if (lane == 0) {
      stats[2 * gi] = m;
      stats[2 * gi + 1] = l;
    }
  }
  __syncthreads();

  // 4. P.V per (head, d).
  for (int64_t idx = threadIdx.x; idx < G * D; idx += blockDim.x) {
    const int64_t gi = idx / D, d = idx % D;
    const float* row = p_s + gi * g.chunk;
    float acc = 0.f;
    for (int64_t j = 0; j < n; ++j) {
      const int64_t sj = s0 + j;
      const float vd = sj == slot ? v_new[d] : to_float(v_rows[sj * D + d]);
      acc = fmaf(row[j], vd, acc);
    }
    const int64_t h = kvh * G + gi;
    if (g.splits == 1) {
      const float l = stats[2 * gi + 1];
      out[(b * g.q_heads + h) * D + d] = to_dtype<T>(l > 0.f ? acc / l : 0.f);
    } else {
      float* pp = partial + ((b * g.q_heads + h) * g.splits + split) * (D + 2);
      pp[2 + d] = acc;
      if (d == 0) {
        pp[0] = stats[2 * gi];
        pp[1] = stats[2 * gi + 1];
      }
    }
  }
}

// One block per (b, h): merges the splits' partial softmaxes.
template <typename T>
__global__ void decode_attention_merge_kernel(const float* __restrict__ partial, T* __restrict__ out, int64_t d_size,
                                              int splits) {
  const int64_t bh = blockIdx.x;
  const float* p = partial + bh * splits * (d_size + 2);
  float m = -INFINITY;
  for (int sp = 0; sp < splits; ++sp) m = fmaxf(m, p[sp * (d_size + 2)]);
  for (int64_t d = threadIdx.x; d < d_size; d += blockDim.x) {
    float num = 0.f, den = 0.f;
    for (int sp = 0; sp < splits; ++sp) {
      const float* q = p + sp * (d_size + 2);
      if (q[0] == -INFINITY) continue;  // a fully masked split
      const float w = expf(q[0] - m);
      num = fmaf(w, q[2 + d], num);
      den = fmaf(w, q[1], den);
    }
    out[bh * d_size + d] = to_dtype<T>(den > 0.f ? num / den : 0.f);
  }
}

}  // namespace

at::Tensor decode_attention_cuda(const at::Tensor& qkv, const at::Tensor& cos, const at::Tensor& sin,
                                 at::Tensor& k_cache, at::Tensor& v_cache, const at::Tensor& slot,
                                 const std::optional<at::Tensor>& mask, int64_t q_heads, double scale) {
  const int64_t kv = check_decode_attention_inputs(qkv, cos, sin, k_cache, v_cache, slot, mask, q_heads, scale);
  const c10::cuda::CUDAGuard guard(qkv.device());
  const int64_t B = qkv.size(0), D = qkv.size(3), slots = k_cache.size(2), G = q_heads / kv;
  at::Tensor out = at::empty({B, 1, q_heads * D}, qkv.options().memory_format(at::MemoryFormat::Contiguous));
  if (B == 0) return out;

  // The score buffer takes what shared memory the queries, key, value and stats leave.
  const int64_t fixed_floats = G * D + 2 * D + 2 * G;
  const int64_t max_chunk = (kSharedBytes / 4 - fixed_floats) / G / 32 * 32;
  TORCH_CHECK(max_chunk >= 32, "scorch::decode_attention: internal: no shared memory left for scores");
  const int64_t sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  const int64_t blocks = B * kv;
  int64_t splits = (slots + max_chunk - 1) / max_chunk;
  if (blocks < 2 * sms) {  // split long caches over more blocks, keeping at least kMinSplitSlots each
    const int64_t wanted = (2 * sms + blocks - 1) / blocks;
    splits = std::max(splits, std::min(wanted, slots / kMinSplitSlots));
  }
  const int64_t chunk = (slots + splits - 1) / splits;
  splits = (slots + chunk - 1) / chunk;  // no empty split
  at::Tensor partial;
  if (splits > 1) partial = at::empty({B * q_heads * splits * (D + 2)}, qkv.options().dtype(at::kFloat));

  const RopeTableStrides cs = rope_table_strides(cos), ss = rope_table_strides(sin);
  AttentionGeometry g{};
  g.q_heads = q_heads;
  g.kv_heads = kv;
  g.group = G;
  g.d = D;
  g.half = D / 2;
  g.slots = slots;
  g.xs0 = qkv.stride(0);
  g.xs1 = qkv.stride(1);
  g.cb = cs.batch;
  g.sb = ss.batch;
  g.has_mask = mask.has_value();
  g.mb = mask && mask->size(0) > 1 ? mask->stride(0) : 0;
  g.ms = mask ? mask->stride(3) : 0;
  g.chunk = chunk;
  g.splits = static_cast<int>(splits);
  g.scale = static_cast<float>(scale);
  g.vector_rows = (D * static_cast<int64_t>(k_cache.element_size())) % 16 == 0 &&
                  reinterpret_cast<uintptr_t>(k_cache.const_data_ptr()) % 16 == 0;
  const size_t shared = static_cast<size_t>(fixed_floats + G * chunk) * sizeof(float);
  const dim3 grid(static_cast<unsigned>(blocks), static_cast<unsigned>(splits));
  const auto stream = c10::cuda::getCurrentCUDAStream();
  SCORCH_DISPATCH_DECODE_TYPES(qkv.scalar_type(), "decode_attention_cuda", [&] {
    SCORCH_LAUNCH(grid, kThreads, shared, stream, decode_attention_kernel<scalar_t>)(
        qkv.const_data_ptr<scalar_t>(), cos.const_data_ptr<scalar_t>(), sin.const_data_ptr<scalar_t>(),
        mask ? mask->const_data_ptr<scalar_t>() : nullptr, k_cache.data_ptr<scalar_t>(), v_cache.data_ptr<scalar_t>(),
        slot.const_data_ptr<int64_t>(), out.data_ptr<scalar_t>(), splits > 1 ? partial.data_ptr<float>() : nullptr, g);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    if (splits > 1) {
      const int threads = static_cast<int>(std::min<int64_t>(256, (D + 31) / 32 * 32));
      SCORCH_LAUNCH(static_cast<unsigned>(B * q_heads), threads, 0, stream, decode_attention_merge_kernel<scalar_t>)(
          partial.const_data_ptr<float>(), out.data_ptr<scalar_t>(), D, static_cast<int>(splits));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return out;
}

}  // namespace scorch::kernels

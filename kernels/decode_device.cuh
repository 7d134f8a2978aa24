// Device helpers shared by the layer and decode kernels (decode_ops_cuda.cu, train_ops_cuda.cu,
// decode_attention_cuda.cu): conversions, the RoPE pair with ATen's per-op rounding and its
// geometry, a block-wide sum. CUDA sources only.
#pragma once
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include "kernels/ops_impl.h"

namespace scorch::kernels {

template <typename T>
__device__ __forceinline__ float to_float(T v) {
  return static_cast<float>(v);
}
template <typename T>
__device__ __forceinline__ T to_dtype(float v) {
  return static_cast<T>(v);
}

// One RoPE pair (dimension i and i + D/2) as transformers computes x * cos + rotate_half(x) * sin in
// the dtype: every product and the sum rounded to T (__fmul_rn / __fadd_rn: never fused into an FMA).
//   o1 = x1 * c1 - x2 * s1,  o2 = x2 * c2 + x1 * s2
template <typename T>
__device__ __forceinline__ void rope_pair(T x1_in, T x2_in, T c1, T s1, T c2, T s2, T& o1, T& o2) {
  const float x1 = to_float(x1_in), x2 = to_float(x2_in);
  const float a1 = to_float(to_dtype<T>(__fmul_rn(x1, to_float(c1))));
  const float b1 = to_float(to_dtype<T>(__fmul_rn(x2, to_float(s1))));
  const float a2 = to_float(to_dtype<T>(__fmul_rn(x2, to_float(c2))));
  const float b2 = to_float(to_dtype<T>(__fmul_rn(x1, to_float(s2))));
  o1 = to_dtype<T>(__fsub_rn(a1, b1));
  o2 = to_dtype<T>(__fadd_rn(a2, b2));
}

// Where fused_rope's (and its backward's) threads find their row: x [B, M, T, D] (or the gradient)
// with strides over (B, M, T), the tables' over (B, T) (0 where broadcast).
struct RopeGeometry {
  int64_t heads, tokens, half;
  int64_t xs0, xs1, xs2;  // x's strides over (B, M, T)
  int64_t cb, ct, sb, st;  // cos / sin strides over (B, T), 0 where broadcast
};

inline RopeGeometry rope_geometry(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const RopeTableStrides cs = rope_table_strides(cos), ss = rope_table_strides(sin);
  return {x.size(1), x.size(2), x.size(3) / 2, x.stride(0), x.stride(1), x.stride(2), cs.batch, cs.time, ss.batch, ss.time};
}

// Sum over the block (blockDim.x a multiple of 32); every thread gets the result.
__device__ __forceinline__ float block_sum(float v) {
  __shared__ float warp_sums[32];
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  v = lane < warps ? warp_sums[lane] : 0.f;
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  __syncthreads();  // warp_sums is reused by the block's next row
  return v;
}

}  // namespace scorch::kernels

// Device helpers shared by the decode-step kernels (decode_ops_cuda.cu, decode_attention_cuda.cu):
// conversions and the RoPE pair with ATen's per-op rounding. CUDA sources only.
#pragma once
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

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

}  // namespace scorch::kernels

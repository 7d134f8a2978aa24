// Decode-step ops, CUDA: fused_rms_norm, fused_add_rms_norm, fused_rope, silu_and_mul, silu_mul (their
// backward: train_ops_cuda.cu).
// At decode shapes (a few rows of 896..4864 elements) every one of these is launch-bound: the point
// is one launch instead of the composition's 2-8 (RMSNorm alone is to(fp32), pow, mean, add, rsqrt,
// mul, to(dtype), mul), with the composition's rounding kept (ops.h).
//   rms_norm / add_rms_norm  one block per row. Pass 1 reads the row (16-byte loads when the row
//       allows), forms s = dtype(h + delta) and writes it (add only), sums s^2 in fp32; a warp-shuffle
//       + shared-memory block reduction gives the sum; r = rsqrtf(sum * (1/N) + eps) (ATen's CUDA mean
//       multiplies by 1/N, its rsqrt is rsqrtf); pass 2 re-reads the row (from L1/L2; the add variant
//       reads back its own output, written by the same thread) and writes y = dtype(w * dtype(h * r)).
//   rope          one thread per (row, pair d / d + D/2); the row's address from its (b, m, t) and the
//                 strides, so x may be any strided view and cos / sin broadcast views.
//   silu_and_mul / silu_mul  one thread per 16 bytes of output (8 bf16 / 4 fp32) when rows are aligned, else per
//                 element: out = dtype(dtype(g / (1 + expf(-g))) * u), ATen's CUDA silu arithmetic.
// Everything runs on the current stream, allocates only the outputs and never synchronises, so the
// ops can be captured in a CUDA graph. This file is NOT compiled with --use_fast_math (CMakeLists.txt):
// exact expf and division, no flush-to-zero. Products and sums whose rounding matters are written with
// __fmul_rn / __fadd_rn, which the compiler never contracts into an FMA.
#include "kernels/decode_device.cuh"
#include "kernels/cuda_compat.cuh"
#include "kernels/ops_impl.h"

#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace scorch::kernels {
namespace {

constexpr int kElementwiseThreads = 256;
constexpr int kMaxRowThreads = 512;
constexpr int64_t kMaxBlocks = int64_t{1} << 20;  // grid-stride loops cover the rest

template <typename T, int kSize>
struct alignas(sizeof(T) * kSize) Pack {
  T v[kSize];
};

// --- rms_norm / add_rms_norm -----------------------------------------------------------------------

// kVec elements per access (16 bytes, or 1 when the rows are not aligned for it). Rows: x, delta,
// sum_out, y each start at row * their stride; n % kVec == 0.
template <typename T, int kVec, bool kAdd>
__global__ void rms_norm_kernel(const T* __restrict__ x, int64_t x_stride, const T* __restrict__ delta,
                                int64_t delta_stride, const T* __restrict__ weight, T* sum_out, T* __restrict__ y,
                                int64_t rows, int n, float inv_n, float eps) {
  using P = Pack<T, kVec>;
  const int packs = n / kVec;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const P* xr = reinterpret_cast<const P*>(x + row * x_stride);
    P* sr = kAdd ? reinterpret_cast<P*>(sum_out + row * static_cast<int64_t>(n)) : nullptr;
    float acc = 0.f;
    for (int i = threadIdx.x; i < packs; i += blockDim.x) {
      P s = xr[i];
      if constexpr (kAdd) {
        const P d = reinterpret_cast<const P*>(delta + row * delta_stride)[i];
#pragma unroll
        for (int k = 0; k < kVec; ++k) s.v[k] = to_dtype<T>(__fadd_rn(to_float(s.v[k]), to_float(d.v[k])));
        sr[i] = s;
      }
#pragma unroll
      for (int k = 0; k < kVec; ++k) acc = __fmaf_rn(to_float(s.v[k]), to_float(s.v[k]), acc);
    }
    const float sum = block_sum(acc);
    const float r = rsqrtf(__fadd_rn(__fmul_rn(sum, inv_n), eps));
    const P* wr = reinterpret_cast<const P*>(weight);
    P* yr = reinterpret_cast<P*>(y + row * static_cast<int64_t>(n));
    for (int i = threadIdx.x; i < packs; i += blockDim.x) {
      const P s = kAdd ? sr[i] : xr[i];  // this thread wrote sr[i] in pass 1
      const P w = wr[i];
      P out;
#pragma unroll
      for (int k = 0; k < kVec; ++k) {
        const T normed = to_dtype<T>(__fmul_rn(to_float(s.v[k]), r));
        out.v[k] = to_dtype<T>(__fmul_rn(to_float(w.v[k]), to_float(normed)));
      }
      yr[i] = out;
    }
  }
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// One launch of rms_norm_kernel for rows [R, N]; delta / sum_out only with kAdd.
template <typename T, bool kAdd>
void launch_rms_norm(const at::Tensor& x_rows, const at::Tensor* delta_rows, const at::Tensor& weight,
                     at::Tensor* sum_rows, at::Tensor& y_rows, float eps) {
  const int64_t rows = x_rows.size(0);
  TORCH_CHECK(x_rows.size(1) < (int64_t{1} << 31), "scorch::fused_rms_norm: rows of ", x_rows.size(1),
              " elements are too long");
  const int n = static_cast<int>(x_rows.size(1));
  const T* x = x_rows.const_data_ptr<T>();
  const T* d = kAdd ? delta_rows->const_data_ptr<T>() : nullptr;
  const T* w = weight.const_data_ptr<T>();
  T* s = kAdd ? sum_rows->data_ptr<T>() : nullptr;
  T* y = y_rows.data_ptr<T>();
  const int64_t x_stride = x_rows.stride(0), d_stride = kAdd ? delta_rows->stride(0) : 0;
  constexpr int kVec = 16 / sizeof(T);
  const bool vectorized = n % kVec == 0 && x_stride % kVec == 0 && d_stride % kVec == 0 && aligned16(x) &&
                          aligned16(w) && aligned16(y) && (!kAdd || (aligned16(d) && aligned16(s)));
  const int64_t accesses = vectorized ? n / kVec : n;
  const int threads = static_cast<int>(std::clamp<int64_t>((accesses + 31) / 32 * 32, 32, kMaxRowThreads));
  const int64_t blocks = std::min(rows, kMaxBlocks);
  const float inv_n = 1.0f / static_cast<float>(n);
  const auto stream = c10::cuda::getCurrentCUDAStream();
  if (vectorized) {
    SCORCH_LAUNCH(blocks, threads, 0, stream, rms_norm_kernel<T, kVec, kAdd>)(x, x_stride, d, d_stride, w, s, y, rows, n, inv_n, eps);
  } else {
    SCORCH_LAUNCH(blocks, threads, 0, stream, rms_norm_kernel<T, 1, kAdd>)(x, x_stride, d, d_stride, w, s, y, rows, n, inv_n, eps);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// --- rope ----------------------------------------------------------------------------------------

template <typename T>
__global__ void rope_kernel(const T* __restrict__ x, const T* __restrict__ cos, const T* __restrict__ sin,
                            T* __restrict__ out, int64_t pairs, RopeGeometry g) {
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < pairs;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = idx % g.half, row = idx / g.half;
    const int64_t t = row % g.tokens, m = (row / g.tokens) % g.heads, b = row / (g.tokens * g.heads);
    const T* xr = x + b * g.xs0 + m * g.xs1 + t * g.xs2;
    const T* c = cos + b * g.cb + t * g.ct;
    const T* s = sin + b * g.sb + t * g.st;
    T o1, o2;
    rope_pair(xr[i], xr[i + g.half], c[i], s[i], c[i + g.half], s[i + g.half], o1, o2);
    T* o = out + row * 2 * g.half;
    o[i] = o1;
    o[i + g.half] = o2;
  }
}

// --- rope_kv_write -------------------------------------------------------------------------------
// One thread per (b, head, pair i / i + D/2) over the H + 2 KV heads of qkv [B, H + 2KV, 1, D]:
// q heads are roped into q [B, H, 1, D], k heads roped into k_cache[b, :, slot], v heads copied into
// v_cache[b, :, slot]. The slot is read on the device (graph-capturable); one outside the cache
// writes nothing.

struct RopeKvGeometry {
  int64_t q_heads, kv_heads, half, slots;
  int64_t xs0, xs1;  // qkv's strides over (B, heads)
  int64_t cb, sb;    // cos / sin strides over B, 0 where broadcast
};

template <typename T>
__global__ void rope_kv_write_kernel(const T* __restrict__ qkv, const T* __restrict__ cos, const T* __restrict__ sin,
                                     T* __restrict__ q, T* __restrict__ k_cache, T* __restrict__ v_cache,
                                     const int64_t* __restrict__ slot_ptr, int64_t pairs, RopeKvGeometry g) {
  const int64_t slot = *slot_ptr;
  const int64_t heads = g.q_heads + 2 * g.kv_heads, d = 2 * g.half;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < pairs;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = idx % g.half, m = (idx / g.half) % heads, b = idx / (g.half * heads);
    const T* xr = qkv + b * g.xs0 + m * g.xs1;
    if (m >= g.q_heads + g.kv_heads) {  // a v head: copied
      if (slot < 0 || slot >= g.slots) continue;
      T* o = v_cache + ((b * g.kv_heads + (m - g.q_heads - g.kv_heads)) * g.slots + slot) * d;
      o[i] = xr[i];
      o[i + g.half] = xr[i + g.half];
      continue;
    }
    const T* c = cos + b * g.cb;
    const T* s = sin + b * g.sb;
    T o1, o2;
    rope_pair(xr[i], xr[i + g.half], c[i], s[i], c[i + g.half], s[i + g.half], o1, o2);
    T* o;
    if (m < g.q_heads) {
      o = q + (b * g.q_heads + m) * d;
    } else {
      if (slot < 0 || slot >= g.slots) continue;
      o = k_cache + ((b * g.kv_heads + (m - g.q_heads)) * g.slots + slot) * d;
    }
    o[i] = o1;
    o[i + g.half] = o2;
  }
}

// --- silu_and_mul --------------------------------------------------------------------------------

template <typename T>
__device__ __forceinline__ T silu_times(T g, T u) {
  const float x = to_float(g);
  const T act = to_dtype<T>(x / (1.0f + expf(-x)));  // at::silu, rounded to the dtype
  return to_dtype<T>(__fmul_rn(to_float(act), to_float(u)));
}

// One thread per kVec outputs; gate / up rows [R, I] with row strides gate_stride / up_stride
// (silu_and_mul: the halves of gu's rows), output [R, I].
template <typename T, int kVec>
__global__ void silu_and_mul_kernel(const T* __restrict__ gate, int64_t gate_stride, const T* __restrict__ up,
                                    int64_t up_stride, T* __restrict__ out, int64_t rows, int64_t inter) {
  using P = Pack<T, kVec>;
  const int64_t packs_per_row = inter / kVec, packs = rows * packs_per_row;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < packs;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = idx / packs_per_row, j = (idx % packs_per_row) * kVec;
    const P gv = *reinterpret_cast<const P*>(gate + row * gate_stride + j);
    const P uv = *reinterpret_cast<const P*>(up + row * up_stride + j);
    P o;
#pragma unroll
    for (int k = 0; k < kVec; ++k) o.v[k] = silu_times(gv.v[k], uv.v[k]);
    *reinterpret_cast<P*>(out + row * inter + j) = o;
  }
}

int64_t elementwise_blocks(int64_t work) {
  return std::clamp<int64_t>((work + kElementwiseThreads - 1) / kElementwiseThreads, 1, kMaxBlocks);
}

at::Tensor empty_contiguous(const at::Tensor& like, at::IntArrayRef sizes) {
  return at::empty(sizes, like.options().memory_format(at::MemoryFormat::Contiguous));
}

}  // namespace

at::Tensor fused_rms_norm_cuda(const at::Tensor& x, const at::Tensor& weight_in, double eps) {
  check_rms_norm_inputs("fused_rms_norm", x, weight_in, eps);
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor y = empty_contiguous(x, x.sizes());
  if (x.numel() == 0) return y;
  const at::Tensor rows = as_rows(x), weight = weight_in.contiguous();
  at::Tensor y_rows = y.view({-1, x.size(-1)});
  SCORCH_DISPATCH_DECODE_TYPES(x.scalar_type(), "fused_rms_norm_cuda", [&] {
    launch_rms_norm<scalar_t, false>(rows, nullptr, weight, nullptr, y_rows, static_cast<float>(eps));
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor> fused_add_rms_norm_cuda(const at::Tensor& h, const at::Tensor& delta,
                                                           const at::Tensor& weight_in, double eps) {
  check_add_rms_norm_inputs(h, delta, weight_in, eps);
  const c10::cuda::CUDAGuard guard(h.device());
  at::Tensor sum = empty_contiguous(h, h.sizes()), y = empty_contiguous(h, h.sizes());
  if (h.numel() == 0) return {sum, y};
  const at::Tensor h_rows = as_rows(h), d_rows = as_rows(delta), weight = weight_in.contiguous();
  at::Tensor sum_rows = sum.view({-1, h.size(-1)}), y_rows = y.view({-1, h.size(-1)});
  SCORCH_DISPATCH_DECODE_TYPES(h.scalar_type(), "fused_add_rms_norm_cuda", [&] {
    launch_rms_norm<scalar_t, true>(h_rows, &d_rows, weight, &sum_rows, y_rows, static_cast<float>(eps));
  });
  return {sum, y};
}

at::Tensor fused_rope_cuda(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  check_rope_inputs(x, cos, sin);
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor out = empty_contiguous(x, x.sizes());
  if (x.numel() == 0) return out;
  const RopeGeometry g = rope_geometry(x, cos, sin);
  const int64_t pairs = x.numel() / 2;
  const auto stream = c10::cuda::getCurrentCUDAStream();
  SCORCH_DISPATCH_DECODE_TYPES(x.scalar_type(), "fused_rope_cuda", [&] {
    SCORCH_LAUNCH(elementwise_blocks(pairs), kElementwiseThreads, 0, stream, rope_kernel<scalar_t>)(
        x.const_data_ptr<scalar_t>(), cos.const_data_ptr<scalar_t>(), sin.const_data_ptr<scalar_t>(),
        out.data_ptr<scalar_t>(), pairs, g);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor rope_kv_write_cuda(const at::Tensor& qkv, const at::Tensor& cos, const at::Tensor& sin, at::Tensor& k_cache,
                              at::Tensor& v_cache, const at::Tensor& slot, int64_t q_heads) {
  const int64_t kv = check_rope_kv_write_inputs(qkv, cos, sin, k_cache, v_cache, slot, q_heads);
  const c10::cuda::CUDAGuard guard(qkv.device());
  const int64_t B = qkv.size(0), D = qkv.size(3);
  at::Tensor q = at::empty({B, q_heads, 1, D}, qkv.options().memory_format(at::MemoryFormat::Contiguous));
  if (qkv.numel() == 0) return q;
  const RopeTableStrides cs = rope_table_strides(cos), ss = rope_table_strides(sin);
  const RopeKvGeometry g{q_heads, kv, D / 2, k_cache.size(2), qkv.stride(0), qkv.stride(1), cs.batch, ss.batch};
  const int64_t pairs = B * (q_heads + 2 * kv) * (D / 2);
  const auto stream = c10::cuda::getCurrentCUDAStream();
  SCORCH_DISPATCH_DECODE_TYPES(qkv.scalar_type(), "rope_kv_write_cuda", [&] {
    SCORCH_LAUNCH(elementwise_blocks(pairs), kElementwiseThreads, 0, stream, rope_kv_write_kernel<scalar_t>)(
        qkv.const_data_ptr<scalar_t>(), cos.const_data_ptr<scalar_t>(), sin.const_data_ptr<scalar_t>(),
        q.data_ptr<scalar_t>(), k_cache.data_ptr<scalar_t>(), v_cache.data_ptr<scalar_t>(),
        slot.const_data_ptr<int64_t>(), pairs, g);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return q;
}

namespace {
// silu_mul over rows gate / up [R, I] (row strides given, stride 1 along I) into out [R, I].
void launch_silu_mul(const at::Tensor& like, const void* gate, int64_t gate_stride, const void* up, int64_t up_stride,
                     at::Tensor& out, int64_t rows, int64_t inter) {
  const auto stream = c10::cuda::getCurrentCUDAStream();
  SCORCH_DISPATCH_DECODE_TYPES(like.scalar_type(), "silu_mul_cuda", [&] {
    constexpr int kVec = 16 / sizeof(scalar_t);
    const scalar_t* g = static_cast<const scalar_t*>(gate);
    const scalar_t* u = static_cast<const scalar_t*>(up);
    scalar_t* o = out.data_ptr<scalar_t>();
    if (inter % kVec == 0 && gate_stride % kVec == 0 && up_stride % kVec == 0 && aligned16(g) && aligned16(u) &&
        aligned16(o)) {
      SCORCH_LAUNCH(elementwise_blocks(rows * inter / kVec), kElementwiseThreads, 0, stream, silu_and_mul_kernel<scalar_t, kVec>)(
          g, gate_stride, u, up_stride, o, rows, inter);
    } else {
      SCORCH_LAUNCH(elementwise_blocks(rows * inter), kElementwiseThreads, 0, stream, silu_and_mul_kernel<scalar_t, 1>)(
          g, gate_stride, u, up_stride, o, rows, inter);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}
}  // namespace

at::Tensor silu_and_mul_cuda(const at::Tensor& gu) {
  check_silu_and_mul_inputs(gu);
  const c10::cuda::CUDAGuard guard(gu.device());
  std::vector<int64_t> sizes = gu.sizes().vec();
  const int64_t inter = sizes.back() / 2;
  sizes.back() = inter;
  at::Tensor out = empty_contiguous(gu, sizes);
  if (out.numel() == 0) return out;
  const at::Tensor rows = as_rows(gu);
  const char* base = static_cast<const char*>(rows.const_data_ptr());
  launch_silu_mul(gu, base, rows.stride(0), base + inter * gu.element_size(), rows.stride(0), out, rows.size(0),
                  inter);
  return out;
}

at::Tensor silu_mul_cuda(const at::Tensor& gate, const at::Tensor& up) {
  check_silu_mul_inputs(gate, up);
  const c10::cuda::CUDAGuard guard(gate.device());
  at::Tensor out = empty_contiguous(gate, gate.sizes());
  if (out.numel() == 0) return out;
  const at::Tensor g = as_rows(gate), u = as_rows(up);
  launch_silu_mul(gate, g.const_data_ptr(), g.stride(0), u.const_data_ptr(), u.stride(0), out, g.size(0), g.size(1));
  return out;
}

}  // namespace scorch::kernels

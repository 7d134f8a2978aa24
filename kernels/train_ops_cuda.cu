// The backward passes of the fused ops, CUDA: fused_rms_norm_backward, fused_rope_backward,
// silu_mul_backward (formulas in ops.h; the gradients in fp32 from the saved inputs, each rounded
// once to the dtype). The CPU loops beside them (train_ops_cpu.cpp) are the reference.
//   rms_norm_backward  one block per row (grid-stride over rows): one read of the row forms both
//       sum(h^2) and sum(w dy h) in fp32, two block sums give r and the projection, a second read
//       writes grad_x (+ grad_residual). grad_weight = sum over rows of dy dtype(h r) needs a
//       reduction across rows: each block accumulates its rows into its own fp32 row of a
//       [blocks, N] scratch (each thread always the same columns, so no atomics), and a second kernel
//       sums the blocks' rows column by column in block order -- deterministic, run after run.
//       The grid is a function of the shape only (at most kNormBackwardBlocks), so are the bits.
//       r is recomputed here with this kernel's order of summation (fp32): it may differ from the
//       forward's r by an ulp of fp32, far below the gradient's rounding to the dtype.
//   rope_backward      one thread per (row, pair d / d + D/2), as the forward; grad may be any
//       strided view (stride 1 along D), the tables broadcast views.
//   silu_mul_backward  one thread per element; gate / up / grad rows with their own strides.
// Not compiled with --use_fast_math (exact expf and division); products and sums are written with
// __fmul_rn / __fadd_rn so that no FMA changes them against the CPU loops (-ffp-contract=off).
#include "kernels/decode_device.cuh"
#include "kernels/cuda_compat.cuh"
#include "kernels/ops_impl.h"

#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cstdint>

namespace scorch::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxRowThreads = 512;
constexpr int64_t kNormBackwardBlocks = 512;
constexpr int64_t kMaxGrid = int64_t{1} << 20;  // grid-stride loops cover the rest

// --- rms_norm backward -------------------------------------------------------------------------

template <typename T>
__global__ void rms_norm_backward_kernel(const T* __restrict__ grad_y, int64_t gy_stride, const T* __restrict__ x,
                                         int64_t x_stride, const T* __restrict__ weight,
                                         const T* __restrict__ grad_residual, int64_t gr_stride,
                                         T* __restrict__ grad_x, float* __restrict__ partials, int64_t rows, int n,
                                         float inv_n, float eps) {
  float* partial = partials ? partials + static_cast<int64_t>(blockIdx.x) * n : nullptr;
  if (partial) {
    for (int i = threadIdx.x; i < n; i += blockDim.x) partial[i] = 0.f;  // this thread's columns only
  }
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* dy = grad_y + row * gy_stride;
    const T* xr = x + row * x_stride;
    float squares = 0.f, dot = 0.f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
      const float h = to_float(xr[i]);
      squares = __fadd_rn(squares, __fmul_rn(h, h));
      dot = __fadd_rn(dot, __fmul_rn(__fmul_rn(to_float(weight[i]), to_float(dy[i])), h));
    }
    squares = block_sum(squares);
    dot = block_sum(dot);
    const float r = rsqrtf(__fadd_rn(__fmul_rn(squares, inv_n), eps));
    const float coef = __fmul_rn(__fmul_rn(__fmul_rn(dot, inv_n), r), r);
    T* gx = grad_x + row * static_cast<int64_t>(n);
    const T* res = grad_residual ? grad_residual + row * gr_stride : nullptr;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
      const float h = to_float(xr[i]), g = to_float(dy[i]);
      float v = __fmul_rn(r, __fsub_rn(__fmul_rn(to_float(weight[i]), g), __fmul_rn(h, coef)));
      if (res) v = __fadd_rn(v, to_float(res[i]));
      gx[i] = to_dtype<T>(v);
      if (partial) partial[i] = __fadd_rn(partial[i], __fmul_rn(g, to_float(to_dtype<T>(__fmul_rn(h, r)))));
    }
  }
}

// grad_weight[j] = sum over the blocks' partial rows, in block order.
template <typename T>
__global__ void sum_partials_kernel(const float* __restrict__ partials, int64_t blocks, int n,
                                    T* __restrict__ grad_weight) {
  for (int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < n;
       j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float sum = 0.f;
    for (int64_t b = 0; b < blocks; ++b) sum = __fadd_rn(sum, partials[b * n + j]);
    grad_weight[j] = to_dtype<T>(sum);
  }
}

// --- rope backward -----------------------------------------------------------------------------

template <typename T>
__global__ void rope_backward_kernel(const T* __restrict__ grad, const T* __restrict__ cos, const T* __restrict__ sin,
                                     T* __restrict__ grad_x, int64_t pairs, RopeGeometry g) {
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < pairs;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = idx % g.half, row = idx / g.half;
    const int64_t t = row % g.tokens, m = (row / g.tokens) % g.heads, b = row / (g.tokens * g.heads);
    const T* gr = grad + b * g.xs0 + m * g.xs1 + t * g.xs2;
    const T* c = cos + b * g.cb + t * g.ct;
    const T* s = sin + b * g.sb + t * g.st;
    const float g1 = to_float(gr[i]), g2 = to_float(gr[i + g.half]);
    T* o = grad_x + row * 2 * g.half;
    o[i] = to_dtype<T>(__fadd_rn(__fmul_rn(g1, to_float(c[i])), __fmul_rn(g2, to_float(s[i + g.half]))));
    o[i + g.half] = to_dtype<T>(__fsub_rn(__fmul_rn(g2, to_float(c[i + g.half])), __fmul_rn(g1, to_float(s[i]))));
  }
}

// --- silu_mul backward -------------------------------------------------------------------------

template <typename T>
__global__ void silu_mul_backward_kernel(const T* __restrict__ grad, int64_t g_stride, const T* __restrict__ gate,
                                         int64_t gate_stride, const T* __restrict__ up, int64_t up_stride,
                                         T* __restrict__ grad_gate, T* __restrict__ grad_up, int64_t rows,
                                         int64_t inter) {
  const int64_t total = rows * inter;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = idx / inter, j = idx % inter;
    const float x = to_float(gate[row * gate_stride + j]), dy = to_float(grad[row * g_stride + j]);
    const float u = to_float(up[row * up_stride + j]);
    const float s = 1.0f / __fadd_rn(1.0f, expf(-x));
    const float ds = __fmul_rn(s, __fadd_rn(1.0f, __fmul_rn(x, __fsub_rn(1.0f, s))));
    grad_gate[idx] = to_dtype<T>(__fmul_rn(__fmul_rn(dy, u), ds));
    grad_up[idx] = to_dtype<T>(__fmul_rn(dy, __fmul_rn(x, s)));
  }
}

int64_t grid_for(int64_t work) { return std::clamp<int64_t>((work + kThreads - 1) / kThreads, 1, kMaxGrid); }

at::Tensor empty_contiguous(const at::Tensor& like, at::IntArrayRef sizes) {
  return at::empty(sizes, like.options().memory_format(at::MemoryFormat::Contiguous));
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> fused_rms_norm_backward_cuda(const at::Tensor& grad_y, const at::Tensor& x,
                                                                const at::Tensor& weight_in, double eps,
                                                                const std::optional<at::Tensor>& grad_residual,
                                                                bool need_weight_grad) {
  check_rms_norm_backward_inputs(grad_y, x, weight_in, eps, grad_residual);
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t n64 = x.size(-1);
  TORCH_CHECK(n64 < (int64_t{1} << 31), "scorch::fused_rms_norm_backward: rows of ", n64, " elements are too long");
  const int n = static_cast<int>(n64);
  at::Tensor grad_x = empty_contiguous(x, x.sizes());
  at::Tensor grad_w = need_weight_grad ? empty_contiguous(weight_in, {n64}) : at::Tensor();
  if (x.numel() == 0) {
    if (need_weight_grad) grad_w.zero_();
    return {grad_x, grad_w};
  }
  const at::Tensor x_rows = as_rows(x), gy_rows = as_rows(grad_y), weight = weight_in.contiguous();
  const at::Tensor res_rows = grad_residual ? as_rows(*grad_residual) : at::Tensor();
  const int64_t rows = x_rows.size(0), blocks = std::min(rows, kNormBackwardBlocks);
  const int threads = static_cast<int>(std::clamp<int64_t>((n64 + 31) / 32 * 32, 32, kMaxRowThreads));
  const at::Tensor partials =
      need_weight_grad ? at::empty({blocks, n64}, x.options().dtype(at::kFloat)) : at::Tensor();
  const auto stream = c10::cuda::getCurrentCUDAStream();
  SCORCH_DISPATCH_DECODE_TYPES(x.scalar_type(), "fused_rms_norm_backward_cuda", [&] {
    SCORCH_LAUNCH(blocks, threads, 0, stream, rms_norm_backward_kernel<scalar_t>)(
        gy_rows.const_data_ptr<scalar_t>(), gy_rows.stride(0), x_rows.const_data_ptr<scalar_t>(), x_rows.stride(0),
        weight.const_data_ptr<scalar_t>(), res_rows.defined() ? res_rows.const_data_ptr<scalar_t>() : nullptr,
        res_rows.defined() ? res_rows.stride(0) : 0, grad_x.data_ptr<scalar_t>(),
        need_weight_grad ? partials.data_ptr<float>() : nullptr, rows, n, 1.0f / static_cast<float>(n),
        static_cast<float>(eps));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    if (need_weight_grad) {
      SCORCH_LAUNCH(grid_for(n64), kThreads, 0, stream, sum_partials_kernel<scalar_t>)(
          partials.const_data_ptr<float>(), blocks, n, grad_w.data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return {grad_x, grad_w};
}

at::Tensor fused_rope_backward_cuda(const at::Tensor& grad, const at::Tensor& cos, const at::Tensor& sin) {
  check_rope_inputs(grad, cos, sin);
  const c10::cuda::CUDAGuard guard(grad.device());
  at::Tensor grad_x = empty_contiguous(grad, grad.sizes());
  if (grad.numel() == 0) return grad_x;
  const RopeGeometry g = rope_geometry(grad, cos, sin);
  const int64_t pairs = grad.numel() / 2;
  const auto stream = c10::cuda::getCurrentCUDAStream();
  SCORCH_DISPATCH_DECODE_TYPES(grad.scalar_type(), "fused_rope_backward_cuda", [&] {
    SCORCH_LAUNCH(grid_for(pairs), kThreads, 0, stream, rope_backward_kernel<scalar_t>)(
        grad.const_data_ptr<scalar_t>(), cos.const_data_ptr<scalar_t>(), sin.const_data_ptr<scalar_t>(),
        grad_x.data_ptr<scalar_t>(), pairs, g);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return grad_x;
}

std::tuple<at::Tensor, at::Tensor> silu_mul_backward_cuda(const at::Tensor& grad, const at::Tensor& gate,
                                                          const at::Tensor& up) {
  check_silu_mul_backward_inputs(grad, gate, up);
  const c10::cuda::CUDAGuard guard(gate.device());
  at::Tensor grad_gate = empty_contiguous(gate, gate.sizes()), grad_up = empty_contiguous(gate, gate.sizes());
  if (gate.numel() == 0) return {grad_gate, grad_up};
  const at::Tensor g_rows = as_rows(grad), gate_rows = as_rows(gate), up_rows = as_rows(up);
  const int64_t rows = gate_rows.size(0), inter = gate_rows.size(1);
  const auto stream = c10::cuda::getCurrentCUDAStream();
  SCORCH_DISPATCH_DECODE_TYPES(gate.scalar_type(), "silu_mul_backward_cuda", [&] {
    SCORCH_LAUNCH(grid_for(rows * inter), kThreads, 0, stream, silu_mul_backward_kernel<scalar_t>)(
        g_rows.const_data_ptr<scalar_t>(), g_rows.stride(0), gate_rows.const_data_ptr<scalar_t>(), gate_rows.stride(0),
        up_rows.const_data_ptr<scalar_t>(), up_rows.stride(0), grad_gate.data_ptr<scalar_t>(),
        grad_up.data_ptr<scalar_t>(), rows, inter);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {grad_gate, grad_up};
}

}  // namespace scorch::kernels

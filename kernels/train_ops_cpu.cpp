// The backward passes of the fused ops, CPU: fused_rms_norm_backward, fused_rope_backward,
// silu_mul_backward (ops.h: the gradients in fp32 from the saved inputs, each rounded once to the
// dtype). One loop over rows each (at::parallel_for), instead of the ~2x as many ATen kernels autograd
// runs for the eager compositions' backward, each a full pass over memory.
//   rms_norm  per row: r recomputed from x as the forward computes it (cpu::inverse_rms), then
//             gw = w dy, dot = sum(gw h) (float64 accumulators), grad_x = r (gw - h r^2 dot / N)
//             (+ grad_residual, added in fp32 before the rounding: add+RMSNorm's backward in the
//             same pass). grad_w = sum over rows of dy dtype(h r): fp32 partial sums per block of
//             rows (blocks fixed by the shape, not by the threads), then summed block by block in
//             order -- the same bits with any number of threads.
//   rope      per (b, m, t) row and pair (d, d + D/2), the transpose of the forward's rotation:
//               dx[d] = g[d] c[d] + g[d + D/2] s[d + D/2],  dx[d + D/2] = g[d + D/2] c[d + D/2] - g[d] s[d]
//   silu_mul  s = 1 / (1 + exp(-g)): dg = dy u s (1 + g (1 - s)), du = dy g s; exp from Sleef
//             (8 lanes) on every element with AVX2, std::exp on the scalar path.
// The loops are instantiated a second time for AVX2 like decode_ops_cpu.cpp's (cpu_loops.h).
#include "kernels/cpu_loops.h"
#include "kernels/ops_impl.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#if defined(SCORCH_DECODE_AVX2)
extern "C" __attribute__((target("avx2,fma"))) __m256 Sleef_expf8_u10(__m256);
#endif

namespace scorch::kernels {
namespace {

using cpu::Dtype;
using cpu::grain_rows;

// --- rms_norm backward -------------------------------------------------------------------------

template <typename T>
struct RmsNormBackwardArgs {
  const T* grad_y;          // [R, N] rows, gy_stride apart
  int64_t gy_stride;
  const T* x;               // [R, N] rows, x_stride apart (add+RMSNorm: the saved sum)
  int64_t x_stride;
  const T* weight;          // [N]
  const T* grad_residual;   // [R, N] rows, gr_stride apart, or nullptr
  int64_t gr_stride;
  T* grad_x;                // [R, N] contiguous
  float* weight_partials;   // [blocks, N] fp32, or nullptr (no weight gradient)
  int64_t n, rows, rows_per_block;
  float eps;
};

template <typename T>
SCORCH_INLINE void rms_norm_backward_row(const RmsNormBackwardArgs<T>& a, int64_t row, float* partial) {
  using D = Dtype<T>;
  const int64_t n = a.n;
  const T* __restrict__ dy = a.grad_y + row * a.gy_stride;
  const T* __restrict__ x = a.x + row * a.x_stride;
  const T* __restrict__ w = a.weight;
  T* __restrict__ gx = a.grad_x + row * n;
  const float r = cpu::inverse_rms(x, n, a.eps);
  double acc[8] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += static_cast<double>(D::load(w[i + k]) * D::load(dy[i + k])) * D::load(x[i + k]);
  for (; i < n; ++i) acc[0] += static_cast<double>(D::load(w[i]) * D::load(dy[i])) * D::load(x[i]);
  const double dot = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  const float coef = static_cast<float>(dot / static_cast<double>(n)) * r * r;
  if (a.grad_residual) {
    const T* __restrict__ res = a.grad_residual + row * a.gr_stride;
    for (int64_t j = 0; j < n; ++j) {
      const float h = D::load(x[j]);
      gx[j] = D::store(r * (D::load(w[j]) * D::load(dy[j]) - h * coef) + D::load(res[j]));
    }
  } else {
    for (int64_t j = 0; j < n; ++j) {
      const float h = D::load(x[j]);
      gx[j] = D::store(r * (D::load(w[j]) * D::load(dy[j]) - h * coef));
    }
  }
  if (partial) {
    for (int64_t j = 0; j < n; ++j) partial[j] += D::load(dy[j]) * D::round(D::load(x[j]) * r);
  }
}

// Blocks [begin, end) of rows_per_block rows; block b's weight partial sum is row b of weight_partials.
template <typename T>
SCORCH_INLINE void rms_norm_backward_blocks(const RmsNormBackwardArgs<T>& a, int64_t begin, int64_t end) {
  for (int64_t b = begin; b < end; ++b) {
    float* partial = a.weight_partials ? a.weight_partials + b * a.n : nullptr;
    const int64_t last = std::min(a.rows, (b + 1) * a.rows_per_block);
    for (int64_t row = b * a.rows_per_block; row < last; ++row) rms_norm_backward_row(a, row, partial);
  }
}

// --- rope backward ----------------------------------------------------------------------------

template <typename T>
struct RopeBackwardArgs {
  const T* grad;  // [B, M, T, D], strides gs0..gs2 (stride 1 along D)
  const T* cos;
  const T* sin;
  T* grad_x;      // [B, M, T, D] contiguous
  int64_t heads, tokens, half;
  int64_t gs0, gs1, gs2;
  RopeTableStrides cs, ss;
};

template <typename T>
SCORCH_INLINE void rope_backward_row(const T* __restrict__ g, const T* __restrict__ c, const T* __restrict__ s,
                                     T* __restrict__ o, int64_t half) {
  using D = Dtype<T>;
  for (int64_t i = 0; i < half; ++i)
    o[i] = D::store(D::load(g[i]) * D::load(c[i]) + D::load(g[i + half]) * D::load(s[i + half]));
  for (int64_t i = half; i < 2 * half; ++i)
    o[i] = D::store(D::load(g[i]) * D::load(c[i]) - D::load(g[i - half]) * D::load(s[i - half]));
}

template <typename T>
SCORCH_INLINE void rope_backward_range(const RopeBackwardArgs<T>& a, int64_t begin, int64_t end) {
  int64_t t = begin % a.tokens, m = (begin / a.tokens) % a.heads, b = begin / (a.tokens * a.heads);
  for (int64_t row = begin; row < end; ++row) {
    rope_backward_row(a.grad + b * a.gs0 + m * a.gs1 + t * a.gs2, a.cos + b * a.cs.batch + t * a.cs.time,
                      a.sin + b * a.ss.batch + t * a.ss.time, a.grad_x + row * 2 * a.half, a.half);
    if (++t == a.tokens) {
      t = 0;
      if (++m == a.heads) m = 0, ++b;
    }
  }
}

// --- silu_mul backward ------------------------------------------------------------------------

template <typename T>
struct SiluMulBackwardArgs {
  const T* grad;  // [R, I] rows, each tensor its own row stride (stride 1 along I)
  const T* gate;
  const T* up;
  T* grad_gate;   // [R, I] contiguous
  T* grad_up;     // [R, I] contiguous
  int64_t g_stride, gate_stride, up_stride;
  int64_t inter;
  int64_t total;  // R * I, or less: the last row ends there (the flat layout, as silu_mul's forward)
};

// v[i] = exp(-v[i]).
SCORCH_INLINE void exp_negated_scalar(float* v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) v[i] = std::exp(-v[i]);
}
#ifdef SCORCH_DECODE_AVX2
// Every element through Sleef (the tail padded to a vector), so that an element's gradient does not
// depend on where a row or chunk ends (the same bits for any layout of the same values).
SCORCH_AVX2_TARGET void exp_negated_avx2(float* v, int64_t n) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(v + i, Sleef_expf8_u10(_mm256_xor_ps(_mm256_loadu_ps(v + i), sign)));
  if (i < n) {
    alignas(32) float tail[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    std::copy(v + i, v + n, tail);
    _mm256_store_ps(tail, Sleef_expf8_u10(_mm256_xor_ps(_mm256_load_ps(tail), sign)));
    std::copy(tail, tail + (n - i), v + i);
  }
}
#endif

template <typename T, bool kAvx2>
SCORCH_INLINE void silu_mul_backward_range(const SiluMulBackwardArgs<T>& a, int64_t begin, int64_t end) {
  using D = Dtype<T>;
  constexpr int64_t kChunk = 512;
  float e[kChunk];
  for (int64_t r = begin; r < end; ++r) {
    const T* __restrict__ dy = a.grad + r * a.g_stride;
    const T* __restrict__ g = a.gate + r * a.gate_stride;
    const T* __restrict__ u = a.up + r * a.up_stride;
    T* __restrict__ dg = a.grad_gate + r * a.inter;
    T* __restrict__ du = a.grad_up + r * a.inter;
    const int64_t row_len = std::min(a.inter, a.total - r * a.inter);
    for (int64_t c0 = 0; c0 < row_len; c0 += kChunk) {
      const int64_t len = std::min(kChunk, row_len - c0);
      for (int64_t i = 0; i < len; ++i) e[i] = D::load(g[c0 + i]);
#ifdef SCORCH_DECODE_AVX2
      if constexpr (kAvx2) {
        exp_negated_avx2(e, len);
      } else {
        exp_negated_scalar(e, len);
      }
#else
      exp_negated_scalar(e, len);
#endif
      for (int64_t i = 0; i < len; ++i) {
        const float x = D::load(g[c0 + i]), grad = D::load(dy[c0 + i]);
        const float s = 1.0f / (1.0f + e[i]);
        dg[c0 + i] = D::store(grad * D::load(u[c0 + i]) * (s * (1.0f + x * (1.0f - s))));
        du[c0 + i] = D::store(grad * (x * s));
      }
    }
  }
}

#ifdef SCORCH_DECODE_AVX2
template <typename T>
SCORCH_AVX2_TARGET void rms_norm_backward_blocks_avx2(const RmsNormBackwardArgs<T>& a, int64_t begin, int64_t end) {
  rms_norm_backward_blocks<T>(a, begin, end);
}
template <typename T>
SCORCH_AVX2_TARGET void rope_backward_range_avx2(const RopeBackwardArgs<T>& a, int64_t begin, int64_t end) {
  rope_backward_range<T>(a, begin, end);
}
template <typename T>
SCORCH_AVX2_TARGET void silu_mul_backward_range_avx2(const SiluMulBackwardArgs<T>& a, int64_t begin, int64_t end) {
  silu_mul_backward_range<T, true>(a, begin, end);
}
#endif

// Rows per block of the weight gradient's partial sums: about kGrainElements elements, a function of
// the shape only (the sum's order must not depend on the number of threads).
int64_t rms_norm_rows_per_block(int64_t n) { return grain_rows(n); }

}  // namespace

std::tuple<at::Tensor, at::Tensor> fused_rms_norm_backward_cpu(const at::Tensor& grad_y, const at::Tensor& x,
                                                               const at::Tensor& weight_in, double eps,
                                                               const std::optional<at::Tensor>& grad_residual,
                                                               bool need_weight_grad) {
  check_rms_norm_backward_inputs(grad_y, x, weight_in, eps, grad_residual);
  const int64_t n = x.size(-1);
  at::Tensor grad_x = at::empty(x.sizes(), x.options().memory_format(at::MemoryFormat::Contiguous));
  at::Tensor grad_w;
  if (x.numel() == 0) {
    if (need_weight_grad) grad_w = at::zeros({n}, weight_in.options());
    return {grad_x, grad_w};
  }
  const at::Tensor x_rows = as_rows(x), gy_rows = as_rows(grad_y), weight = weight_in.contiguous();
  const at::Tensor res_rows = grad_residual ? as_rows(*grad_residual) : at::Tensor();
  const int64_t rows = x_rows.size(0), per_block = rms_norm_rows_per_block(n);
  const int64_t blocks = (rows + per_block - 1) / per_block;
  const at::Tensor partials =
      need_weight_grad ? at::zeros({blocks, n}, x.options().dtype(at::kFloat)) : at::Tensor();
  SCORCH_DISPATCH_DECODE_TYPES(x.scalar_type(), "fused_rms_norm_backward_cpu", [&] {
    const RmsNormBackwardArgs<scalar_t> a{
        gy_rows.const_data_ptr<scalar_t>(),
        gy_rows.stride(0),
        x_rows.const_data_ptr<scalar_t>(),
        x_rows.stride(0),
        weight.const_data_ptr<scalar_t>(),
        res_rows.defined() ? res_rows.const_data_ptr<scalar_t>() : nullptr,
        res_rows.defined() ? res_rows.stride(0) : 0,
        grad_x.data_ptr<scalar_t>(),
        need_weight_grad ? partials.data_ptr<float>() : nullptr,
        n,
        rows,
        per_block,
        static_cast<float>(eps)};
    const bool avx2 = cpu::cpu_has_avx2();
    at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
#ifdef SCORCH_DECODE_AVX2
      if (avx2) return rms_norm_backward_blocks_avx2<scalar_t>(a, begin, end);
#endif
      rms_norm_backward_blocks<scalar_t>(a, begin, end);
    });
    if (need_weight_grad) {
      // The blocks' partial sums, column by column in block order.
      grad_w = at::empty({n}, weight_in.options());
      scalar_t* out = grad_w.data_ptr<scalar_t>();
      const float* p = partials.const_data_ptr<float>();
      at::parallel_for(0, n, 1 << 12, [&](int64_t begin, int64_t end) {
        std::vector<float> column_sums(p + begin, p + end);
        for (int64_t b = 1; b < blocks; ++b)
          for (int64_t j = begin; j < end; ++j) column_sums[j - begin] += p[b * n + j];
        for (int64_t j = begin; j < end; ++j) out[j] = Dtype<scalar_t>::store(column_sums[j - begin]);
      });
    }
  });
  return {grad_x, grad_w};
}

at::Tensor fused_rope_backward_cpu(const at::Tensor& grad, const at::Tensor& cos, const at::Tensor& sin) {
  check_rope_inputs(grad, cos, sin);
  at::Tensor grad_x = at::empty(grad.sizes(), grad.options().memory_format(at::MemoryFormat::Contiguous));
  if (grad.numel() == 0) return grad_x;
  SCORCH_DISPATCH_DECODE_TYPES(grad.scalar_type(), "fused_rope_backward_cpu", [&] {
    const RopeBackwardArgs<scalar_t> a{grad.const_data_ptr<scalar_t>(), cos.const_data_ptr<scalar_t>(),
                                       sin.const_data_ptr<scalar_t>(),  grad_x.data_ptr<scalar_t>(),
                                       grad.size(1),                    grad.size(2),
                                       grad.size(3) / 2,                grad.stride(0),
                                       grad.stride(1),                  grad.stride(2),
                                       rope_table_strides(cos),         rope_table_strides(sin)};
    const bool avx2 = cpu::cpu_has_avx2();
    at::parallel_for(0, grad.size(0) * grad.size(1) * grad.size(2), grain_rows(grad.size(3)),
                     [&](int64_t begin, int64_t end) {
#ifdef SCORCH_DECODE_AVX2
                       if (avx2) return rope_backward_range_avx2<scalar_t>(a, begin, end);
#endif
                       rope_backward_range<scalar_t>(a, begin, end);
                     });
  });
  return grad_x;
}

std::tuple<at::Tensor, at::Tensor> silu_mul_backward_cpu(const at::Tensor& grad, const at::Tensor& gate,
                                                         const at::Tensor& up) {
  check_silu_mul_backward_inputs(grad, gate, up);
  const auto contiguous = gate.options().memory_format(at::MemoryFormat::Contiguous);
  at::Tensor grad_gate = at::empty(gate.sizes(), contiguous), grad_up = at::empty(gate.sizes(), contiguous);
  if (gate.numel() == 0) return {grad_gate, grad_up};
  SCORCH_DISPATCH_DECODE_TYPES(gate.scalar_type(), "silu_mul_backward_cpu", [&] {
    SiluMulBackwardArgs<scalar_t> a{};
    int64_t rows;
    at::Tensor g_rows, gate_rows, up_rows;  // keep the row views alive
    if (grad.is_contiguous() && gate.is_contiguous() && up.is_contiguous()) {
      constexpr int64_t kFlatRow = 1 << 12;  // one flat array in pieces, as the forward
      a = {grad.const_data_ptr<scalar_t>(), gate.const_data_ptr<scalar_t>(), up.const_data_ptr<scalar_t>(),
           grad_gate.data_ptr<scalar_t>(), grad_up.data_ptr<scalar_t>(), kFlatRow, kFlatRow, kFlatRow,
           kFlatRow, gate.numel()};
      rows = (gate.numel() + kFlatRow - 1) / kFlatRow;
    } else {
      g_rows = as_rows(grad), gate_rows = as_rows(gate), up_rows = as_rows(up);
      a = {g_rows.const_data_ptr<scalar_t>(), gate_rows.const_data_ptr<scalar_t>(), up_rows.const_data_ptr<scalar_t>(),
           grad_gate.data_ptr<scalar_t>(),    grad_up.data_ptr<scalar_t>(),         g_rows.stride(0),
           gate_rows.stride(0),               up_rows.stride(0),                    gate_rows.size(1),
           gate.numel()};
      rows = gate_rows.size(0);
    }
    const bool avx2 = cpu::cpu_has_avx2();
    at::parallel_for(0, rows, grain_rows(a.inter), [&](int64_t begin, int64_t end) {
#ifdef SCORCH_DECODE_AVX2
      if (avx2) return silu_mul_backward_range_avx2<scalar_t>(a, begin, end);
#endif
      silu_mul_backward_range<scalar_t, false>(a, begin, end);
    });
  });
  return {grad_gate, grad_up};
}

}  // namespace scorch::kernels

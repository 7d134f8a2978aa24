// Decode-step ops, CPU: fused_rms_norm, fused_add_rms_norm, fused_rope, silu_and_mul.
// Each is one loop over rows (at::parallel_for, chunks of >= kGrainElements elements so that a decode
// step with one or a few rows stays on one thread), reading the dtype, computing in fp32 and rounding
// to the dtype exactly where the ATen composition of transformers does (ops.h). Instead of the 2-8
// ATen calls of the composition (each a dispatch, an allocation and a full pass over memory), one pass.
//   rms_norm      per row: sum of squares in float64 (exact squares of the fp32 values, so the mean
//                 is the correctly rounded one up to the final cast; ATen sums fp32 squares in fp32,
//                 cascaded — the two agree to an ulp of the mean), r = 1 / sqrt(mean + eps) (ATen's
//                 CPU rsqrt), then y = dtype(w * dtype(h * r)).
//   add_rms_norm  the same on s = dtype(h + delta), which is also written out.
//   rope          per (b, m, t) row and pair (d, d + D/2):
//                   out[d]       = dtype(dtype(x[d] c[d])             - dtype(x[d + D/2] s[d]))
//                   out[d + D/2] = dtype(dtype(x[d + D/2] c[d + D/2]) + dtype(x[d] s[d + D/2]))
//                 (x * cos + rotate_half(x) * sin: neg is exact, a + (-b) is a - b in IEEE).
//   silu_and_mul  out = dtype(dtype(g / (1 + exp(-g))) * u), with the exp at::silu uses: Sleef's
//                 expf8_u10 / expf16_u10 (AVX2 / AVX-512) on ATen's whole vector steps of the row,
//                 std::exp on the rest.
// Speed: the loops are written branch-free so that GCC vectorises them (-O3), and are instantiated a
// second time under __attribute__((target("avx2,fma"))) (and AVX-512 for silu), picked at run time
// with the width ATen itself runs at (simd_level). This file is compiled with -ffp-contract=off
// (kernels/CMakeLists.txt): a fused multiply-add would skip the roundings it exists to reproduce.
#include "kernels/cpu_loops.h"
#include "kernels/ops_impl.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/scaled_dot_product_attention.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <c10/util/bit_cast.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#if defined(SCORCH_DECODE_AVX2)
// Exported by libtorch_cpu (torch ships sleef.h for extensions): ATen's Vectorized<float>::exp with
// AVX2 and with AVX-512.
extern "C" __attribute__((target("avx2,fma"))) __m256 Sleef_expf8_u10(__m256);
extern "C" __attribute__((target("avx512f"))) __m512 Sleef_expf16_u10(__m512);
#endif

namespace scorch::kernels {
namespace cpu {
// The vector width ATen's own CPU kernels run with (its CPU detection, capped by the environment
// variable ATEN_CPU_CAPABILITY=default|avx2|avx512): silu then takes its exp from the same Sleef
// function as at::silu, and ATEN_CPU_CAPABILITY=default selects the scalar loops (as tests do).
SimdLevel simd_level() {
#ifdef SCORCH_DECODE_AVX2
  static const SimdLevel level = [] {
    const std::string aten = at::get_cpu_capability();
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    if (aten == "AVX512" && avx512) return SimdLevel::kAvx512;
    if ((aten == "AVX512" || aten == "AVX2") && avx2) return SimdLevel::kAvx2;
    return SimdLevel::kScalar;
  }();
  return level;
#else
  return SimdLevel::kScalar;
#endif
}
}  // namespace cpu

namespace {

using cpu::Dtype;
using cpu::SimdLevel;
using cpu::cpu_has_avx2;
using cpu::cpu_has_avx512;
using cpu::grain_rows;

// --- rms_norm ------------------------------------------------------------------------------------

template <typename T>
struct RmsNormArgs {
  const T* x;        // [R, N] rows, x_stride apart (for add: h)
  int64_t x_stride;
  const T* delta;    // add only: [R, N] rows, delta_stride apart
  int64_t delta_stride;
  const T* weight;   // [N]
  T* sum;            // add only: [R, N] contiguous, dtype(h + delta)
  T* y;              // [R, N] contiguous
  int64_t n;
  float eps;
};

// y = dtype(w * dtype(h * r)), r = 1 / sqrt(mean(h^2) + eps).
template <typename T>
SCORCH_INLINE void normalize_row(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ y, int64_t n,
                                 float eps) {
  const float r = cpu::inverse_rms(x, n, eps);
  for (int64_t i = 0; i < n; ++i) y[i] = Dtype<T>::store(Dtype<T>::load(w[i]) * Dtype<T>::round(Dtype<T>::load(x[i]) * r));
}

template <typename T, bool kAdd>
SCORCH_INLINE void rms_norm_range(const RmsNormArgs<T>& a, int64_t begin, int64_t end) {
  for (int64_t r = begin; r < end; ++r) {
    const T* x = a.x + r * a.x_stride;
    if constexpr (kAdd) {
      const T* d = a.delta + r * a.delta_stride;
      T* s = a.sum + r * a.n;
      for (int64_t i = 0; i < a.n; ++i) s[i] = Dtype<T>::store(Dtype<T>::load(x[i]) + Dtype<T>::load(d[i]));
      x = s;  // normalise the sum (the row is still in L1)
    }
    normalize_row(x, a.weight, a.y + r * a.n, a.n, a.eps);
  }
}

// --- rope ----------------------------------------------------------------------------------------

template <typename T>
struct RopeArgs {
  const T* x;  // [B, M, T, D] with strides xs0..xs2 (stride 1 along D)
  const T* cos;
  const T* sin;
  T* out;      // [B, M, T, D] contiguous
  int64_t heads, tokens, half;
  int64_t xs0, xs1, xs2;
  RopeTableStrides cs, ss;
};

// One (b, m, t) row: the first half of the output, then the second.
template <typename T>
SCORCH_INLINE void rope_row(const T* __restrict__ x, const T* __restrict__ c, const T* __restrict__ s,
                            T* __restrict__ o, int64_t half) {
  using D = Dtype<T>;
  for (int64_t i = 0; i < half; ++i)
    o[i] = D::store(D::round(D::load(x[i]) * D::load(c[i])) - D::round(D::load(x[i + half]) * D::load(s[i])));
  for (int64_t i = half; i < 2 * half; ++i)
    o[i] = D::store(D::round(D::load(x[i]) * D::load(c[i])) + D::round(D::load(x[i - half]) * D::load(s[i])));
}

template <typename T>
SCORCH_INLINE void rope_range(const RopeArgs<T>& a, int64_t begin, int64_t end) {
  // (b, m, t) of the first row, then counted up (three divisions per row would cost more than its math).
  int64_t t = begin % a.tokens, m = (begin / a.tokens) % a.heads, b = begin / (a.tokens * a.heads);
  for (int64_t row = begin; row < end; ++row) {
    rope_row(a.x + b * a.xs0 + m * a.xs1 + t * a.xs2, a.cos + b * a.cs.batch + t * a.cs.time,
             a.sin + b * a.ss.batch + t * a.ss.time, a.out + row * 2 * a.half, a.half);
    if (++t == a.tokens) {
      t = 0;
      if (++m == a.heads) m = 0, ++b;
    }
  }
}

// --- silu_and_mul --------------------------------------------------------------------------------

template <typename T>
struct SiluAndMulArgs {
  const T* gate;  // [R, I] rows, gate_stride apart (silu_and_mul: the first half of gu's rows)
  int64_t gate_stride;
  const T* up;    // [R, I] rows, up_stride apart (silu_and_mul: the second half)
  int64_t up_stride;
  T* out;         // [R, I] contiguous
  int64_t inter;
  int64_t total;  // R * I, or less: the last row ends there (silu_mul's flat layout, see there)
};

SCORCH_INLINE void silu_in_place_scalar(float* v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) v[i] = v[i] / (1.0f + std::exp(-v[i]));
}

// Which silu (SimdLevel): std::exp, or ATen's vectorised x / (1 + exp(-x)) with Sleef's exp, 8 or 16 lanes.
// ATen's CPU loop (cpu_kernel_vec) takes two vectors of the dtype per step (AVX2: 16 fp32 / 32 bf16
// elements, AVX-512: 32 / 64) and leaves the rest of the row to its scalar op: the same split here
// (`block`, from the start of the row: chunks of a row are multiples of 64) gives each element the
// exp ATen gives it, for rows that ATen's threads do not split.
#ifdef SCORCH_DECODE_AVX2
SCORCH_AVX2_TARGET void silu_in_place_avx2(float* v, int64_t n, int64_t block) {
  const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
  const int64_t vectorized = n - n % block;
  int64_t i = 0;
  for (; i < vectorized; i += 8) {
    const __m256 x = _mm256_loadu_ps(v + i);
    const __m256 e = Sleef_expf8_u10(_mm256_xor_ps(x, sign));  // exp(-x)
    _mm256_storeu_ps(v + i, _mm256_div_ps(x, _mm256_add_ps(one, e)));
  }
  silu_in_place_scalar(v + i, n - i);
}

SCORCH_AVX512_TARGET void silu_in_place_avx512(float* v, int64_t n, int64_t block) {
  const __m512 one = _mm512_set1_ps(1.0f);
  const int64_t vectorized = n - n % block;
  int64_t i = 0;
  for (; i < vectorized; i += 16) {
    const __m512 x = _mm512_loadu_ps(v + i);
    const __m512 e = Sleef_expf16_u10(_mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(x),
                                                                           _mm512_set1_epi32(INT32_MIN))));
    _mm512_storeu_ps(v + i, _mm512_div_ps(x, _mm512_add_ps(one, e)));
  }
  silu_in_place_scalar(v + i, n - i);
}
#endif

template <typename T, SimdLevel kSimd>
SCORCH_INLINE void silu_and_mul_range(const SiluAndMulArgs<T>& a, int64_t begin, int64_t end) {
  using D = Dtype<T>;
  constexpr int64_t kChunk = 512;  // fp32 scratch on the stack: silu of the gate, chunk by chunk
  constexpr int64_t kAvx2Block = 2 * 32 / sizeof(T), kAvx512Block = 2 * 64 / sizeof(T);  // ATen's step
  float act[kChunk];
  for (int64_t r = begin; r < end; ++r) {
    const T* g = a.gate + r * a.gate_stride;
    const T* u = a.up + r * a.up_stride;
    T* o = a.out + r * a.inter;
    const int64_t row_len = std::min(a.inter, a.total - r * a.inter);
    for (int64_t c0 = 0; c0 < row_len; c0 += kChunk) {
      const int64_t len = std::min(kChunk, row_len - c0);
      for (int64_t i = 0; i < len; ++i) act[i] = D::load(g[c0 + i]);
#ifdef SCORCH_DECODE_AVX2
      if constexpr (kSimd == SimdLevel::kAvx512) {
        silu_in_place_avx512(act, len, kAvx512Block);
      } else if constexpr (kSimd == SimdLevel::kAvx2) {
        silu_in_place_avx2(act, len, kAvx2Block);
      } else {
        silu_in_place_scalar(act, len);
      }
#else
      silu_in_place_scalar(act, len);
#endif
      for (int64_t i = 0; i < len; ++i) o[c0 + i] = D::store(D::round(act[i]) * D::load(u[c0 + i]));
    }
  }
}

// --- the same loops compiled for AVX2 (+ AVX-512 for silu), chosen at run time -------------------
// Target attributes, not a second translation unit built with -mavx2: every function that is not
// inlined here (c10's, the standard library's) stays the baseline build, so nothing compiled for AVX2
// can be picked by the linker for code that runs on a machine without it. (FMA is enabled for the
// target but never used for the arithmetic: -ffp-contract=off.)

#ifdef SCORCH_DECODE_AVX2
template <typename T, bool kAdd>
SCORCH_AVX2_TARGET void rms_norm_range_avx2(const RmsNormArgs<T>& a, int64_t begin, int64_t end) {
  rms_norm_range<T, kAdd>(a, begin, end);
}
template <typename T>
SCORCH_AVX2_TARGET void rope_range_avx2(const RopeArgs<T>& a, int64_t begin, int64_t end) {
  rope_range<T>(a, begin, end);
}
template <typename T>
SCORCH_AVX2_TARGET void silu_and_mul_range_avx2(const SiluAndMulArgs<T>& a, int64_t begin, int64_t end) {
  silu_and_mul_range<T, SimdLevel::kAvx2>(a, begin, end);
}
template <typename T>
SCORCH_AVX512_TARGET void silu_and_mul_range_avx512(const SiluAndMulArgs<T>& a, int64_t begin, int64_t end) {
  silu_and_mul_range<T, SimdLevel::kAvx512>(a, begin, end);
}
#endif

template <typename T, bool kAdd>
void run_rms_norm(const RmsNormArgs<T>& a, int64_t rows) {
  const bool avx2 = cpu_has_avx2();
  at::parallel_for(0, rows, grain_rows(a.n), [&](int64_t begin, int64_t end) {
#ifdef SCORCH_DECODE_AVX2
    if (avx2) return rms_norm_range_avx2<T, kAdd>(a, begin, end);
#endif
    rms_norm_range<T, kAdd>(a, begin, end);
  });
}

template <typename T>
void run_rope(const RopeArgs<T>& a, int64_t rows) {
  const bool avx2 = cpu_has_avx2();
  at::parallel_for(0, rows, grain_rows(2 * a.half), [&](int64_t begin, int64_t end) {
#ifdef SCORCH_DECODE_AVX2
    if (avx2) return rope_range_avx2<T>(a, begin, end);
#endif
    rope_range<T>(a, begin, end);
  });
}

template <typename T>
void run_silu_and_mul(const SiluAndMulArgs<T>& a, int64_t rows) {
  const bool avx2 = cpu_has_avx2(), avx512 = cpu_has_avx512();
  at::parallel_for(0, rows, grain_rows(a.inter), [&](int64_t begin, int64_t end) {
#ifdef SCORCH_DECODE_AVX2
    if (avx512) return silu_and_mul_range_avx512<T>(a, begin, end);
    if (avx2) return silu_and_mul_range_avx2<T>(a, begin, end);
#endif
    silu_and_mul_range<T, SimdLevel::kScalar>(a, begin, end);
  });
}

at::Tensor empty_like_contiguous(const at::Tensor& x, at::IntArrayRef sizes) {
  return at::empty(sizes, x.options().memory_format(at::MemoryFormat::Contiguous));
}

}  // namespace

at::Tensor fused_rms_norm_cpu(const at::Tensor& x, const at::Tensor& weight_in, double eps) {
  check_rms_norm_inputs("fused_rms_norm", x, weight_in, eps);
  at::Tensor y = empty_like_contiguous(x, x.sizes());
  if (x.numel() == 0) return y;
  const at::Tensor rows = as_rows(x), weight = weight_in.contiguous();
  SCORCH_DISPATCH_DECODE_TYPES(x.scalar_type(), "fused_rms_norm_cpu", [&] {
    const RmsNormArgs<scalar_t> a{rows.const_data_ptr<scalar_t>(), rows.stride(0), nullptr, 0,
                                  weight.const_data_ptr<scalar_t>(), nullptr, y.data_ptr<scalar_t>(),
                                  rows.size(1), static_cast<float>(eps)};
    run_rms_norm<scalar_t, false>(a, rows.size(0));
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor> fused_add_rms_norm_cpu(const at::Tensor& h, const at::Tensor& delta,
                                                          const at::Tensor& weight_in, double eps) {
  check_add_rms_norm_inputs(h, delta, weight_in, eps);
  at::Tensor sum = empty_like_contiguous(h, h.sizes()), y = empty_like_contiguous(h, h.sizes());
  if (h.numel() == 0) return {sum, y};
  const at::Tensor h_rows = as_rows(h), d_rows = as_rows(delta), weight = weight_in.contiguous();
  SCORCH_DISPATCH_DECODE_TYPES(h.scalar_type(), "fused_add_rms_norm_cpu", [&] {
    const RmsNormArgs<scalar_t> a{h_rows.const_data_ptr<scalar_t>(), h_rows.stride(0),
                                  d_rows.const_data_ptr<scalar_t>(), d_rows.stride(0),
                                  weight.const_data_ptr<scalar_t>(), sum.data_ptr<scalar_t>(),
                                  y.data_ptr<scalar_t>(), h_rows.size(1), static_cast<float>(eps)};
    run_rms_norm<scalar_t, true>(a, h_rows.size(0));
  });
  return {sum, y};
}

at::Tensor fused_rope_cpu(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  check_rope_inputs(x, cos, sin);
  at::Tensor out = empty_like_contiguous(x, x.sizes());
  if (x.numel() == 0) return out;
  SCORCH_DISPATCH_DECODE_TYPES(x.scalar_type(), "fused_rope_cpu", [&] {
    const RopeArgs<scalar_t> a{x.const_data_ptr<scalar_t>(), cos.const_data_ptr<scalar_t>(),
                               sin.const_data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
                               x.size(1), x.size(2), x.size(3) / 2, x.stride(0), x.stride(1), x.stride(2),
                               rope_table_strides(cos), rope_table_strides(sin)};
    run_rope(a, x.size(0) * x.size(1) * x.size(2));
  });
  return out;
}

namespace {
// rope_kv_write on arguments already checked (kv: the KV heads; op names the caller).
at::Tensor rope_kv_write_checked(const at::Tensor& qkv, const at::Tensor& cos, const at::Tensor& sin,
                                 at::Tensor& k_cache, at::Tensor& v_cache, const at::Tensor& slot, int64_t q_heads,
                                 int64_t kv, const char* op) {
  const int64_t s = slot.item<int64_t>();  // a host value on the CPU
  TORCH_CHECK(s >= 0 && s < k_cache.size(2), "scorch::", op, ": slot ", s, " is outside the cache's ",
              k_cache.size(2), " slots");
  // The rope of fused_rope (the same roundings), then the cache slots written from its k heads and
  // from the v heads as they are.
  const at::Tensor qk = fused_rope_cpu(qkv.narrow(1, 0, q_heads + kv), cos, sin);  // [B, H + KV, 1, D]
  k_cache.select(2, s).copy_(qk.narrow(1, q_heads, kv).select(2, 0));
  v_cache.select(2, s).copy_(qkv.narrow(1, q_heads + kv, kv).select(2, 0));
  return qk.narrow(1, 0, q_heads).contiguous();
}
}  // namespace

at::Tensor rope_kv_write_cpu(const at::Tensor& qkv, const at::Tensor& cos, const at::Tensor& sin, at::Tensor& k_cache,
                             at::Tensor& v_cache, const at::Tensor& slot, int64_t q_heads) {
  const int64_t kv = check_rope_kv_write_inputs(qkv, cos, sin, k_cache, v_cache, slot, q_heads);
  return rope_kv_write_checked(qkv, cos, sin, k_cache, v_cache, slot, q_heads, kv, "rope_kv_write");
}

at::Tensor decode_attention_cpu(const at::Tensor& qkv, const at::Tensor& cos, const at::Tensor& sin,
                                at::Tensor& k_cache, at::Tensor& v_cache, const at::Tensor& slot,
                                const std::optional<at::Tensor>& mask, int64_t q_heads, double scale) {
  const int64_t kv = check_decode_attention_inputs(qkv, cos, sin, k_cache, v_cache, slot, mask, q_heads, scale);
  // Its definition (ops.h): rope_kv_write, then SDPA with grouped-query heads.
  const at::Tensor q =
      rope_kv_write_checked(qkv, cos, sin, k_cache, v_cache, slot, q_heads, kv, "decode_attention");  // [B, H, 1, D]
  const at::Tensor a = at::scaled_dot_product_attention(q, k_cache, v_cache, mask, 0.0, false, scale,
                                                        /*enable_gqa=*/kv != q_heads);
  return a.transpose(1, 2).reshape({qkv.size(0), 1, q_heads * qkv.size(3)});
}

at::Tensor silu_and_mul_cpu(const at::Tensor& gu) {
  check_silu_and_mul_inputs(gu);
  std::vector<int64_t> sizes = gu.sizes().vec();
  sizes.back() /= 2;
  at::Tensor out = empty_like_contiguous(gu, sizes);
  if (out.numel() == 0) return out;
  const at::Tensor rows = as_rows(gu);
  SCORCH_DISPATCH_DECODE_TYPES(gu.scalar_type(), "silu_and_mul_cpu", [&] {
    const scalar_t* gu_rows = rows.const_data_ptr<scalar_t>();
    const SiluAndMulArgs<scalar_t> a{gu_rows, rows.stride(0), gu_rows + sizes.back(), rows.stride(0),
                                     out.data_ptr<scalar_t>(), sizes.back(), rows.size(0) * sizes.back()};
    run_silu_and_mul(a, rows.size(0));
  });
  return out;
}

at::Tensor silu_mul_cpu(const at::Tensor& gate, const at::Tensor& up) {
  check_silu_mul_inputs(gate, up);
  at::Tensor out = empty_like_contiguous(gate, gate.sizes());
  if (out.numel() == 0) return out;
  SCORCH_DISPATCH_DECODE_TYPES(gate.scalar_type(), "silu_mul_cpu", [&] {
    if (gate.is_contiguous() && up.is_contiguous()) {
      // at::silu runs over a contiguous gate as one flat array (vector steps from its start, the
      // scalar exp on its tail only): the same here, in pieces of kFlatRow elements (a multiple of
      // every vector step) so that threads can share it.
      constexpr int64_t kFlatRow = 1 << 12;
      const int64_t total = gate.numel();
      const SiluAndMulArgs<scalar_t> a{gate.const_data_ptr<scalar_t>(), kFlatRow, up.const_data_ptr<scalar_t>(),
                                       kFlatRow, out.data_ptr<scalar_t>(), kFlatRow, total};
      run_silu_and_mul(a, (total + kFlatRow - 1) / kFlatRow);
    } else {
      const at::Tensor g = as_rows(gate), u = as_rows(up);
      const SiluAndMulArgs<scalar_t> a{g.const_data_ptr<scalar_t>(), g.stride(0), u.const_data_ptr<scalar_t>(),
                                       u.stride(0), out.data_ptr<scalar_t>(), g.size(1), g.numel()};
      run_silu_and_mul(a, g.size(0));
    }
  });
  return out;
}

}  // namespace scorch::kernels

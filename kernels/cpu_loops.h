// What the fused CPU loops of kernels/ share (decode_ops_cpu.cpp, train_ops_cpu.cpp): the dtype as
// fp32 values (load, round to the dtype, store: branch-free and always inlined so that GCC
// vectorises the loops), the AVX2 / AVX-512 target attributes of their second instantiation, the
// vector width ATen runs at, and the grain of at::parallel_for. CPU sources only; they are compiled
// with -O3 -ffp-contract=off (kernels/CMakeLists.txt).
#pragma once
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <c10/util/bit_cast.h>

#include <algorithm>
#include <cstdint>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define SCORCH_DECODE_AVX2 1
#define SCORCH_AVX2_TARGET __attribute__((target("avx2,fma")))
#define SCORCH_AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")))
#endif

#define SCORCH_INLINE inline __attribute__((always_inline))

namespace scorch::kernels::cpu {

// Smallest amount of work (elements) worth a task of its own in at::parallel_for.
constexpr int64_t kGrainElements = 1 << 15;

inline int64_t grain_rows(int64_t row_elements) {
  return std::max<int64_t>(1, kGrainElements / std::max<int64_t>(1, row_elements));
}

// Which vector code: none, AVX2 (+ FMA) or AVX-512, as ATen's own CPU kernels run (its CPU detection,
// capped by ATEN_CPU_CAPABILITY=default|avx2|avx512; default selects the scalar loops, as tests do).
enum class SimdLevel { kScalar, kAvx2, kAvx512 };
SimdLevel simd_level();  // decode_ops_cpu.cpp
inline bool cpu_has_avx2() { return simd_level() != SimdLevel::kScalar; }
inline bool cpu_has_avx512() { return simd_level() == SimdLevel::kAvx512; }

// --- the dtype, as fp32 values: load, round to the dtype (and back), store ------------------------
// bf16 rounds to nearest even as c10::BFloat16(float) does (NaN -> 0x7fc0).
template <typename T>
struct Dtype;

template <>
struct Dtype<float> {
  static SCORCH_INLINE float load(float v) { return v; }
  static SCORCH_INLINE float round(float v) { return v; }
  static SCORCH_INLINE float store(float v) { return v; }
};

template <>
struct Dtype<c10::BFloat16> {
  static SCORCH_INLINE uint16_t bits(float v) {
    const uint32_t u = c10::bit_cast<uint32_t>(v);
    const uint16_t rounded = static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    return v != v ? uint16_t{0x7fc0} : rounded;
  }
  static SCORCH_INLINE float load(c10::BFloat16 v) { return c10::bit_cast<float>(static_cast<uint32_t>(v.x) << 16); }
  static SCORCH_INLINE float round(float v) { return c10::bit_cast<float>(static_cast<uint32_t>(bits(v)) << 16); }
  static SCORCH_INLINE c10::BFloat16 store(float v) { return c10::BFloat16(bits(v), c10::BFloat16::from_bits()); }
};

template <>
struct Dtype<c10::Half> {  // c10's conversions (scalar; fp16 is not a CPU dtype worth AVX code)
  static SCORCH_INLINE float load(c10::Half v) { return static_cast<float>(v); }
  static SCORCH_INLINE float round(float v) { return static_cast<float>(c10::Half(v)); }
  static SCORCH_INLINE c10::Half store(float v) { return c10::Half(v); }
};

// Sum of squares of a row of fp32 values of T, in float64: eight independent accumulators (lanes of
// a vector). The RMS norms' forward and backward both take their r from it.
template <typename T>
SCORCH_INLINE double sum_of_squares(const T* x, int64_t n) {
  double acc[8] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) {
      const double h = Dtype<T>::load(x[i + k]);
      acc[k] += h * h;
    }
  for (; i < n; ++i) {
    const double h = Dtype<T>::load(x[i]);
    acc[0] += h * h;
  }
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// r = 1 / sqrt(mean(h^2) + eps) of a row, as the forward computes it (ATen's CPU rsqrt).
template <typename T>
SCORCH_INLINE float inverse_rms(const T* x, int64_t n, float eps) {
  const float mean = static_cast<float>(sum_of_squares(x, n) / static_cast<double>(n));
  return 1.0f / std::sqrt(mean + eps);
}

}  // namespace scorch::kernels::cpu

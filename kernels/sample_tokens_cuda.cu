// sample_tokens, CUDA: one 512-thread block per row (a grid-stride loop over rows), three reads of
// the row at most and no [N, V] temporary -- what the ATen composition of the sampler (fp32 copy,
// log-softmax, exp, float64 cumsum, searchsorted) costs in five [N, V] passes and two [N, V] buffers.
//   1. the row's max (and whether it holds a NaN), block-reduced;
//   2. tile sums: the row in tiles of 256 elements, lane l of a warp owning elements 8l .. 8l + 7 of
//      a tile; a lane adds its weights w = 2^((x - max) * log2(e) / T) sequentially in float64,
//      the warp's inclusive scan of those gives the tile's sum (kept in shared memory);
//   3. warp 0 finds the tile holding target = u * total (each lane owns a contiguous run of tiles:
//      a warp scan of the run sums, then the owning lane walks its run), then the lane holding it
//      inside the tile (the same lane sums and scan as pass 2, so bitwise the same values), and
//      that lane walks its 8 elements.
// Where float64 rounding between the scan's and a walk's association leaves a walk short of the
// target (a target within ~1e-16 of a boundary), the walk takes its last element of positive
// weight, so a token of weight 0 is never drawn.
#include "kernels/ops.h"
#include "kernels/cuda_compat.cuh"
#include "kernels/ops_impl.h"

#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>

#include <cstdint>

namespace scorch::kernels {
namespace {

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;
constexpr int kPerLane = 8;
constexpr int kTile = 32 * kPerLane;
constexpr float kLog2e = 1.4426950408889634f;
// Tile sums in dynamic shared memory: 46 KiB, so that with the static arrays the block stays under
// the 48 KiB a kernel gets without opting in.
constexpr int kMaxTiles = 46 * 1024 / 8;

__device__ __forceinline__ int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

__device__ __forceinline__ double warp_inclusive_scan(double v, int lane) {
#pragma unroll
  for (int offset = 1; offset < 32; offset *= 2) {
    const double other = __shfl_up_sync(0xffffffffu, v, offset);
    if (lane >= offset) v += other;
  }
  return v;
}

// The weight of element i (0 outside the row): one FFMA and one ex2, the same code in every pass.
template <typename T>
__device__ __forceinline__ float weight_at(const T* r, int64_t i, int64_t vocab, float scale, float shift) {
  return i < vocab ? exp2f(fmaf(static_cast<float>(r[i]), scale, -shift)) : 0.f;
}

// A lane's sequential float64 sum of its kPerLane elements of tile t.
template <typename T>
__device__ __forceinline__ double lane_sum(const T* r, int64_t t, int lane, int64_t vocab, float scale, float shift) {
  const int64_t first = t * kTile + static_cast<int64_t>(lane) * kPerLane;
  double s = 0.0;
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) s += static_cast<double>(weight_at(r, first + j, vocab, scale, shift));
  return s;
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    sample_kernel(const T* __restrict__ logits, int64_t row_stride, const double* __restrict__ uniforms, int64_t rows,
                  int64_t vocab, float inv_t, int64_t* __restrict__ tokens) {
  SCORCH_EXTERN_SHARED(double, tile_sums);
  __shared__ float warp_max[kWarps];
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int64_t tiles = (vocab + kTile - 1) / kTile;
  const float scale = inv_t * kLog2e;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* r = logits + row * row_stride;
    // 1. max and NaN
    float m = -INFINITY;
    int nan = 0;
    for (int64_t i = tid; i < vocab; i += kThreads) {
      const float x = static_cast<float>(r[i]);
      nan |= x != x;
      m = fmaxf(m, x);
    }
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, offset));
    if (lane == 0) warp_max[warp] = m;
    nan = __syncthreads_or(nan);  // also orders warp_max
    m = warp_max[0];
#pragma unroll
    for (int w = 1; w < kWarps; ++w) m = fmaxf(m, warp_max[w]);
    if (nan || !isfinite(m)) {  // a NaN, only -inf, or a +inf logit: no draw, -1 (the engine reports it)
      if (tid == 0) tokens[row] = -1;
      __syncthreads();  // warp_max is rewritten by the next row
      continue;
    }
    const float shift = m * scale;
    // 2. tile sums
    for (int64_t t = warp; t < tiles; t += kWarps) {
      const double s = warp_inclusive_scan(lane_sum(r, t, lane, vocab, scale, shift), lane);
      if (lane == 31) tile_sums[t] = s;
    }
    __syncthreads();
    // 3. locate the target
    if (warp == 0) {
      const int64_t per_lane = (tiles + 31) / 32;
      const int64_t lo = imin(static_cast<int64_t>(lane) * per_lane, tiles);
      const int64_t hi = imin(lo + per_lane, tiles);
      double own = 0.0;
      for (int64_t t = lo; t < hi; ++t) own += tile_sums[t];
      const double incl = warp_inclusive_scan(own, lane);
      // Every lane executes each shuffle (a full-mask shuffle that lane 0 skipped would be undefined
      // behaviour); lane 0 then discards what it got.
      const double up = __shfl_up_sync(0xffffffffu, incl, 1);
      const double before_lane = lane == 0 ? 0.0 : up;
      const double total = __shfl_sync(0xffffffffu, incl, 31);
      const double target = fmin(uniforms[row] * total, total * kSampleBelowOne);
      const unsigned over = __ballot_sync(0xffffffffu, incl > target);
      const int owner = over ? __ffs(over) - 1 : 31;
      // The owner walks its run of tiles: tile k and the target's remainder within it.
      int64_t k = -1;
      double rem = 0.0;
      if (lane == owner) {
        double p = before_lane;
        int64_t last = -1;
        for (int64_t t = lo; t < hi; ++t) {
          if (tile_sums[t] > 0.0) last = t;
          if (p + tile_sums[t] > target) {
            k = t;
            rem = target - p;
            break;
          }
          p += tile_sums[t];
        }
        if (k < 0) {  // rounding left the walk short: the run's last tile with weight
          k = last >= 0 ? last : lo;
          rem = tile_sums[k];
        }
        rem = fmin(fmax(rem, 0.0), tile_sums[k] * kSampleBelowOne);
      }
      k = __shfl_sync(0xffffffffu, k, owner);
      rem = __shfl_sync(0xffffffffu, rem, owner);
      // The lane of tile k holding the remainder, then its element.
      const double s_incl = warp_inclusive_scan(lane_sum(r, k, lane, vocab, scale, shift), lane);
      const double s_up = __shfl_up_sync(0xffffffffu, s_incl, 1);
      const double s_before = lane == 0 ? 0.0 : s_up;
      const unsigned hit = __ballot_sync(0xffffffffu, s_incl > rem);
      const int holder = hit ? __ffs(hit) - 1 : 31;
      if (lane == holder) {
        const int64_t first = k * kTile + static_cast<int64_t>(lane) * kPerLane;
        double q = s_before;
        int64_t chosen = -1, last = -1;
        for (int j = 0; j < kPerLane && chosen < 0; ++j) {
          const double w = static_cast<double>(weight_at(r, first + j, vocab, scale, shift));
          if (w > 0.0) last = first + j;
          if (q + w > rem) chosen = first + j;
          q += w;
        }
        if (chosen < 0 || weight_at(r, chosen, vocab, scale, shift) <= 0.f) chosen = last;
        if (chosen < 0) {  // the holder's elements all have weight 0 (rounding): the tile's last with weight
          for (int64_t i = imin(k * kTile + kTile, vocab) - 1; i >= k * kTile; --i) {
            if (weight_at(r, i, vocab, scale, shift) > 0.f) {
              chosen = i;
              break;
            }
          }
        }
        tokens[row] = chosen;
      }
    }
    __syncthreads();  // tile_sums and warp_max are rewritten by the next row
  }
}

}  // namespace

at::Tensor sample_tokens_cuda(const at::Tensor& logits, const at::Tensor& uniforms_in, double temperature) {
  check_sample_tokens_inputs(logits, uniforms_in, temperature);
  const c10::cuda::CUDAGuard guard(logits.device());
  const int64_t rows = logits.size(0), vocab = logits.size(1);
  const int64_t tiles = (vocab + kTile - 1) / kTile;
  TORCH_CHECK(tiles <= kMaxTiles, "scorch::sample_tokens: a vocabulary of ", vocab, " is above the CUDA kernel's ",
              int64_t{kMaxTiles} * kTile, " (its tile sums must fit in 46 KiB of shared memory)");
  const at::Tensor uniforms = uniforms_in.contiguous();
  at::Tensor tokens = at::empty({rows}, logits.options().dtype(at::kLong));
  if (rows == 0) return tokens;
  const int64_t grid = std::min<int64_t>(rows, 65535);
  const size_t shared = static_cast<size_t>(tiles) * sizeof(double);
  const float inv_t = static_cast<float>(1.0 / temperature);
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, logits.scalar_type(), "scorch::sample_tokens (CUDA)", [&] {
    SCORCH_LAUNCH(grid, kThreads, shared, stream, sample_kernel<scalar_t>)(logits.const_data_ptr<scalar_t>(), logits.stride(0),
                                                               uniforms.const_data_ptr<double>(), rows, vocab, inv_t,
                                                               tokens.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return tokens;
}

}  // namespace scorch::kernels

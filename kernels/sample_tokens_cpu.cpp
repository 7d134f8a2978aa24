// sample_tokens, CPU reference: per row, the max, the float64 total of the weights
// w_i = exp((x_i - max) / T), and a second sequential pass to the first index whose running sum
// exceeds u * total. Rows run in parallel (at::parallel_for); each row is sequential, so the
// result does not depend on the thread count.
#include "kernels/ops.h"
#include "kernels/ops_impl.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace scorch::kernels {
namespace {

template <typename T>
int64_t draw_row(const T* r, int64_t vocab, float inv_t, double u) {
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < vocab; ++i) {
    const float x = static_cast<float>(r[i]);
    if (std::isnan(x)) return -1;
    m = std::max(m, x);
  }
  if (!std::isfinite(m)) return -1;  // only -inf (no token has weight) or a +inf logit (no distribution)
  const auto weight = [&](int64_t i) { return static_cast<double>(std::exp((static_cast<float>(r[i]) - m) * inv_t)); };
  double total = 0.0;
  for (int64_t i = 0; i < vocab; ++i) total += weight(i);
  const double target = std::min(u * total, total * kSampleBelowOne);
  double run = 0.0;
  int64_t last_positive = -1;
  for (int64_t i = 0; i < vocab; ++i) {
    const double w = weight(i);
    if (w > 0.0) last_positive = i;
    run += w;
    if (run > target) return i;
  }
  return last_positive;  // not reached: the same sum in the same order ends at total > target
}

}  // namespace

at::Tensor sample_tokens_cpu(const at::Tensor& logits, const at::Tensor& uniforms_in, double temperature) {
  check_sample_tokens_inputs(logits, uniforms_in, temperature);
  const int64_t rows = logits.size(0), vocab = logits.size(1), row_stride = logits.stride(0);
  const at::Tensor uniforms = uniforms_in.contiguous();
  at::Tensor tokens = at::empty({rows}, logits.options().dtype(at::kLong));
  const float inv_t = static_cast<float>(1.0 / temperature);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, logits.scalar_type(), "scorch::sample_tokens (CPU)", [&] {
    const scalar_t* base = logits.const_data_ptr<scalar_t>();
    const double* u = uniforms.const_data_ptr<double>();
    int64_t* out = tokens.data_ptr<int64_t>();
    at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) out[r] = draw_row(base + r * row_stride, vocab, inv_t, u[r]);
    });
  });
  return tokens;
}

}  // namespace scorch::kernels

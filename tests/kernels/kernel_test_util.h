// Helpers shared by the kernel tests: the naive float64 formula every kernel is checked against,
// and the relative error used in every comparison.
#pragma once
#include <ATen/ATen.h>

#include <algorithm>
#include <tuple>

namespace scorch::test {

// max |a - b| / max |b| (both converted to float64); 0 when both are all-zero.
inline double relative_error(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor ad = a.to(at::kDouble), bd = b.to(at::kDouble);
  const double scale = bd.numel() ? bd.abs().max().item<double>() : 0.0;
  const double diff = bd.numel() ? (ad - bd).abs().max().item<double>() : 0.0;
  return scale > 0.0 ? diff / scale : diff;
}

// The textbook formula in float64 on the (already rounded) input values:
//   log_softmax(z / T) gathered at the targets (0 for ignored rows), entropy -sum p log p.
// z64 may require grad; the results are then differentiable by ATen's autograd.
inline std::tuple<at::Tensor, at::Tensor> naive_logprobs(const at::Tensor& z64, const at::Tensor& targets,
                                                         double temperature) {
  at::Tensor log_p = at::log_softmax(z64 / temperature, 1);
  at::Tensor picked = log_p.gather(1, targets.clamp_min(0).unsqueeze(1)).squeeze(1);
  at::Tensor logp = picked * (targets >= 0).to(at::kDouble);
  at::Tensor entropy = -(log_p.exp() * log_p).sum(1);
  return {logp, entropy};
}

// Random values N(0, scale^2) moved away from 0 by at least `floor` (never all zeros, no sign-less 0).
inline at::Tensor random_nonzero(at::IntArrayRef sizes, double scale = 1.0, double floor = 1e-3) {
  at::Tensor t = at::randn(sizes) * scale;
  return t + at::sign(t) * floor + (t == 0).to(at::kFloat) * floor;
}

// Random targets in [0, V) with roughly every fifth row ignored (-100).
inline at::Tensor random_targets(int64_t n, int64_t vocab, bool with_ignored = true) {
  at::Tensor t = at::randint(0, vocab, {n}, at::kLong);
  if (with_ignored) t.masked_fill_(at::rand({n}) < 0.2, -100);
  return t;
}

}  // namespace scorch::test

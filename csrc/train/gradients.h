// Gradient hygiene for one optimizer step: clipping by global norm, and the non-finite guard
// (DESIGN.md "Errors and exit codes": a run stopped by the non-finite policy exits 3).
//
// The order a trainer uses, after the accumulated backward (and the gradient all-reduce):
//   const double norm = clip_grad_norm(params, max_grad_norm);   // pre-clip norm
//   if (guard.check(loss, norm, params)) optimizer.step();        // else: grads were zeroed, step skipped
//   optimizer.zero_grad();
#pragma once
#include <cstdint>
#include <map>
#include <string>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

namespace scorch {

// Global L2 norm of all defined gradients (accumulated in fp32 per tensor, summed in fp64).
// If max_norm > 0 and the norm is finite and above max_norm, every gradient is scaled by
// max_norm / (norm + 1e-6) (torch.nn.utils.clip_grad_norm_'s coefficient). A non-finite norm
// leaves the gradients untouched (the guard decides). Returns the norm before clipping;
// 0 when no parameter has a gradient.
double clip_grad_norm(const std::map<std::string, at::Tensor>& params, double max_norm);

// Skips steps whose loss or gradient norm is NaN/Inf and stops the run after `max_consecutive`
// of them in a row (a finite step resets the run of failures). max_consecutive <= 0: never stop.
class NonFiniteGuard {
 public:
  explicit NonFiniteGuard(int64_t max_consecutive) : max_consecutive_(max_consecutive) {}

  // True: the step is finite, go ahead. False: the gradients of `params` were dropped (set to
  // undefined) and the skip counted. Throws scorch::NonFiniteStop on the K-th consecutive skip.
  bool check(double loss, double grad_norm, const std::map<std::string, at::Tensor>& params);

  int64_t consecutive() const { return consecutive_; }
  int64_t total_skipped() const { return total_skipped_; }

  // Counters survive a resume (a run that skipped 2 steps before a crash has 1 left after it).
  nlohmann::json to_json() const;
  void load_json(const nlohmann::json& j);

 private:
  int64_t max_consecutive_;
  int64_t consecutive_ = 0;
  int64_t total_skipped_ = 0;
};

}  // namespace scorch

// Global-norm clipping and the non-finite step guard (see gradients.h).
#include "train/gradients.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <cmath>
#include <vector>

#include "common/error.h"
#include "common/log.h"

namespace scorch {

double clip_grad_norm(const std::map<std::string, at::Tensor>& params, double max_norm) {
  at::NoGradGuard no_grad;
  // Per device: fp32 norms of each gradient, squared and summed in fp64 there, then one copy
  // to the host per device (a single sync on a one-GPU run).
  std::map<std::string, std::vector<at::Tensor>> norms_by_device;
  std::vector<at::Tensor> grads;
  for (const auto& [name, p] : params) {
    const at::Tensor& g = p.grad();
    if (!g.defined()) continue;
    grads.push_back(g);
    norms_by_device[g.device().str()].push_back(at::linalg_vector_norm(g, 2, c10::nullopt, false, at::kFloat));
  }
  if (grads.empty()) return 0.0;
  double sum_sq = 0.0;
  for (const auto& [device, norms] : norms_by_device) {
    sum_sq += at::stack(norms).to(at::kDouble).square().sum().item<double>();
  }
  const double total = std::sqrt(sum_sq);
  if (max_norm > 0 && std::isfinite(total) && total > max_norm) {
    const double coef = max_norm / (total + 1e-6);
    for (auto& g : grads) g.mul_(coef);
  }
  return total;
}

bool NonFiniteGuard::check(double loss, double grad_norm, const std::map<std::string, at::Tensor>& params) {
  if (std::isfinite(loss) && std::isfinite(grad_norm)) {
    consecutive_ = 0;
    return true;
  }
  for (const auto& [name, p] : params) {
    if (p.grad().defined()) const_cast<at::Tensor&>(p).mutable_grad() = at::Tensor();
  }
  ++consecutive_;
  ++total_skipped_;
  log::warn("non-finite step skipped (loss ", loss, ", grad norm ", grad_norm, "): ", consecutive_, " in a row, ",
            total_skipped_, " in total");
  if (max_consecutive_ > 0 && consecutive_ >= max_consecutive_) {
    throw NonFiniteStop("stopping: " + std::to_string(consecutive_) +
                        " consecutive optimizer steps had a non-finite loss or gradient (train.max_nonfinite_steps = " +
                        std::to_string(max_consecutive_) +
                        "). The last checkpoint is intact; lower optim.learning_rate, check the data, or raise "
                        "train.max_nonfinite_steps");
  }
  return false;
}

nlohmann::json NonFiniteGuard::to_json() const {
  return {{"consecutive", consecutive_}, {"total_skipped", total_skipped_}};
}

void NonFiniteGuard::load_json(const nlohmann::json& j) {
  if (!j.is_object()) return;
  consecutive_ = j.value("consecutive", int64_t{0});
  total_skipped_ = j.value("total_skipped", int64_t{0});
}

}  // namespace scorch

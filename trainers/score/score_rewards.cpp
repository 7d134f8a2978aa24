#include "trainers/score/score_rewards.h"

#include <ATen/ATen.h>

#include <stdexcept>

#include "kernels/ops.h"

namespace scorch::trainers {

at::Tensor score_turn_returns(const at::Tensor& r1, const at::Tensor& r2, int stage, double alpha) {
  if (r1.dim() != 1 || r1.sizes() != r2.sizes()) throw std::invalid_argument("score_turn_returns: r1, r2 must be [N]");
  const at::Tensor a = r1.to(at::kDouble), b = r2.to(at::kDouble);
  at::Tensor turn1, turn2;
  if (stage == 1) {
    turn1 = at::zeros_like(a);            // no reward on turn 1: it is held by the KL alone
    turn2 = b;
  } else if (stage == 2) {
    turn1 = a;
    turn2 = b + alpha * (b - a);          // reward shaping: bonus for progress, penalty for regress
  } else {
    throw std::invalid_argument("score_turn_returns: stage must be 1 or 2");
  }
  return at::stack({turn1, turn2}, 1).to(at::kFloat);  // [N, 2]
}

std::pair<double, double> score_turn_kl(int stage, double beta1, double beta2) {
  if (stage == 1) return {beta2, beta1};
  if (stage == 2) return {beta1, beta1};
  throw std::invalid_argument("score_turn_kl: stage must be 1 or 2");
}

at::Tensor score_turn_advantages(const at::Tensor& returns, ScorePolicyGradient policy_gradient, int64_t group_size,
                                 AdvantageEstimator mode, RewardScaling scale) {
  if (returns.dim() != 2) throw std::invalid_argument("score_turn_advantages: returns must be [N, K]");
  const at::Tensor r = returns.to(at::kFloat);
  if (policy_gradient == ScorePolicyGradient::kReinforce) return at::nan_to_num(r, 0.0).contiguous();
  std::vector<at::Tensor> columns;
  for (int64_t t = 0; t < r.size(1); ++t) {
    columns.push_back(std::get<0>(group_advantages(r.select(1, t).contiguous(), group_size, option_name(mode), 1e-4, option_name(scale))));
  }
  return at::stack(columns, 1).contiguous();  // [N, K]
}

at::Tensor route_to_tokens(const at::Tensor& per_turn, const at::Tensor& turn_of_token) {
  if (per_turn.dim() != 2 || turn_of_token.dim() != 2 || per_turn.size(0) != turn_of_token.size(0)) {
    throw std::invalid_argument("route_to_tokens: per_turn [B, K] and turn_of_token [B, C]");
  }
  const at::Tensor turn = turn_of_token.to(at::kLong);
  const at::Tensor index = (turn - 1).clamp(0, per_turn.size(1) - 1);             // [B, C]
  const at::Tensor values = per_turn.to(at::kFloat).gather(1, index);            // [B, C]
  return at::where(turn.ge(1) & turn.le(per_turn.size(1)), values, at::zeros_like(values));
}

}  // namespace scorch::trainers

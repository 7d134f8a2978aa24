// Learning-rate schedules as a pure function lr(step): constant, linear or cosine decay after a
// linear warmup, with a floor at min_lr_ratio * base_lr. Pure, so resuming needs only the step.
//
// `step` is the 0-based index of the optimizer step about to be taken (0 for the first update).
//   warmup (step < W):  base * (step + 1) / W       -- the first step already learns (HF's
//                                                     schedule gives lr 0 at step 0: a wasted step)
//   after warmup, progress p = (step - W) / max(1, total - W), clamped to [0, 1]:
//     constant: base
//     linear:   base * (r + (1 - r) * (1 - p))
//     cosine:   base * (r + (1 - r) * 0.5 * (1 + cos(pi * p)))
//   where r = min_lr_ratio. With r = 0 the decay is HF's get_{linear,cosine}_schedule_with_warmup.
// W = warmup_steps if > 0, else ceil(warmup_ratio * total_steps) (HF's rule).
#pragma once
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace scorch {

struct OptimSection;

class LrSchedule {
 public:
  enum class Type { Constant, Linear, Cosine };

  LrSchedule(Type type, double base_lr, int64_t total_steps, int64_t warmup_steps = 0,
             double warmup_ratio = 0.0, double min_lr_ratio = 0.0);
  // From the config's optim section ("constant" | "linear" | "cosine").
  static LrSchedule from_config(const OptimSection& optim, int64_t total_steps);
  static Type parse_type(const std::string& name);  // UserError for an unknown name

  double lr(int64_t step) const;
  int64_t warmup_steps() const { return warmup_; }
  int64_t total_steps() const { return total_; }

  // For checkpoints (the schedule is pure; the JSON records what produced the lr curve).
  nlohmann::json to_json() const;
  static LrSchedule from_json(const nlohmann::json& j);

 private:
  Type type_;
  double base_lr_;
  int64_t total_;
  int64_t warmup_;
  double min_lr_ratio_;
};

}  // namespace scorch

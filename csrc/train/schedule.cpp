// Learning-rate schedules (formulas in schedule.h).
#include "train/schedule.h"

#include <algorithm>
#include <cmath>

#include "common/error.h"
#include "config/config.h"

namespace scorch {
namespace {
const char* type_name(LrSchedule::Type t) {
  switch (t) {
    case LrSchedule::Type::Constant: return "constant";
    case LrSchedule::Type::Linear: return "linear";
    case LrSchedule::Type::Cosine: return "cosine";
  }
  return "constant";
}
}  // namespace

LrSchedule::LrSchedule(Type type, double base_lr, int64_t total_steps, int64_t warmup_steps, double warmup_ratio,
                       double min_lr_ratio)
    : type_(type), base_lr_(base_lr), total_(total_steps), min_lr_ratio_(min_lr_ratio) {
  if (total_steps < 0) throw UserError("lr schedule: total steps must be >= 0, got " + std::to_string(total_steps));
  if (warmup_steps < 0) throw UserError("optim.warmup_steps must be >= 0, got " + std::to_string(warmup_steps));
  if (warmup_ratio < 0 || warmup_ratio > 1) throw UserError("optim.warmup_ratio must be in [0, 1]");
  if (min_lr_ratio < 0 || min_lr_ratio > 1) throw UserError("optim.min_lr_ratio must be in [0, 1]");
  warmup_ = warmup_steps > 0 ? warmup_steps
                             : static_cast<int64_t>(std::ceil(warmup_ratio * static_cast<double>(total_steps)));
}

LrSchedule::Type LrSchedule::parse_type(const std::string& name) {
  if (name == "constant") return Type::Constant;
  if (name == "linear") return Type::Linear;
  if (name == "cosine") return Type::Cosine;
  throw UserError("optim.lr_scheduler_type '" + name + "' is unknown; use `constant`, `linear` or `cosine`");
}

LrSchedule LrSchedule::from_config(const OptimSection& optim, int64_t total_steps) {
  return LrSchedule(parse_type(optim.lr_scheduler_type), optim.learning_rate, total_steps, optim.warmup_steps,
                    optim.warmup_ratio, optim.min_lr_ratio);
}

double LrSchedule::lr(int64_t step) const {
  if (step < warmup_) return base_lr_ * static_cast<double>(step + 1) / static_cast<double>(warmup_);
  if (type_ == Type::Constant) return base_lr_;
  const double span = static_cast<double>(std::max<int64_t>(1, total_ - warmup_));
  const double p = std::clamp(static_cast<double>(step - warmup_) / span, 0.0, 1.0);
  const double r = min_lr_ratio_;
  const double shape = type_ == Type::Linear ? 1.0 - p : 0.5 * (1.0 + std::cos(M_PI * p));
  return base_lr_ * (r + (1.0 - r) * shape);
}

nlohmann::json LrSchedule::to_json() const {
  return {{"type", type_name(type_)}, {"base_lr", base_lr_}, {"total_steps", total_},
          {"warmup_steps", warmup_}, {"min_lr_ratio", min_lr_ratio_}};
}

LrSchedule LrSchedule::from_json(const nlohmann::json& j) {
  try {
    return LrSchedule(parse_type(j.at("type").get<std::string>()), j.at("base_lr").get<double>(),
                      j.at("total_steps").get<int64_t>(), j.at("warmup_steps").get<int64_t>(), 0.0,
                      j.at("min_lr_ratio").get<double>());
  } catch (const nlohmann::json::exception& e) {
    throw UserError(std::string("scheduler state is corrupt: ") + e.what());
  }
}

}  // namespace scorch

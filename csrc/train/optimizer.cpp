// AdamW in ATen ops (see optimizer.h for the precision modes and the no-decay rule).
// The update is torch.optim.AdamW's (foreach=False path), per parameter with step count t:
//   w <- w * (1 - lr * wd)
//   m <- m + (1 - b1) (g - m)                 (lerp, as torch does)
//   v <- b2 v + (1 - b2) g^2
//   w <- w - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
#include "train/optimizer.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <cmath>
#include <set>
#include <sstream>

#include "common/error.h"
#include "common/log.h"
#include "common/strings.h"

namespace scorch {
namespace {

std::string shape_text(at::IntArrayRef sizes) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < sizes.size(); ++i) out << (i ? ", " : "") << sizes[i];
  out << "]";
  return out.str();
}

// The moments' dtype: fp32 for fp32/bf16/fp16 parameters, fp64 for fp64 ones (tests, references).
at::ScalarType state_dtype(const at::Tensor& param) {
  return param.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

NamedTensors trainable(const NamedTensors& params) {
  NamedTensors out;
  for (const auto& [name, p] : params) {
    if (p.requires_grad()) out.emplace(name, p);
  }
  return out;
}

}  // namespace

bool is_no_decay_param(const std::string& name, const at::Tensor& param) {
  return ends_with(name, "norm.weight") || ends_with(name, ".bias") || param.dim() <= 1;
}

AdamW::AdamW(const NamedTensors& params, const AdamWOptions& options, const AdamWSettings& settings)
    : params_(trainable(params)), options_(options), settings_(settings) {
  ParamGroup decay{"decay", {}, options.weight_decay, 1.0};
  ParamGroup no_decay{"no_decay", {}, 0.0, 1.0};
  for (const auto& [name, p] : params_) {
    const bool skip = !settings.decay_norms_and_biases && is_no_decay_param(name, p);
    (skip ? no_decay : decay).params.push_back(name);
  }
  std::vector<ParamGroup> groups;
  if (!decay.params.empty()) groups.push_back(std::move(decay));
  if (!no_decay.params.empty()) groups.push_back(std::move(no_decay));
  init_groups(std::move(groups));
}

AdamW::AdamW(const NamedTensors& params, std::vector<ParamGroup> groups, const AdamWOptions& options,
             const AdamWSettings& settings)
    : params_(trainable(params)), options_(options), settings_(settings) {
  init_groups(std::move(groups));
}

void AdamW::init_groups(std::vector<ParamGroup> groups) {
  std::set<std::string> seen;
  for (const auto& group : groups) {
    for (const auto& name : group.params) {
      if (!params_.count(name)) {
        throw UserError("optimizer group '" + group.name + "' names parameter '" + name +
                        "', which the model does not have (or which does not require grad)");
      }
      if (!seen.insert(name).second) {
        throw UserError("parameter '" + name + "' is in more than one optimizer group");
      }
    }
  }
  groups_ = std::move(groups);
}

bool AdamW::uses_master(const at::Tensor& param) const {
  const auto t = param.scalar_type();
  return settings_.master_weights && (t == at::kBFloat16 || t == at::kHalf);
}

void AdamW::step() {
  at::NoGradGuard no_grad;
  ++steps_;
  for (const auto& group : groups_) {
    const double lr = options_.lr * group.lr_scale;
    for (const auto& name : group.params) {
      at::Tensor& p = params_.at(name);
      const at::Tensor& grad = p.grad();
      if (!grad.defined()) continue;
      ParamState& s = state_[name];
      const auto dtype = state_dtype(p);
      if (!s.exp_avg.defined()) {
        s.exp_avg = at::zeros(p.sizes(), p.options().dtype(dtype));
        s.exp_avg_sq = at::zeros(p.sizes(), p.options().dtype(dtype));
      }
      if (uses_master(p) && !s.master.defined()) s.master = p.detach().to(dtype, /*non_blocking=*/false, /*copy=*/true);
      s.step += 1;

      const at::Tensor g = grad.to(dtype);
      // w: the tensor the update is applied to (the parameter itself when it is fp32/fp64).
      at::Tensor w = s.master.defined() ? s.master : (p.scalar_type() == dtype ? p : p.to(dtype));
      if (group.weight_decay != 0.0) w.mul_(1.0 - lr * group.weight_decay);
      s.exp_avg.lerp_(g, 1.0 - options_.beta1);
      s.exp_avg_sq.mul_(options_.beta2).addcmul_(g, g, 1.0 - options_.beta2);
      const double bias1 = 1.0 - std::pow(options_.beta1, static_cast<double>(s.step));
      const double bias2 = 1.0 - std::pow(options_.beta2, static_cast<double>(s.step));
      const at::Tensor denom = (s.exp_avg_sq.sqrt() / std::sqrt(bias2)).add_(options_.eps);
      w.addcdiv_(s.exp_avg, denom, -lr / bias1);
      if (!w.is_same(p)) p.copy_(w);  // round the fp32 value back into the bf16 parameter
    }
  }
}

void AdamW::zero_grad() {
  for (auto& [name, p] : params_) {
    if (p.grad().defined()) p.mutable_grad() = at::Tensor();
  }
}

NamedTensors AdamW::state_tensors() const {
  NamedTensors out;
  for (const auto& [name, s] : state_) {
    if (!s.exp_avg.defined()) continue;
    out.emplace("exp_avg/" + name, s.exp_avg.detach().cpu().contiguous());
    out.emplace("exp_avg_sq/" + name, s.exp_avg_sq.detach().cpu().contiguous());
    if (s.master.defined()) out.emplace("master/" + name, s.master.detach().cpu().contiguous());
  }
  return out;
}

nlohmann::json AdamW::state_json() const {
  nlohmann::json j;
  j["type"] = "adamw";
  j["step"] = steps_;
  j["lr"] = options_.lr;
  j["beta1"] = options_.beta1;
  j["beta2"] = options_.beta2;
  j["eps"] = options_.eps;
  j["weight_decay"] = options_.weight_decay;
  j["master_weights"] = settings_.master_weights;
  j["decay_norms_and_biases"] = settings_.decay_norms_and_biases;
  j["groups"] = nlohmann::json::array();
  for (const auto& g : groups_) {
    j["groups"].push_back({{"name", g.name}, {"params", g.params}, {"weight_decay", g.weight_decay}, {"lr_scale", g.lr_scale}});
  }
  nlohmann::json steps = nlohmann::json::object();
  for (const auto& [name, s] : state_) {
    if (s.exp_avg.defined()) steps[name] = s.step;
  }
  j["param_steps"] = steps;
  return j;
}

void AdamW::load_state(const NamedTensors& tensors, const nlohmann::json& j) {
  const std::string where = "optimizer state";
  if (!j.is_object() || j.value("type", "") != "adamw" || !j.contains("step") || !j.contains("param_steps") ||
      !j["step"].is_number_integer() || !j["param_steps"].is_object()) {
    throw UserError(where + " is not an AdamW state (missing `type: adamw`, `step` or `param_steps`): "
                    "the checkpoint is corrupt or from another optimizer");
  }
  // Hyper-parameters come from the config (a --resume with an edited config wins); say so if they differ.
  for (const auto& [key, now] : {std::pair<const char*, double>{"beta1", options_.beta1}, {"beta2", options_.beta2},
                                 {"eps", options_.eps}, {"weight_decay", options_.weight_decay}}) {
    if (j.contains(key) && j[key].is_number() && j[key].get<double>() != now) {
      log::warn(where, ": ", key, " was ", j[key].get<double>(), " in the checkpoint, the config now says ", now,
                "; using the config's value");
    }
  }
  std::set<std::string> used;
  std::map<std::string, ParamState> loaded;
  for (const auto& [name, step_json] : j["param_steps"].items()) {
    auto it = params_.find(name);
    if (it == params_.end()) {
      throw UserError(where + " has parameter '" + name + "', which the current model does not have: "
                      "resuming with a different model");
    }
    if (!step_json.is_number_integer() || step_json.get<int64_t>() < 1) {
      throw UserError(where + ": step count of '" + name + "' is not a positive integer (corrupt checkpoint)");
    }
    const at::Tensor& p = it->second;
    const auto dtype = state_dtype(p);
    auto fetch = [&](const std::string& key, bool required) -> at::Tensor {
      auto t = tensors.find(key);
      if (t == tensors.end()) {
        if (required) throw UserError(where + " lacks tensor '" + key + "' (corrupt or incomplete checkpoint)");
        return at::Tensor();
      }
      used.insert(key);
      if (!t->second.sizes().equals(p.sizes())) {
        throw UserError(where + ": tensor '" + key + "' has shape " + shape_text(t->second.sizes()) +
                        " but the current model's '" + name + "' has " + shape_text(p.sizes()) +
                        ": resuming with a different model shape");
      }
      if (t->second.scalar_type() != dtype) {
        throw UserError(where + ": tensor '" + key + "' has dtype " + std::string(c10::toString(t->second.scalar_type())) +
                        ", expected " + std::string(c10::toString(dtype)));
      }
      return t->second.to(p.device(), dtype, /*non_blocking=*/false, /*copy=*/true).contiguous();
    };
    ParamState s;
    s.step = step_json.get<int64_t>();
    s.exp_avg = fetch("exp_avg/" + name, true);
    s.exp_avg_sq = fetch("exp_avg_sq/" + name, true);
    at::Tensor master = fetch("master/" + name, false);
    if (uses_master(p)) {
      s.master = master;  // undefined: re-created from the parameter at its next update
    } else if (master.defined()) {
      log::warn(where, ": ignoring the fp32 master copy of '", name, "' (master weights are off now)");
    }
    loaded.emplace(name, std::move(s));
  }
  for (const auto& [key, t] : tensors) {
    if (!used.count(key)) {
      throw UserError(where + " has tensor '" + key + "' that belongs to no known parameter (corrupt checkpoint "
                      "or a different model)");
    }
  }
  state_ = std::move(loaded);
  steps_ = j["step"].get<int64_t>();
  if (j.contains("lr") && j["lr"].is_number()) options_.lr = j["lr"].get<double>();
}

}  // namespace scorch

// AdamW with decoupled weight decay (Loshchilov & Hutter 2019; the formula of torch.optim.AdamW)
// over a model's named parameters, written in ATen ops so its whole state is plain named tensors
// plus a small JSON: a checkpoint round trip is bitwise exact and needs nothing from torch::optim.
//
// Precision: the moments (exp_avg, exp_avg_sq) are always fp32, whatever the parameter dtype.
// For bf16 parameters there are two modes (AdamWSettings::master_weights):
//   - true:  an fp32 master copy of each bf16 parameter is kept and updated; the bf16 parameter is
//            re-rounded from it after every step. Small updates accumulate in the master instead of
//            vanishing under bf16's 8-bit mantissa (an update below 2^-8 of |w| is lost otherwise).
//            Costs 4 bytes/parameter more. The master copies are part of the optimizer state.
//   - false: the update is computed in fp32 from the bf16 value and rounded back to bf16 each step
//            (bf16 weights + fp32 optimizer state; less memory, slower effective learning at small lr).
// fp32 parameters are updated in place in both modes (no copy).
//
// Weight decay: by default norms and biases are not decayed (name ends with "norm.weight" or
// ".bias", or the tensor has at most one dimension), as in HF Trainer's get_decay_parameter_names.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

namespace scorch {

using NamedTensors = std::map<std::string, at::Tensor>;

struct AdamWOptions {
  double lr = 1e-5;            // base learning rate (a schedule sets it each step with set_lr)
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;   // decoupled: p <- p * (1 - lr * weight_decay)
};

struct AdamWSettings {
  bool decay_norms_and_biases = false;  // false: the no-decay rule above applies
  bool master_weights = true;           // fp32 masters for bf16 parameters (see above)
};

// A group of parameters sharing a weight decay and a learning-rate multiplier.
struct ParamGroup {
  std::string name;
  std::vector<std::string> params;  // parameter names (keys of the model's named tensors)
  double weight_decay = 0.0;
  double lr_scale = 1.0;            // the group's lr is lr * lr_scale
};

// True if `name` / `param` is excluded from weight decay by the default rule.
bool is_no_decay_param(const std::string& name, const at::Tensor& param);

class AdamW {
 public:
  // Two groups, "decay" (weight_decay = options.weight_decay) and "no_decay" (0), split by the
  // rule above unless settings.decay_norms_and_biases. Parameters that do not require grad are ignored.
  AdamW(const NamedTensors& params, const AdamWOptions& options, const AdamWSettings& settings = {});
  // Explicit groups; every name must be in `params`, and a name may appear in one group only.
  AdamW(const NamedTensors& params, std::vector<ParamGroup> groups, const AdamWOptions& options,
        const AdamWSettings& settings = {});

  // One update of every parameter whose .grad() is defined (others are skipped and keep their
  // per-parameter step count, as torch.optim does for grad=None).
  void step();
  // Drops the gradients (grad = undefined, torch's set_to_none=True).
  void zero_grad();

  void set_lr(double lr) { options_.lr = lr; }
  double lr() const { return options_.lr; }
  const AdamWOptions& options() const { return options_; }
  const std::vector<ParamGroup>& groups() const { return groups_; }
  // Number of step() calls (the per-parameter counts can be lower, see step()).
  int64_t step_count() const { return steps_; }

  // State for checkpoints. Tensors: "exp_avg/<name>", "exp_avg_sq/<name>" (fp32) and, with master
  // weights, "master/<name>" (fp32), on the CPU. JSON: step counts (global and per parameter),
  // hyper-parameters, groups, settings. load_state(state_tensors(), state_json()) restores the
  // optimizer bitwise; it validates names and shapes and throws UserError on a mismatch.
  NamedTensors state_tensors() const;
  nlohmann::json state_json() const;
  void load_state(const NamedTensors& tensors, const nlohmann::json& json);

 private:
  struct ParamState {
    at::Tensor exp_avg, exp_avg_sq, master;  // fp32, on the parameter's device; master may be undefined
    int64_t step = 0;
  };
  void init_groups(std::vector<ParamGroup> groups);
  bool uses_master(const at::Tensor& param) const;

  NamedTensors params_;
  std::vector<ParamGroup> groups_;
  AdamWOptions options_;
  AdamWSettings settings_;
  std::map<std::string, ParamState> state_;  // created lazily at a parameter's first update
  int64_t steps_ = 0;
};

}  // namespace scorch

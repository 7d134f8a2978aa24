// StepProfiler (step_profiler.h).
#include "rollout/step_profiler.h"

#include <ATen/ATen.h>

namespace scorch {

StepProfiler::StepProfiler(bool enabled, const c10::Device& device)
    : enabled_(enabled), probe_(enabled ? at::empty({1}, at::TensorOptions().device(device)) : at::Tensor()) {}

}  // namespace scorch

// StepProfiler: where a decode step's time goes (EngineOptions::profile_steps; GenerationStats'
// step_forward_seconds, step_sample_seconds, step_host_seconds). Each lap() waits for the device's
// queue (a one-element copy to the host) and adds the time since the previous lap to a total, so
// the parts are exact; the waits serialise host and device, so the totals are slower than without.
// Disabled, lap() does nothing and nothing waits.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "common/stopwatch.h"

namespace scorch {

class StepProfiler {
 public:
  StepProfiler(bool enabled, const c10::Device& device);

  bool enabled() const { return enabled_; }
  void restart() { since_lap_.restart(); }  // the next lap starts now
  // Waits for the device, adds the seconds since the last lap (or restart) to `total`.
  void lap(double& total) {
    if (!enabled_) return;
    probe_.cpu();
    total += since_lap_.seconds();
    since_lap_.restart();
  }

 private:
  bool enabled_;
  at::Tensor probe_;  // [1] on the device: its copy to the host waits for the queue before it
  Stopwatch since_lap_;
};

}  // namespace scorch

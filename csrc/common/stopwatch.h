// Stopwatch: wall-clock seconds since construction or the last restart(), on the steady clock (never
// jumps with the system time). Host time only: CUDA work is asynchronous, so synchronise the device
// before reading it when device time must be included.
#pragma once
#include <chrono>

namespace scorch {

class Stopwatch {
 public:
  Stopwatch() : start_(std::chrono::steady_clock::now()) {}
  void restart() { start_ = std::chrono::steady_clock::now(); }
  double seconds() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count(); }

 private:
  std::chrono::steady_clock::time_point start_;
};

}  // namespace scorch

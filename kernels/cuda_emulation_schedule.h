// The thread order of kernels/cuda_emulation.h, without its CUDA macros (tests set it).
#pragma once

namespace scorch::emu {

// The order in which the emulator runs a block's runnable threads. A result that depends on it comes
// from a race (threads touching the same memory with no barrier between them): the tests run each
// kernel under every order and require the same bits.
enum class Schedule { kForward, kReverse, kShuffled };
inline Schedule& schedule() {
  static Schedule s = Schedule::kForward;
  return s;
}

}  // namespace scorch::emu

// The kinds of decode step of the rollout engine (decode_step.h, static_decoder.h), in a header of
// its own so configs and evaluation options can name them without including ATen.
#pragma once
#include <string>

namespace scorch {

enum class DecodeSteps {
  kAuto,       // CUDA: static steps in CUDA graphs; CPU: dynamic steps
  kDynamic,    // attention over the used slots, eager (the CPU default)
  kStatic,     // static shapes, eager (no graph): for comparisons and debugging
  kCudaGraph,  // static shapes, replayed from CUDA graphs (on CPU: static shapes, eager)
};
// "auto" | "dynamic" | "static" | "cuda_graph"; UserError naming the value otherwise (decode_step.cpp).
DecodeSteps parse_decode_steps(const std::string& name);
const char* decode_steps_name(DecodeSteps steps);

}  // namespace scorch

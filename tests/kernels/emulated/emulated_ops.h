// The CUDA implementations of kernels/ (kernels/ops_impl.h's *_cuda functions) compiled for the CPU
// emulation of kernels/cuda_emulation.h: they take CPU tensors and run the CUDA kernels' code as
// emulated blocks of threads. For tests only (tests/kernels/test_kernels_emulated.cpp).
#pragma once
#include <ATen/core/Tensor.h>

#include <optional>
#include <string>
#include <tuple>

#include "kernels/ops_impl.h"

namespace scorch::kernels_emulated {

using kernels::AdvantageMode;
using kernels::RewardScale;
#include "kernels/cuda_entry_points.inc"

}  // namespace scorch::kernels_emulated

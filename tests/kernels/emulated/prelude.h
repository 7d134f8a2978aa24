// Included first by each emulated-kernel translation unit (one per kernels/*_cuda.cu): compiles that
// CUDA source as C++ under kernels/cuda_emulation.h, its functions in scorch::kernels_emulated (the
// real CUDA entry points of libscorch_ops keep their names), its helpers from scorch::kernels.
// No include guard: once per translation unit, before the .cu file.
#define SCORCH_CUDA_EMULATION 1
#include "kernels/cuda_emulation.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include "kernels/decode_device.cuh"
#include "kernels/ops.h"
#include "kernels/ops_impl.h"
#include "tests/kernels/emulated/emulated_ops.h"

namespace scorch::kernels_emulated {
using namespace ::scorch::kernels;
}
#define kernels kernels_emulated

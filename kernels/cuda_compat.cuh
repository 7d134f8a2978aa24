// What a kernel source needs besides ATen: the CUDA headers, and two macros that read the same on a
// GPU and under kernels/cuda_emulation.h (where the CUDA sources are compiled as C++ for the
// emulated-kernel tests, SCORCH_CUDA_EMULATION defined):
//   SCORCH_LAUNCH(grid, block, shared_bytes, stream, kernel)(args...)   kernel<<<grid, block, shared_bytes, stream>>>(args...)
//   SCORCH_EXTERN_SHARED(type, name);                                   extern __shared__ type name[];
#pragma once
#ifdef SCORCH_CUDA_EMULATION
#include "kernels/cuda_emulation.h"
#else
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#define SCORCH_LAUNCH(grid, block, shared_bytes, stream, ...) __VA_ARGS__<<<grid, block, shared_bytes, stream>>>
#define SCORCH_EXTERN_SHARED(type, name) extern __shared__ type name[]
#endif

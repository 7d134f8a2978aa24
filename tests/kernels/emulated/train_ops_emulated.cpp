// kernels/train_ops_cuda.cu compiled for the CPU emulation (prelude.h).
#include "tests/kernels/emulated/prelude.h"
#include "kernels/train_ops_cuda.cu"

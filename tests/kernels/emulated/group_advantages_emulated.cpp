// kernels/group_advantages_cuda.cu compiled for the CPU emulation (prelude.h).
#include "tests/kernels/emulated/prelude.h"
#include "kernels/group_advantages_cuda.cu"

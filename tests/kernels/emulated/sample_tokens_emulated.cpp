// kernels/sample_tokens_cuda.cu compiled for the CPU emulation (prelude.h).
#include "tests/kernels/emulated/prelude.h"
#include "kernels/sample_tokens_cuda.cu"

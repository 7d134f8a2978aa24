// kernels/token_logprobs_cuda.cu compiled for the CPU emulation (prelude.h).
#include "tests/kernels/emulated/prelude.h"
#include "kernels/token_logprobs_cuda.cu"

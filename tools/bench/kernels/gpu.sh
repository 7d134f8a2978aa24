#!/usr/bin/env bash
# Run by tools/gpu/check.sh on a GPU machine (SCORCH_BUILD_DIR, SCORCH_PYTHON set there). Prints two
# tables: the decode-step ops vs their ATen compositions (eager and CUDA-graph replay, ~10 s), then
# token_logprobs vs the eager formula.
set -euo pipefail
cd "$(dirname "$0")/../../.."
"${SCORCH_PYTHON:-python3}" tools/bench/kernels/bench_kernels.py --device cuda --lib "${SCORCH_BUILD_DIR:-build}/libscorch_ops.so"

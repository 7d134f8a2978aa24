#!/usr/bin/env bash
# Run by tools/gpu/check.sh on a GPU machine (SCORCH_BUILD_DIR, SCORCH_PYTHON set there): the LM-head
# memory / time table (eager, token_logprobs, fused lm_head_logprobs) at Qwen2.5-0.5B's and Llama 3's
# LM-head shapes for 4k and 16k tokens in bf16, the fused op's effective TFLOP/s at H 4096 / V 131,072,
# and one SFT step of a Qwen2.5-0.5B-shaped model with checkpointing off / on and the fused head on / off.
set -euo pipefail
cd "$(dirname "$0")/../../.."
build="${SCORCH_BUILD_DIR:-build}"
"${SCORCH_PYTHON:-python3}" tools/bench/memory/bench_memory.py --device cuda --lib "$build/libscorch_ops.so" \
  --build-dir "$build" --whole-model

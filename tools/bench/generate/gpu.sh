#!/usr/bin/env bash
# GPU rollout benchmark, run by tools/gpu/check.sh (SCORCH_BUILD_DIR and SCORCH_PYTHON set there):
# a Qwen2.5-0.5B-shaped random model in bfloat16, batch 64 and 256, 64 prompt + 128 new tokens,
# scorch's engine next to transformers' generate() on the same weights and next to the
# memory-bandwidth bound (weights + KV bytes per step / measured copy bandwidth).
set -euo pipefail
cd "$(dirname "$0")/../../.."
build="${SCORCH_BUILD_DIR:-build}"
py="${SCORCH_PYTHON:-python3}"
[ -x "$build/scorch_bench_generate" ] || ninja -C "$build" scorch_bench_generate > /dev/null
"$py" tools/bench/generate/run.py --build-dir "$build" --shape qwen2.5-0.5b --device cuda --dtype bfloat16 \
  --batches 64,256 --threads "$(nproc)" --repeats 2 --stop-every 0

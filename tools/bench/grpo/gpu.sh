#!/usr/bin/env bash
# GPU GRPO step benchmark, run by tools/gpu/check.sh (SCORCH_BUILD_DIR and SCORCH_PYTHON set there):
# a Qwen2.5-0.5B-shaped random model in bfloat16, 8 prompts x G = 8, ~256 prompt + 512 completion
# tokens, scorch next to the eager PyTorch step (transformers generate + DAPO loss) in the same run.
set -euo pipefail
cd "$(dirname "$0")/../../.."
build="${SCORCH_BUILD_DIR:-build}"
py="${SCORCH_PYTHON:-python3}"
"$py" tools/bench/grpo/bench_grpo.py --build-dir "$build" --python "$py" --shape qwen2.5-0.5b --device cuda \
  --steps 3 --prompts 8 --G 8 --completion 512 --prompt-pad 55 --threads "$(nproc)"

#!/usr/bin/env bash
# GPU SFT benchmark, run by tools/gpu/check.sh (SCORCH_BUILD_DIR and SCORCH_PYTHON set there): a
# Qwen2.5-0.5B-shaped random model in bf16, scorch next to the eager PyTorch loop, tokens/s and MFU.
set -euo pipefail
cd "$(dirname "$0")/../../.."
build="${SCORCH_BUILD_DIR:-build}"
py="${SCORCH_PYTHON:-python3}"
"$py" tools/bench/sft/bench_sft.py --build-dir "$build" --python "$py" --device cuda --models qwen2.5-0.5b \
  --batch 16 --steps 8 --threads "$(nproc)"

#!/usr/bin/env bash
# GPU DPO step benchmark, run by tools/gpu/check.sh (SCORCH_BUILD_DIR and SCORCH_PYTHON set there):
# bfloat16, 32 pairs per step, the small (19M) and medium (0.1B, vocab 32000) models, scorch next
# to an eager transformers + torch loop on the same weights and batches (tools/bench/dpo/bench_dpo.py).
set -euo pipefail
cd "$(dirname "$0")/../../.."
build="${SCORCH_BUILD_DIR:-build}"
py="${SCORCH_PYTHON:-python3}"
"$py" tools/bench/dpo/bench_dpo.py --build-dir "$build" --python "$py" --device cuda --dtype bfloat16 \
  --threads "$(nproc)" --steps 8 --batch 32 --models small,medium

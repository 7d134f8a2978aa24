#!/usr/bin/env bash
# Run here, on the build machine (no GPU needed): copies what the first minutes on a GPU machine need
# -- the two gpu-labelled test binaries and the rollout benchmark, with libscorch.so and
# libscorch_ops.so (CUDA kernels for sm_80 and sm_90) -- stripped, into tools/gpu/prebuilt/
# (git-ignored, ~30 MB). Name it in `carry` beside tools/gpu/debs: check.sh then runs the GPU tests
# and the rollout benchmark from these binaries against the image's own torch (the same 2.11.0+cu130
# release) before it builds anything, so a device call measures first and builds from source after.
# If they do not load there, check.sh says so and builds from source as before.
set -euo pipefail
cd "$(dirname "$0")/../.."
build="${SCORCH_BUILD_DIR:-build}"
[ -f "$build/CMakeCache.txt" ] || { echo "prebuild: no $build/ (run tools/setup first)" >&2; exit 2; }
grep -Eq '^SCORCH_CUDA_ARCHITECTURES:STRING=.*90' "$build/CMakeCache.txt" ||
  { echo "prebuild: $build/ has no sm_90 kernels (SCORCH_CUDA_ARCHITECTURES); reconfigure with CUDA" >&2; exit 2; }
ninja -C "$build" test_kernels_gpu test_rollout_gpu scorch_bench_generate > /dev/null
out=tools/gpu/prebuilt
rm -rf "$out"
mkdir -p "$out"
cp "$build/libscorch.so" "$build/libscorch_ops.so" "$build/scorch_bench_generate" \
   "$build/tests/kernels/test_kernels_gpu" "$build/tests/rollout/test_rollout_gpu" "$out/"
strip --strip-debug "$out"/*
py=$(sed -n 's/^SCORCH_PYTHON:FILEPATH=//p' "$build/CMakeCache.txt")
"$py" -c 'import torch; print(torch.__version__)' > "$out/TORCH_VERSION"
git rev-parse HEAD > "$out/COMMIT"
du -sh "$out"

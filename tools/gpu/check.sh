#!/usr/bin/env bash
# The one script to run on a GPU machine (DESIGN.md "GPU work"): torch 2.11 at /opt/torch/.venv,
# nvcc 13, no network. Unpacks tools/gpu/debs (from fetch_deps.sh) into .deps/, configures
# against the installed torch, builds with all cores, runs the gpu-labelled tests and a CPU smoke
# test, runs the benchmarks, and prints a summary table. The logs go to .deps/logs and, packed as
# check-logs.tar.gz beside summary.txt, to $OUT (if set; the device tool returns at most 8 files).
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
out="$root/.deps/logs"
rm -rf "$out"
mkdir -p "$out" .deps/prefix
py="${SCORCH_PYTHON:-/opt/torch/.venv/bin/python}"
t0=$(date +%s)
step() { echo; echo "=== $* ($(( $(date +%s) - t0 )) s)"; }
declare -A status

step "unpack Debian packages"
for deb in tools/gpu/debs/*.deb; do dpkg -x "$deb" .deps/prefix; done
export LD_LIBRARY_PATH="$root/.deps/prefix/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"

step "configure"
cmake -S . -B build-gpu -G Ninja -DSCORCH_PYTHON="$py" -DSCORCH_DEPS_PREFIX="$root/.deps/prefix" \
  -DSCORCH_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 > "$out/configure.log" 2>&1
status[configure]=$?
tail -n 5 "$out/configure.log"

step "build"
ninja -C build-gpu -j "$(nproc)" > "$out/build.log" 2>&1
status[build]=$?
tail -n 5 "$out/build.log"

step "gpu tests"
(cd build-gpu && ctest -L gpu --output-on-failure -j 4 --timeout 300) > "$out/ctest_gpu.log" 2>&1
status[gpu_tests]=$?
tail -n 15 "$out/ctest_gpu.log"

step "cpu smoke tests"
(cd build-gpu && ctest -L unit -j 8 --timeout 300) > "$out/ctest_unit.log" 2>&1
status[unit_tests]=$?
tail -n 3 "$out/ctest_unit.log"

step "nccl: a 1-GPU data-parallel run through ProcessGroupNCCL (world size 1)"
tools/gpu/nccl_smoke.sh build-gpu > "$out/nccl_smoke.log" 2>&1
status[nccl]=$?
tail -n 4 "$out/nccl_smoke.log"

step "benchmarks"
# SCORCH_GPU_BENCHES="generate grpo" picks benchmarks (default: every tools/bench/*/gpu.sh, generate
# first); a benchmark starts only while less than SCORCH_GPU_BUDGET_S (default 480) seconds have
# passed since the script began, so one device call (10 minutes at most) still reaches the summary.
status[bench]=0
budget="${SCORCH_GPU_BUDGET_S:-480}"
benches="${SCORCH_GPU_BENCHES:-generate $(ls tools/bench/*/gpu.sh | xargs -n1 dirname | xargs -n1 basename | grep -vx generate | tr '\n' ' ')}"
for name in $benches; do
  b="tools/bench/$name/gpu.sh"
  [ -f "$b" ] || { echo "--- $name: no $b"; status[bench]=1; continue; }
  left=$(( budget - ($(date +%s) - t0) ))
  if [ "$left" -lt 30 ]; then echo "--- $name: skipped (time budget of ${budget} s spent)"; status[bench]=1; continue; fi
  echo "--- $name"
  limit=$(( left < 240 ? left : 240 ))
  SCORCH_BUILD_DIR=build-gpu SCORCH_PYTHON="$py" timeout "$limit" bash "$b" 2>&1 | tee "$out/bench_$name.txt" || status[bench]=1
done

step "summary"
{
  printf '%-12s %s\n' part result
  for k in configure build gpu_tests unit_tests nccl bench; do
    printf '%-12s %s\n' "$k" "$([ "${status[$k]:-1}" = 0 ] && echo ok || echo FAILED)"
  done
  echo "total $(( $(date +%s) - t0 )) s"
} | tee "$out/summary.txt"
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT"
  cp "$out/summary.txt" "$OUT/summary.txt"
  tar czf "$OUT/check-logs.tar.gz" -C "$out" .
fi

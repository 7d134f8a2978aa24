#!/usr/bin/env bash
# The one script to run on a GPU machine (DESIGN.md "GPU work"): torch 2.11 at /opt/torch/.venv,
# nvcc 13, no network. Unpacks tools/gpu/debs (from fetch_deps.sh) into .deps/, configures
# against the installed torch, builds with all cores, runs the gpu-labelled tests and a CPU smoke
# test, runs the benchmarks, and prints a summary table. Results land in $OUT (if set) or .deps/out.
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
out="${OUT:-$root/.deps/out}"
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
status[bench]=0
for b in tools/bench/*/gpu.sh; do
  [ -f "$b" ] || continue
  name=$(basename "$(dirname "$b")")
  echo "--- $name"
  SCORCH_BUILD_DIR=build-gpu SCORCH_PYTHON="$py" timeout 240 bash "$b" 2>&1 | tee "$out/bench_$name.txt" || status[bench]=1
done

step "summary"
printf '%-12s %s\n' part result
for k in configure build gpu_tests unit_tests nccl bench; do
  printf '%-12s %s\n' "$k" "$([ "${status[$k]:-1}" = 0 ] && echo ok || echo FAILED)"
done
echo "total $(( $(date +%s) - t0 )) s"

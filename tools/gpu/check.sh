#!/usr/bin/env bash
# The one script to run on a GPU machine (DESIGN.md "GPU work"): torch 2.11 at /opt/torch/.venv,
# nvcc 13, no network. If tools/gpu/prebuilt (from prebuild.sh) came along, first runs the GPU tests
# and the rollout benchmark from those binaries. Unpacks tools/gpu/debs (from fetch_deps.sh) into .deps/, configures
# against the installed torch, builds with all cores (the GPU tests and the rollout benchmark
# first), runs the gpu-labelled tests and the rollout benchmark, then, while the time budget lasts,
# the other benchmarks, an NCCL smoke run and the CPU unit tests, and prints a summary table. The logs go to .deps/logs and, packed as
# check-logs.tar.gz beside summary.txt, to $OUT (if set; the device tool returns at most 8 files).
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
out="$root/.deps/logs"
rm -rf "$out"
mkdir -p "$out" .deps/prefix
py="${SCORCH_PYTHON:-/opt/torch/.venv/bin/python}"
t0=$(date +%s)
step() { echo; echo "=== $* ($(( $(date +%s) - t0 )) s)"; save_out; }
# SCORCH_GPU_BUDGET_S (default 480) seconds from the script's start: later parts start only while
# budget is left, so that one device call (10 minutes at most) always reaches the summary.
budget="${SCORCH_GPU_BUDGET_S:-480}"
left() { echo $(( budget - ($(date +%s) - t0) )); }
# The logs so far to $OUT at every step, so that a call cut short still brings back what ran.
save_out() {
  [ -n "${OUT:-}" ] || return 0
  mkdir -p "$OUT"
  tar czf "$OUT/check-logs.tar.gz" -C "$out" . 2>/dev/null || true
}
declare -A status
skipped=()

step "unpack Debian packages"
for deb in tools/gpu/debs/*.deb; do dpkg -x "$deb" .deps/prefix; done
export LD_LIBRARY_PATH="$root/.deps/prefix/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"

# Prebuilt binaries first (tools/gpu/prebuild.sh, carried as tools/gpu/prebuilt): the GPU tests and
# the rollout benchmark run before anything is built, against this image's torch.
prebuilt_ok=0
if [ -d tools/gpu/prebuilt ]; then
  step "prebuilt GPU binaries ($(cat tools/gpu/prebuilt/COMMIT 2>/dev/null | cut -c1-10), built against torch $(cat tools/gpu/prebuilt/TORCH_VERSION 2>/dev/null))"
  torch_dir=$("$py" -c 'import os, torch; print(os.path.dirname(torch.__file__))')
  # Only for the prebuilt programs: the source build's programs must find their own libscorch.
  pre_ld="$root/tools/gpu/prebuilt:$torch_dir/lib:$torch_dir/../nvidia/cu13/lib:$LD_LIBRARY_PATH"
  prebuilt() { LD_LIBRARY_PATH="$pre_ld" "$@"; }
  echo "torch here: $("$py" -c 'import torch; print(torch.__version__)')"
  if prebuilt tools/gpu/prebuilt/test_kernels_gpu --gtest_list_tests > "$out/prebuilt_load.log" 2>&1; then
    prebuilt_ok=1
    status[prebuilt_tests]=0
    for t in test_kernels_gpu test_rollout_gpu; do
      prebuilt timeout 300 "tools/gpu/prebuilt/$t" > "$out/prebuilt_$t.log" 2>&1 || status[prebuilt_tests]=1
      grep -E '^\[  PASSED  \]|^\[  FAILED  \]|^\[  SKIPPED \] [0-9]+ tests?|tests? ran|\[ info \]' \
        "$out/prebuilt_$t.log" | tail -n 14
    done
    echo "--- generate (prebuilt)"
    SCORCH_BUILD_DIR=tools/gpu/prebuilt SCORCH_PYTHON="$py" prebuilt timeout 300 bash tools/bench/generate/gpu.sh 2>&1 |
      tee "$out/bench_generate.txt" || status[bench]=1
  else
    echo "the prebuilt binaries do not load here (see prebuilt_load.log); building from source instead"
    tail -n 3 "$out/prebuilt_load.log"
  fi
fi

step "configure"
cmake -S . -B build-gpu -G Ninja -DSCORCH_PYTHON="$py" -DSCORCH_DEPS_PREFIX="$root/.deps/prefix" \
  -DSCORCH_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 > "$out/configure.log" 2>&1
status[configure]=$?
tail -n 5 "$out/configure.log"

# The GPU tests and the rollout benchmark first, then the rest as time allows.
# After a prebuilt run the source build is itself held to the budget.
step "build (the GPU tests and the rollout benchmark first)"
build_limit=$([ "$prebuilt_ok" = 1 ] && echo $(( $(left) > 10 ? $(left) : 10 )) || echo 1800)
timeout "$build_limit" ninja -C build-gpu -j "$(nproc)" test_kernels_gpu test_rollout_gpu scorch_bench_generate \
  > "$out/build.log" 2>&1
status[build]=$?
tail -n 5 "$out/build.log"

step "gpu tests"
if [ "${status[build]}" = 0 ]; then
  (cd build-gpu && ctest -L gpu --output-on-failure -j 4 --timeout 300) > "$out/ctest_gpu.log" 2>&1
  status[gpu_tests]=$?
  tail -n 15 "$out/ctest_gpu.log"
else
  echo "skipped: the build did not finish (see build.log)"
fi

# SCORCH_GPU_BENCHES="generate grpo" picks benchmarks (default: every tools/bench/*/gpu.sh, generate
# first); one starts only while at least 30 s of the budget are left.
status[bench]=${status[bench]:-0}
benches="${SCORCH_GPU_BENCHES:-generate $(ls tools/bench/*/gpu.sh | xargs -n1 dirname | xargs -n1 basename | grep -vx generate | tr '\n' ' ')}"
run_bench() {
  local name=$1 b="tools/bench/$1/gpu.sh"
  [ -f "$b" ] || { echo "--- $name: no $b"; status[bench]=1; return; }
  local l; l=$(left)
  if [ "$l" -lt 30 ]; then echo "--- $name: skipped (time budget of ${budget} s spent)"; skipped+=("bench:$name"); return; fi
  echo "--- $name"
  local limit=$(( l < 300 ? l : 300 ))
  SCORCH_BUILD_DIR=build-gpu SCORCH_PYTHON="$py" timeout "$limit" bash "$b" 2>&1 | tee "$out/bench_$name.txt" || status[bench]=1
}
step "benchmark: generate"
if [ "$prebuilt_ok" = 1 ]; then
  echo "(ran from the prebuilt binaries above)"
else
  case " $benches " in *" generate "*) run_bench generate ;; esac
fi

step "build the rest"
timeout "$(( $(left) > 10 ? $(left) : 10 ))" ninja -C build-gpu -j "$(nproc)" >> "$out/build.log" 2>&1 || status[build]=1
tail -n 3 "$out/build.log"

step "other benchmarks"
for name in $benches; do [ "$name" = generate ] || run_bench "$name"; done

step "nccl: a 1-GPU data-parallel run through ProcessGroupNCCL (world size 1)"
if [ "$(left)" -ge 30 ]; then
  timeout "$(left)" tools/gpu/nccl_smoke.sh build-gpu > "$out/nccl_smoke.log" 2>&1
  status[nccl]=$?
  tail -n 4 "$out/nccl_smoke.log"
else
  echo "skipped (time budget spent)"
  status[nccl]=skipped
fi

step "cpu smoke tests"
if [ "$(left)" -ge 30 ]; then
  (cd build-gpu && timeout "$(left)" ctest -L unit -j 8 --timeout 300) > "$out/ctest_unit.log" 2>&1
  status[unit_tests]=$?
  tail -n 3 "$out/ctest_unit.log"
else
  echo "skipped (time budget spent; CI runs them)"
  status[unit_tests]=skipped
fi

step "summary"
{
  printf '%-15s %s\n' part result
  for k in prebuilt_tests configure build gpu_tests unit_tests nccl bench; do
    [ "$k" = prebuilt_tests ] && [ "$prebuilt_ok" != 1 ] && continue
    case "${status[$k]:-1}" in 0) r=ok ;; skipped) r=skipped ;; *) r=FAILED ;; esac
    printf '%-15s %s\n' "$k" "$r"
  done
  [ "${#skipped[@]}" -eq 0 ] || echo "skipped for time: ${skipped[*]}"
  echo "total $(( $(date +%s) - t0 )) s"
} | tee "$out/summary.txt"
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT"
  cp "$out/summary.txt" "$OUT/summary.txt"
  tar czf "$OUT/check-logs.tar.gz" -C "$out" .
fi

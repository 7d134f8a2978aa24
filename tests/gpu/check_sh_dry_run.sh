#!/usr/bin/env bash
# tools/gpu/check.sh without a GPU (label unit): the one script a device call runs is otherwise never
# executed before it matters. Copies it into a scratch tree with stand-ins -- cmake, ninja, ctest,
# nvidia-smi, dpkg, a python that answers the torch version, prebuilt test binaries that print
# gtest's summary lines, a rollout benchmark -- and checks, with and without the prebuilt binaries
# and with a budget too small for the later parts: every part reaches the summary, the prebuilt
# tests and the rollout benchmark run first, skipped parts say so, and $OUT holds summary.txt and
# the log tarball. What the real tools do is not tested here (the GPU run does that).
set -euo pipefail
src="$(cd "$(dirname "$0")/../.." && pwd)"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

tree="$scratch/tree"
mkdir -p "$tree/tools/gpu/debs" "$tree/tools/bench/generate" "$tree/tools/bench/other" "$scratch/bin"
cp "$src/tools/gpu/check.sh" "$tree/tools/gpu/"
printf 'echo "nccl stand-in"\n' > "$tree/tools/gpu/nccl_smoke.sh"
chmod +x "$tree/tools/gpu/nccl_smoke.sh"
printf 'echo "rollout bench ran with SCORCH_BUILD_DIR=$SCORCH_BUILD_DIR"\n' > "$tree/tools/bench/generate/gpu.sh"
printf 'echo "other bench ran"\n' > "$tree/tools/bench/other/gpu.sh"
for tool in cmake ninja nvidia-smi dpkg; do
  printf '#!/usr/bin/env bash\necho "[%s] $*"\n' "$tool" > "$scratch/bin/$tool"
done
# ctest runs in build-gpu (which ninja would have made)
printf '#!/usr/bin/env bash\necho "[ctest] $*"; echo "100%% tests passed"\n' > "$scratch/bin/ctest"
printf '#!/usr/bin/env bash\nmkdir -p build-gpu; echo "[ninja] $*"\n' > "$scratch/bin/ninja"
printf '#!/usr/bin/env bash\necho 2.11.0+cu130\n' > "$scratch/bin/python"
chmod +x "$scratch/bin"/*

prebuilt() {
  mkdir -p "$tree/tools/gpu/prebuilt"
  echo 2.11.0+cu130 > "$tree/tools/gpu/prebuilt/TORCH_VERSION"
  echo 0123456789abcdef > "$tree/tools/gpu/prebuilt/COMMIT"
  for t in test_kernels_gpu test_rollout_gpu; do
    printf '#!/usr/bin/env bash\necho "[==========] 3 tests ran."\necho "[  PASSED  ] 3 tests."\n' \
      > "$tree/tools/gpu/prebuilt/$t"
    chmod +x "$tree/tools/gpu/prebuilt/$t"
  done
}

run() {  # run BUDGET: check.sh's output in $scratch/log, $OUT in $scratch/out
  rm -rf "$scratch/out" "$tree/build-gpu"
  (cd "$tree" && PATH="$scratch/bin:$PATH" OUT="$scratch/out" SCORCH_PYTHON="$scratch/bin/python" \
     SCORCH_GPU_BUDGET_S="$1" bash tools/gpu/check.sh) > "$scratch/log" 2>&1 || fail "check.sh exited $?: $(tail -5 "$scratch/log")"
  [ -f "$scratch/out/summary.txt" ] || fail "no summary.txt in \$OUT"
  [ -f "$scratch/out/check-logs.tar.gz" ] || fail "no check-logs.tar.gz in \$OUT"
  tar tzf "$scratch/out/check-logs.tar.gz" > /dev/null || fail "the log tarball does not read back"
}
expect() { grep -Eq "$1" "$2" || fail "expected /$1/ in $(basename "$2"):"$'\n'"$(cat "$2")"; }
reject() { ! grep -Eq "$1" "$2" || fail "did not expect /$1/ in $(basename "$2"):"$'\n'"$(cat "$2")"; }

# 1. Prebuilt binaries, ample budget: they run first, the rollout bench runs once (from them).
prebuilt
run 600
expect '^prebuilt_tests +ok' "$scratch/out/summary.txt"
for part in configure build gpu_tests unit_tests nccl bench; do expect "^$part +ok" "$scratch/out/summary.txt"; done
expect 'rollout bench ran with SCORCH_BUILD_DIR=tools/gpu/prebuilt' "$scratch/log"
reject 'rollout bench ran with SCORCH_BUILD_DIR=build-gpu' "$scratch/log"
expect 'other bench ran' "$scratch/log"
[ "$(grep -n 'prebuilt GPU binaries' "$scratch/log" | cut -d: -f1)" -lt "$(grep -n '=== configure' "$scratch/log" | cut -d: -f1)" ] ||
  fail "the prebuilt binaries did not run before the source build"

# 2. No prebuilt binaries: the rollout bench runs from the source build, before the other benches.
rm -rf "$tree/tools/gpu/prebuilt"
run 600
reject '^prebuilt_tests' "$scratch/out/summary.txt"
expect 'rollout bench ran with SCORCH_BUILD_DIR=build-gpu' "$scratch/log"
[ "$(grep -n 'rollout bench ran' "$scratch/log" | cut -d: -f1)" -lt "$(grep -n 'other bench ran' "$scratch/log" | cut -d: -f1)" ] ||
  fail "the rollout bench did not run first"

# 3. A budget already spent: the later parts are skipped, and the summary says so.
run 0
expect '^nccl +skipped' "$scratch/out/summary.txt"
expect '^unit_tests +skipped' "$scratch/out/summary.txt"
expect 'skipped for time: .*bench:generate' "$scratch/out/summary.txt"
echo "check.sh dry runs: ok"

#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, -fsanitize=fuzzer,address,undefined; ninja + ccache) into
# build-fuzz/ and runs each in turn, in one process, on its corpus.
#   tools/fuzz/run.sh [--seconds N] [--runs N] [--seed N] [--build-dir DIR] [--seeds-only] [--keep-going] [--no-build] [TARGET...]
# TARGET: safetensors dataset config tokenizer_json tokenizer_model tokenizer_encode chat_template
# (default: all). --seconds: time per target (default 60); --runs: executions per target (whichever
# comes first); --seed: libFuzzer's random seed (default 0: a new one each run). The corpus grows
# in DIR/corpus/<target> (generated seeds: DIR/seeds/<target>, from
# tools/fuzz/make_seeds.py); --seeds-only starts from the seeds each time and keeps nothing (CI);
# --keep-going fuzzes in a child process (-fork=1) that is restarted after each finding, to collect
# several findings in one run instead of stopping at the first.
# A finding is written to DIR/findings/<target>/ (reproduce: DIR/fuzz/fuzz_<target> FILE), the log
# is DIR/logs/<target>.log. Exit status: 0 when no target found anything, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds=60
runs=-1
seed=0
build_dir=build-fuzz
seeds_only=0
keep_going=0
build=1
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift ;;
    --runs) runs="$2"; shift ;;
    --seed) seed="$2"; shift ;;
    --build-dir) build_dir="$2"; shift ;;
    --seeds-only) seeds_only=1 ;;
    --no-build) build=0 ;;
    --keep-going) keep_going=1 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    -*) echo "tools/fuzz/run.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    *) targets+=("$1") ;;
  esac
  shift
done
all=(safetensors dataset config tokenizer_json tokenizer_model tokenizer_encode chat_template)
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

say() { echo "[fuzz] $*"; }

if [ "$build" = 1 ]; then
  for tool in clang clang++ cmake ninja; do
    command -v "$tool" >/dev/null || { echo "tools/fuzz/run.sh: '$tool' not found (run tools/setup)" >&2; exit 2; }
  done
  if [ ! -f "$build_dir/build.ninja" ]; then
    say "configuring $build_dir (clang, SCORCH_FUZZ=ON)"
    cmake -S . -B "$build_dir" -G Ninja -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSCORCH_FUZZ=ON -DSCORCH_TESTS=OFF -DSCORCH_PCH=OFF -DSCORCH_CUDA=OFF >/dev/null
  fi
  names=()
  for t in "${targets[@]}"; do names+=("fuzz_$t"); done
  say "building ${names[*]}"
  ninja -C "$build_dir" -j "${SCORCH_JOBS:-$(nproc)}" "${names[@]}" | grep -v '^\[' || true
  [ "${PIPESTATUS[0]}" = 0 ] || { echo "tools/fuzz/run.sh: build failed" >&2; exit 2; }
fi

rm -rf "$build_dir/seeds"
python3 tools/fuzz/make_seeds.py "$build_dir/seeds"
mkdir -p "$build_dir/logs"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

failed=()
printf '%-18s %10s %8s %7s %7s %s\n' target executions exec/s cov ft result
for t in "${targets[@]}"; do
  exe="$build_dir/fuzz/fuzz_$t"
  [ -x "$exe" ] || { echo "tools/fuzz/run.sh: $exe was not built" >&2; failed+=("$t"); continue; }
  findings="$build_dir/findings/$t"  # this run's findings only
  rm -rf "$findings"
  mkdir -p "$findings"
  if [ "$seeds_only" = 1 ]; then
    corpus=$(mktemp -d)
  else
    corpus="$build_dir/corpus/$t"
    mkdir -p "$corpus"
  fi
  log="$build_dir/logs/$t.log"
  SCORCH_FUZZ_SCRATCH=$(mktemp -d "$( [ -w /dev/shm ] && echo /dev/shm || echo /tmp )/scorch-fuzz-$t.XXXXXX")
  export SCORCH_FUZZ_SCRATCH
  rc=0
  # One process: libFuzzer's default (-jobs=1 would move the output into ./fuzz-0.log); --keep-going
  # runs one child at a time.
  mode=()
  [ "$keep_going" = 1 ] && mode=(-fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1)
  # -timeout: one input taking 10 s is a hang; -rss_limit_mb / -malloc_limit_mb: 2 GB is an OOM.
  "$exe" "$corpus" "$build_dir/seeds/$t" ${mode[@]+"${mode[@]}"} -max_total_time="$seconds" -runs="$runs" -seed="$seed" \
    -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
    -artifact_prefix="$findings/" >"$log" 2>&1 || rc=$?
  rm -rf "$SCORCH_FUZZ_SCRATCH"
  [ "$seeds_only" = 1 ] && rm -rf "$corpus"
  stats=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$stats")
  ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$stats")
  execs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+)/\1/p' "$log" | tail -1)
  speed=$(sed -nE 's/^stat::average_exec_per_sec: *([0-9]+)/\1/p' "$log" | tail -1)
  if [ "$keep_going" = 1 ]; then  # fork mode prints "#N: cov: C ft: F ... exec/s: S oom/timeout/crash: a/b/c"
    execs=$(sed -nE 's/^#([0-9]+): cov.*/\1/p' "$log" | tail -1)
    speed=$(sed -nE 's/^#[0-9]+: .* exec\/s:? ([0-9]+).*/\1/p' "$log" | tail -1)
    cov=$(grep -E '^#[0-9]+: cov' "$log" | tail -1 | sed -nE 's/.* cov: ([0-9]+).*/\1/p')
    ft=$(grep -E '^#[0-9]+: cov' "$log" | tail -1 | sed -nE 's/.* ft: ([0-9]+).*/\1/p')
    [ -n "$(ls -A "$findings")" ] && rc=1
  fi
  result=ok
  if [ "$rc" != 0 ]; then
    result="FINDING (exit $rc): $(ls "$findings" | wc -l) file(s) in $findings — see $log"
    failed+=("$t")
  fi
  printf '%-18s %10s %8s %7s %7s %s\n' "$t" "${execs:-?}" "${speed:-?}" "${cov:-?}" "${ft:-?}" "$result"
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "tools/fuzz/run.sh: findings in: ${failed[*]}" >&2
  exit 1
fi

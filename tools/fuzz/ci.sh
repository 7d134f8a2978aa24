#!/usr/bin/env bash
# CI: builds the fuzz targets and runs each for a fixed number of executions from its generated
# seeds only, with a fixed random seed, so a CI run is reproducible here (same inputs, same order);
# 120 s per target at most. Exits non-zero on any finding (crash, sanitizer report, an exception
# other than UserError, a hang over 10 s, an OOM over 2 GB) or a failed build.
#   tools/fuzz/ci.sh [EXECUTIONS per target, default 5000] [more tools/fuzz/run.sh options]
set -euo pipefail
cd "$(dirname "$0")/../.."
runs="${1:-5000}"
[ $# -gt 0 ] && shift
exec tools/fuzz/run.sh --seeds-only --seed 1 --runs "$runs" --seconds 120 "$@"

#!/usr/bin/env bash
# CI: builds the fuzz targets and runs each for a fixed, short time from its generated seeds only
# (no corpus kept between runs). Exits non-zero on any finding (crash, sanitizer report, an
# exception other than UserError, a hang over 10 s, an OOM over 2 GB) or a failed build.
#   tools/fuzz/ci.sh [SECONDS per target, default 20] [more tools/fuzz/run.sh options]
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${1:-20}"
[ $# -gt 0 ] && shift
exec tools/fuzz/run.sh --seeds-only --seconds "$seconds" "$@"

#!/usr/bin/env bash
# Quick start 2: build, then run the whole test suite (ctest). CUDA tests skip with a reason
# when no GPU is present.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/build.sh"
ctest --test-dir "$root/build" --output-on-failure -j "${MLA_JOBS:-$(nproc)}"

#!/usr/bin/env bash
# Configures and builds into build/ (Release). CUDA kernels are built when nvcc is found.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/install-deps.sh"
cmake -S "$root" -B "$root/build" -G Ninja -DCMAKE_BUILD_TYPE=Release ${MLA_CMAKE_ARGS:-}
cmake --build "$root/build" -j "${MLA_JOBS:-$(nproc)}"

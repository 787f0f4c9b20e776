#!/usr/bin/env bash
# The one script for the lent GPU machine (docs/backends/cuda.md): builds the cuda backend,
# checks it against the CPU float64 reference, runs compute-sanitizer, checks CUDA graph
# replay, measures the copy and matmul ceilings and runs the ANCHORS.md benchmark table.
#
#   scripts/gpu_check.sh [STAGE...]      STAGE: env build check graph memcheck bench (default: all)
#   environment: OUT (logs; default ./gpu_out), MLA_CHECK_CASES (grid cases, default 150),
#                MLA_BENCH_ITERS (default 50), MLA_CUDA_ARCHS (default 90-real)
#
# Builds a reduced tree (core + cpu + cuda, backends/cuda/tools/standalone) so unfinished work
# elsewhere in the repository cannot stop a device run. Debian dev packages the machine lacks
# are unpacked from .debs/ (carried with the run) into /tmp/mla_deps.
set -u -o pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/gpu_out}
mkdir -p "$OUT"
STAGES=${*:-env build check graph memcheck bench}
BUILD=$ROOT/build-gpu
CONFIG=$ROOT/configs/h100_sxm.json
STATUS=0
has() { [[ " $STAGES " == *" $1 "* ]]; }
note() { echo "== $*" | tee -a "$OUT/summary.txt"; }

# Dependencies: use the system's when present, else the carried .deb files.
if [ ! -d /usr/include/tbb ] || [ ! -d /usr/include/spdlog ] || [ ! -d /usr/include/nlohmann ]; then
  PREFIX=/tmp/mla_deps
  mkdir -p $PREFIX
  for f in "$ROOT"/.debs/*.deb; do dpkg -x "$f" $PREFIX; done
  export CMAKE_PREFIX_PATH=$PREFIX/usr
  export LD_LIBRARY_PATH=$PREFIX/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
  note "deps: unpacked $(ls "$ROOT"/.debs/*.deb 2>/dev/null | wc -l) carried .deb files into $PREFIX"
fi

if has env; then
  { nvidia-smi; nvcc --version; cmake --version; g++ --version; } > "$OUT/env.txt" 2>&1
  note "env: $(nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader 2>&1)"
fi

if has build; then
  start=$(date +%s)
  if cmake -S "$ROOT/backends/cuda/tools/standalone" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DMLA_CUDA_PORTABLE_ARCHS="${MLA_CUDA_ARCHS:-90-real}" -DMLA_CUDA_PTXAS_VERBOSE=ON > "$OUT/build.log" 2>&1 &&
     ninja -C "$BUILD" mla_cuda_check mla_cuda_bench >> "$OUT/build.log" 2>&1; then
    note "build: ok in $(( $(date +%s) - start )) s"
    grep -E "registers|spill" "$OUT/build.log" | sort | uniq -c | head -20 | tee -a "$OUT/summary.txt"
  else
    note "build: FAILED (tail of build.log follows)"
    tail -40 "$OUT/build.log"
    exit 1
  fi
fi
CHECK=$BUILD/cuda/mla_cuda_check
BENCH=$BUILD/cuda/mla_cuda_bench

if has check; then
  timeout 300 "$CHECK" grid "$CONFIG" --max-cases "${MLA_CHECK_CASES:-150}" > "$OUT/check.log" 2>&1
  rc=$?
  note "check: $(tail -1 "$OUT/check.log") (rc $rc)"
  grep -E "^FAIL" "$OUT/check.log" | head -20
  [ $rc -ne 0 ] && STATUS=1
fi

if has graph; then
  timeout 120 "$CHECK" graph "$CONFIG" > "$OUT/graph.log" 2>&1
  rc=$?
  note "graph: $(tail -1 "$OUT/graph.log") (rc $rc)"
  [ $rc -ne 0 ] && STATUS=1
fi

if has memcheck; then
  timeout 300 compute-sanitizer --tool memcheck --error-exitcode 99 "$CHECK" grid "$CONFIG" --max-cases 12 \
      --max-len 300 --seed 77 > "$OUT/memcheck.log" 2>&1
  rc=$?
  note "memcheck (12 cases, lengths <= 300): rc $rc; $(grep -E "ERROR SUMMARY" "$OUT/memcheck.log" | tail -1)"
  [ $rc -ne 0 ] && STATUS=1
fi

if has bench; then
  timeout 400 "$BENCH" "$CONFIG" --iters "${MLA_BENCH_ITERS:-50}" --warmup 5 --json "$OUT/bench.json" \
      > "$OUT/bench.log" 2>&1
  rc=$?
  note "bench: rc $rc"
  cat "$OUT/bench.log" | tee -a "$OUT/summary.txt"
  [ $rc -ne 0 ] && STATUS=1
fi
exit $STATUS

#!/usr/bin/env bash
# A/B runs of the Hopper kernel's compile-time schedule switches (hopper_config.cuh) on the lent
# GPU: every variant is built at once in its own build folder, then each runs the side-by-side
# with FlashMLA (gpu_check.sh stage sbs) on the same cases, one after another.
#
#   scripts/gpu_variants.sh NAME=FLAGS ...
#     e.g. scripts/gpu_variants.sh base= pr0=-DMLA_HOPPER_L2_PROMOTION=0 ef1=-DMLA_HOPPER_EVICT_FIRST_UNITS=1
#   environment: OUT (logs; one folder per variant), MLA_SBS_CASES (case names, comma-separated),
#                MLA_VARIANT_STAGES (gpu_check.sh stages run per variant; default sbs; e.g. "bench"
#                with MLA_BENCH_CASES for timing probes that do not compute the right result)
set -u -o pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/gpu_out}
mkdir -p "$OUT"
OUT=$OUT/deps "$ROOT/scripts/gpu_check.sh" env > /dev/null 2>&1  # unpacks carried .debs once
for v in "$@"; do
  name=${v%%=*}
  MLA_BUILD_DIR=$ROOT/build-gpu-$name MLA_CUDA_FLAGS="${v#*=}" OUT=$OUT/$name "$ROOT/scripts/gpu_check.sh" build \
      > "$OUT/build_$name.txt" 2>&1 &
done
wait
for v in "$@"; do
  name=${v%%=*}
  echo "== variant $name: ${v#*=}" | tee -a "$OUT/summary.txt"
  grep -E "build:|registers" "$OUT/build_$name.txt" | head -3 | tee -a "$OUT/summary.txt"
  MLA_BUILD_DIR=$ROOT/build-gpu-$name MLA_CUDA_FLAGS="${v#*=}" OUT=$OUT/$name "$ROOT/scripts/gpu_check.sh" \
      ${MLA_VARIANT_STAGES:-sbs} | grep -E "^(case|mem|bal|cmp|small|b1|b64|mtp|b16|device|==|\|)" | tee -a "$OUT/summary.txt"
done

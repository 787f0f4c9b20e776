#!/usr/bin/env bash
# The accuracy table of docs/kv-formats.md: for each quantized KV format, random and
# outlier-heavy caches, fp32 and bf16 outputs, the rel L2 / max abs error of `out` against the
# float64 reference on the bf16 values the cache was quantized from (the "quantization" check
# of `mla run --check`), as the mean over seeds 1..3 (max abs: the largest).
# Usage: scripts/kv_accuracy.sh [path/to/mla]   (default build/cli/mla)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
mla="${1:-$root/build/cli/mla}"
config="$root/configs/sc11_fp300.json"
shape="--batch 4 --heads 16 --seqlen 1024 --varlen --page-size 64"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "| format | cache | out dtype | rel L2 vs bf16 cache | max abs vs bf16 cache | lse error vs bf16 cache | quantization check | check vs dequantized reference (rel L2) |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for format in fp8_e4m3 fp8_ds_mla int8; do
  for outliers in 0 8; do
    for dtype in fp32 bf16; do
      for seed in 1 2 3; do
        "$mla" run --config "$config" $shape --dtype "$dtype" --kv-format "$format" --kv-outliers "$outliers" \
          --seed "$seed" --check --json "$tmp/$seed.json" > /dev/null || true  # a failed check still writes the JSON
      done
      python3 - "$format" "$outliers" "$dtype" "$tmp" <<'PY'
import json, sys
fmt, outliers, dtype, tmp = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
runs = [json.load(open(f"{tmp}/{s}.json")) for s in (1, 2, 3)]
q = [r["quantization_check"] for r in runs]
c = [r["check"] for r in runs]
mean = lambda xs: sum(xs) / len(xs)
cache = "random" if outliers == 0 else f"{outliers} outlier channels (32x)"
verdict = "pass" if all(x["passed"] for x in q) else "FAIL (max_abs / lse bounds)" if all(
    x["rel_l2_error"] <= x["tolerance"]["rel_l2"] for x in q) else "FAIL"
print(f"| `{fmt}` | {cache} | {dtype} | {mean([x['rel_l2_error'] for x in q]):.2e} | "
      f"{max(x['max_abs_error'] for x in q):.2e} | {max(x['lse_max_abs_error'] for x in q):.2e} | {verdict} | "
      f"{mean([x['rel_l2_error'] for x in c]):.1e} |")
PY
    done
  done
done

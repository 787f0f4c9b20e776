#!/usr/bin/env bash
# Quick start 1: build, then run the main job on the embedded default config (configs/cpu.json):
# one DeepSeek-V3-shaped decode step (b=8, 128 heads, 4096 tokens) checked against the float64
# reference, then the same shape benchmarked. Extra arguments go to `mla run`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/build.sh"
"$root/build/cli/mla" backends
"$root/build/cli/mla" run --batch 8 --heads 128 --seqlen 4096 --check "$@"
"$root/build/cli/mla" bench --batch 8 --heads 128 --seqlen 4096 --iters 10

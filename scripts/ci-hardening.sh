#!/usr/bin/env bash
# CI hardening steps (issue 5), run by .ci/run after the main test suite:
#   1. asan  - the whole test suite built with AddressSanitizer + UndefinedBehaviorSanitizer
#              (build-asan/, CUDA off, RelWithDebInfo), run by ctest;
#   2. fuzz  - libFuzzer targets for the config parser and the safetensors reader, built with
#              clang-14 (fuzz/ is its own CMake project, build-fuzz/), each run for a bounded
#              time from the seed corpus in fuzz/corpus/;
#   3. tsan  - the [threads] tests (one device and plan shared by several threads) built with
#              ThreadSanitizer (tests/threads/ is its own CMake project, build-tsan/).
# Budget: about 30 minutes on 2 cores from a cold start; later runs reuse the build folders.
#
# Knobs: MLA_HARDENING_STEPS="asan fuzz tsan" (a subset to run), MLA_FUZZ_SECONDS=60 (per
# target), MLA_JOBS (build parallelism, default: all cores).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
steps="${MLA_HARDENING_STEPS:-asan fuzz tsan}"
jobs="${MLA_JOBS:-$(nproc)}"
fuzz_seconds="${MLA_FUZZ_SECONDS:-60}"
clangxx="${MLA_CLANGXX:-$(command -v clang++-14 || command -v clang++ || true)}"
t0=$SECONDS

step() { echo; echo "=== ci-hardening: $1 ($((SECONDS - t0)) s elapsed)"; }
wants() { [[ " $steps " == *" $1 "* ]]; }

# Sanitizer reports must fail whatever ran: distinct exit codes so a test that expects, say,
# exit 1 from the CLI cannot mistake a sanitizer report for it. allocator_may_return_null:
# the code handles std::bad_alloc (a refused huge allocation is an answer, not a crash).
export ASAN_OPTIONS="exitcode=99:abort_on_error=0:detect_leaks=1:allocator_may_return_null=1:strict_string_checks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=98"

if wants asan; then
  step "AddressSanitizer + UndefinedBehaviorSanitizer: build"
  san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
  mkdir -p build-asan
  # -O1 -g1: what the sanitizers need (line numbers, no inlining surprises) at about half the
  # compile time of -O2 -g on a 2-core CI machine.
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMLA_CUDA=OFF \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g1" \
    -DCMAKE_CXX_FLAGS="$san" -DCMAKE_C_FLAGS="$san" \
    -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" \
    -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=address,undefined" >build-asan/configure.log
  cmake --build build-asan -j "$jobs" --target mla_tests
  step "AddressSanitizer + UndefinedBehaviorSanitizer: ctest"
  # package.* install the library and build an example against it with plain flags; an
  # instrumented static library cannot link there, and that path is covered by the main run.
  ctest --test-dir build-asan --output-on-failure -j "$jobs" -E '^package\.'
fi

if wants fuzz; then
  step "libFuzzer: build (clang: ${clangxx:-none})"
  if [[ -z "$clangxx" ]]; then echo "ci-hardening: no clang++ found; the fuzz step needs clang-14" >&2; exit 1; fi
  mkdir -p build-fuzz
  cmake -S fuzz -B build-fuzz -G Ninja -DCMAKE_CXX_COMPILER="$clangxx" >build-fuzz/configure.log
  cmake --build build-fuzz -j "$jobs" --target fuzz_config fuzz_safetensors
  step "libFuzzer: ${fuzz_seconds} s per target, both at once"
  mkdir -p build-fuzz/artifacts
  pids=()
  for kind in config safetensors; do
    # New inputs go to the first folder (build-fuzz/corpus-*, kept between runs); the seed
    # corpus in the repo is only read.
    mkdir -p "build-fuzz/corpus-$kind"
    dict=(); [[ -f "fuzz/$kind.dict" ]] && dict=(-dict="fuzz/$kind.dict")
    "build-fuzz/fuzz_$kind" "build-fuzz/corpus-$kind" "fuzz/corpus/$kind" "${dict[@]}" \
      -max_total_time="$fuzz_seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
      -print_final_stats=1 -artifact_prefix="build-fuzz/artifacts/$kind-" >"build-fuzz/fuzz-$kind.log" 2>&1 &
    pids+=($!)
  done
  fuzz_failed=0
  for i in 0 1; do
    kind=$([[ $i == 0 ]] && echo config || echo safetensors)
    if wait "${pids[$i]}"; then status=ok; else status=FAILED; fuzz_failed=1; fi
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "build-fuzz/fuzz-$kind.log" | grep -o '[0-9]*$' || echo '?')
    echo "fuzz_$kind: $status, $runs executions in ${fuzz_seconds} s, corpus $(ls "build-fuzz/corpus-$kind" | wc -l) new inputs kept"
    if [[ $status == FAILED ]]; then
      tail -60 "build-fuzz/fuzz-$kind.log"
      echo "ci-hardening: fuzz_$kind found a crash: $(ls build-fuzz/artifacts/$kind-* 2>/dev/null | head -3)." >&2
      echo "  Copy the input into tests/robustness/data/fuzz/$kind/ (the regression test replays it), then fix." >&2
    fi
  done
  [[ $fuzz_failed == 0 ]] || exit 1
fi

if wants tsan; then
  step "ThreadSanitizer: build the [threads] tests"
  mkdir -p build-tsan
  cmake -S tests/threads -B build-tsan -G Ninja >build-tsan/configure.log
  cmake --build build-tsan -j "$jobs" --target mla_threads_tsan
  step "ThreadSanitizer: run"
  # history_size=7: enough history to restore the other thread's stack, without which a report
  # cannot be matched against the suppressions (it then shows "[failed to restore the stack]").
  TSAN_OPTIONS="suppressions=$root/tests/threads/tsan.supp:halt_on_error=1:exitcode=97:second_deadlock_stack=1:history_size=7" \
    build-tsan/mla_threads_tsan "[threads]"
fi

step "done"

#!/usr/bin/env bash
# Builds tests/test_concurrency.cpp under ThreadSanitizer and runs it: one
# const MambaLM shared by several threads, each generating on its own.
#   bash scripts/tsan.sh
# Built without OpenMP (SSM_OPENMP=OFF): GCC's libgomp is not instrumented,
# so TSan would report its internal synchronization as races (or miss
# real ones). Any report fails the run (halt_on_error). Build folder:
# build/tsan, or $SSM_TSAN_BUILD.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${SSM_TSAN_BUILD:-build/tsan}
[[ $dir == /* ]] || dir=./$dir  # run it by path, absolute or relative
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O1 -g" \
  -DSSM_SANITIZE=thread -DSSM_OPENMP=OFF \
  -DSSM_BUILD_EXAMPLES=OFF -DSSM_BUILD_BENCH=OFF >/dev/null
cmake --build "$dir" -j "$(nproc)" --target test_concurrency
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ${TSAN_OPTIONS:-}" \
  "$dir/tests/test_concurrency" --rng-seed time

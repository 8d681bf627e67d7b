#!/usr/bin/env bash
# The two set-up commands of the README.
#   bash scripts/setup.sh demo   install what is missing, build, run the demo
#   bash scripts/setup.sh test   install what is missing, build, run every test
#                                (-O2, ASan + UBSan, fuzzing, TSan)
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

configure_and_build() {  # build-dir, then extra cmake arguments
  local dir=$1
  shift
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
  cmake --build "$dir" -j "$jobs"
}

bash scripts/install_deps.sh
case "${1:-}" in
  demo)
    cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DSSM_BUILD_TESTS=OFF \
      -DSSM_BUILD_BENCH=OFF >/dev/null
    cmake --build build/release -j "$jobs" --target mamba_generate
    prompt=112,198,201,218,109,115,150,98
    echo "== mamba_generate on the bundled checkpoint tests/data/mamba-tiny, prompt $prompt"
    echo "   greedy (transformers 5.17 gives: 98 98 98 98 98 98 98 98 98 98 98 98 98 98 98 98):"
    ./build/release/examples/mamba_generate --prompt-ids "$prompt" --max-new-tokens 16
    echo "   sampled (temperature 1, top-k 40, seed 7):"
    ./build/release/examples/mamba_generate --prompt-ids "$prompt" --max-new-tokens 16 \
      --temperature 1 --top-k 40 --seed 7
    echo "== more: build/release/examples/ (cmake --build build/release) and README.md"
    ;;
  test)
    start=$SECONDS
    # -O2, not Release's -O3: the same optimized code for the tests to check,
    # 18% less compile time (the whole build, Zen 3: 1027 against 1255 s of
    # CPU). Its own folder, so that build/release keeps -O3 for benchmarks.
    echo "== Optimized (-O2): tests, examples (run as smoke tests), benchmark programs"
    configure_and_build build/test -DCMAKE_CXX_FLAGS_RELEASE="-O2 -DNDEBUG" \
      -DSSM_BUILD_TESTS=ON -DSSM_BUILD_EXAMPLES=ON -DSSM_BUILD_BENCH=ON
    ctest --test-dir build/test --output-on-failure -j "$jobs"
    # Heap, global and UB checks. ASan's stack instrumentation is off, as it
    # triples the compile time of the kernel-heavy tests; so are three UBSan
    # checks (test_scan_core 137 -> 101 s, the whole stage ~15%): object-size
    # repeats ASan's bounds checks, pointer-overflow sees only address
    # wrap-around (ASan catches the bad accesses it would lead to), and vptr
    # has no polymorphic class to check. float-cast-overflow, which GCC
    # leaves out of "undefined" (clang has it), catches float-to-integer
    # casts of NaN, inf or out-of-range values. The numerical and model
    # tests also leave out null and alignment (the reader tests keep them):
    # tests/CMakeLists.txt says why. No debug information (8% of the
    # stage's compile time): UBSan's reports carry their file and line
    # anyway, ASan's name the functions, and the failing test prints the
    # seed that replays it.
    echo "== ASan + UBSan: every test again ($((SECONDS - start)) s so far)"
    configure_and_build build/sanitize -DSSM_SANITIZE=address,undefined,float-cast-overflow \
      -DSSM_SANITIZE_EXCLUDE=object-size,pointer-overflow,vptr \
      -DSSM_SANITIZE_EXCLUDE_NUMERIC=null,alignment \
      -DCMAKE_CXX_FLAGS_RELEASE="-O1 -fno-sanitize-address-use-after-scope --param=asan-stack=0" \
      -DSSM_BUILD_EXAMPLES=OFF -DSSM_BUILD_BENCH=OFF
    ctest --test-dir build/sanitize --output-on-failure -j "$jobs"
    # The ThreadSanitizer build (one translation unit: one core for ~40 s)
    # runs beside the fuzzers, which have fewer executions for it.
    echo "== libFuzzer on the checkpoint parsers, 30 s each, and beside them" \
         "ThreadSanitizer on concurrent generation ($((SECONDS - start)) s so far)"
    bash scripts/tsan.sh > build/tsan.log 2>&1 &
    tsan=$!
    fuzz_status=0
    bash scripts/fuzz.sh 30 || fuzz_status=$?
    tsan_status=0
    wait "$tsan" || tsan_status=$?
    echo "== ThreadSanitizer ($((SECONDS - start)) s so far):"
    cat build/tsan.log
    if [ "$fuzz_status" != 0 ] || [ "$tsan_status" != 0 ]; then
      echo "== FAILED: fuzzing exit code $fuzz_status, ThreadSanitizer exit code $tsan_status" >&2
      exit 1
    fi
    echo "== all tests passed in $((SECONDS - start)) s"
    ;;
  *)
    echo "usage: bash scripts/setup.sh demo|test" >&2
    exit 2
    ;;
esac

#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ with Debian's clang (libFuzzer, ASan
# and UBSan; packages clang-14 and libclang-rt-14-dev) and runs each for N
# seconds (default 60), both at once (a core each), starting from its
# committed seed corpus.
#   bash scripts/fuzz.sh [SECONDS]
# Prints, per target, the executions, the coverage (libFuzzer's "cov":
# instrumented edges reached) and the corpus size. A crash, a sanitizer
# report or an uncaught exception stops that target; the script then exits
# 1 and the input that did it is in build/fuzz/artifacts/ (replay it with
# build/fuzz/fuzz_<target> <file>). Each run starts from a fresh copy of
# the seed corpus in build/fuzz/corpus/ and grows only that copy:
# fuzz/corpus/ is never written.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
cxx=${SSM_FUZZ_CXX:-clang++-14}
out=build/fuzz
targets=(safetensors config)

if ! command -v "$cxx" >/dev/null; then
  echo "fuzz: $cxx not found (Debian: apt-get install clang-14 libclang-rt-14-dev)" >&2
  exit 1
fi
mkdir -p "$out/artifacts"
# both targets at once; -O1 -g as libFuzzer recommends; asserts (nlohmann's
# too) stay on
pids=()
for t in "${targets[@]}"; do
  "$cxx" -std=c++17 -O1 -g -fno-omit-frame-pointer \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    -Iinclude "fuzz/fuzz_$t.cpp" -o "$out/fuzz_$t" &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done

# both targets at once (one core each), each from a fresh copy of its seeds
pids=()
for t in "${targets[@]}"; do
  rm -rf "$out/corpus/$t"
  mkdir -p "$out/corpus"
  cp -r "fuzz/corpus/$t" "$out/corpus/$t"
  max_len=4096
  [ "$t" = safetensors ] && max_len=16384  # room for a data area
  "./$out/fuzz_$t" "$out/corpus/$t" -dict="fuzz/$t.dict" \
    -max_total_time="$seconds" -max_len=$max_len -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$out/artifacts/$t-" >"$out/$t.log" 2>&1 &
  pids+=($!)
done

status=0
for i in "${!targets[@]}"; do
  t=${targets[$i]}
  log=$out/$t.log
  if wait "${pids[$i]}"; then
    result="no crash"
  else
    result="FAILED (see $log and $out/artifacts/)"
    status=1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -n1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9]*[a-zA-Z]*\).*/\1/p' <<<"$last")
  echo "fuzz_$t: ${runs:-?} executions in ${seconds} s, coverage ${cov:-?} edges" \
       "(${ft:-?} features), corpus ${corp:-?}: $result"
done
exit $status

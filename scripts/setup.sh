#!/usr/bin/env bash
# The two set-up commands of the README.
#   bash scripts/setup.sh demo   install what is missing, build, run the demo
#   bash scripts/setup.sh test   install what is missing, build, run every test
#                                (Release, then ASan + UBSan)
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
    configure_and_build build/release
    ./build/release/examples/01_simple_ssm
    ;;
  test)
    start=$SECONDS
    configure_and_build build/release
    ctest --test-dir build/release --output-on-failure -j "$jobs"
    echo "== sanitizers (ASan + UBSan)"
    configure_and_build build/sanitize -DSSM_SANITIZE=address,undefined \
      -DCMAKE_CXX_FLAGS_RELEASE="-O1 -g" \
      -DSSM_BUILD_EXAMPLES=OFF -DSSM_BUILD_BENCH=OFF
    ctest --test-dir build/sanitize --output-on-failure -j "$jobs"
    echo "== all tests passed in $((SECONDS - start)) s"
    ;;
  *)
    echo "usage: bash scripts/setup.sh demo|test" >&2
    exit 2
    ;;
esac

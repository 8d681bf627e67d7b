#!/usr/bin/env bash
# Installs the Debian bookworm packages ssm needs, if any is missing.
# Idempotent and silent when everything is present; needs root for apt-get.
set -euo pipefail

packages=(
  g++ cmake make                      # toolchain (OpenMP comes with GCC)
  libeigen3-dev libxsimd-dev          # the library's dependencies
  catch2 libbenchmark-dev             # tests and benchmarks
  nlohmann-json3-dev                  # Hugging Face config.json / safetensors headers
  python3-numpy python3-scipy python3-matplotlib  # reference data and plots
  clang libclang-rt-14-dev            # libFuzzer targets (scripts/fuzz.sh)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
    missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "install_deps: missing ${missing[*]}; run as root to install them" >&2
  exit 1
fi
echo "install_deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

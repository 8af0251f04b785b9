#!/usr/bin/env bash
# Installs every Debian 12 package that mscl's build, tests, examples and peer benchmarks use.
# ocl-icd-opencl-dev: Debian's oneDNN is built with the OpenCL GPU runtime and its CMake package
# requires OpenCL, which libdnnl-dev only recommends (apt runs with --no-install-recommends).
# Idempotent: packages already present are not touched; apt runs only when something is missing.
#   scripts/setup.sh          build + test dependencies (incl. python3-torch for parity tests)
#   scripts/setup.sh --core   only what building the library and its programs needs
set -euo pipefail

core_packages=(build-essential cmake ninja-build ccache pkg-config
  libeigen3-dev nlohmann-json3-dev catch2 libbenchmark-dev
  libdnnl-dev ocl-icd-opencl-dev libjpeg62-turbo-dev libturbojpeg0-dev libpng-dev
  libavformat-dev libavcodec-dev libavutil-dev libswscale-dev
  openmpi-bin libopenmpi-dev)
dev_packages=(python3 python3-numpy python3-torch python3-torchvision python3-opencv libjemalloc2 libopenblas0-pthread)

packages=("${core_packages[@]}")
if [[ "${1:-}" != "--core" ]]; then packages+=("${dev_packages[@]}"); fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi
echo "setup: installing ${missing[*]}"
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"

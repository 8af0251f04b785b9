#!/usr/bin/env bash
# The test command of the README's quick start (and of .ci/run): installs what is missing,
# configures, builds the tests, examples and benchmarks, and runs ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
build_dir=${MSCL_BUILD_DIR:-build}
# Wherever nvcc is, the CUDA backend's test and benchmark are compiled too (docs/cuda.md); the GPU
# tests report "Skipped" without a device. MSCL_NO_CUDA=1 leaves them out.
cuda_flag=()
if [[ -z ${MSCL_NO_CUDA:-} ]] && { command -v nvcc >/dev/null || [[ -x /usr/local/cuda/bin/nvcc ]]; }; then
  cuda_flag=(-DMSCL_WITH_CUDA=ON)
fi
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release "${cuda_flag[@]}"
cmake --build "$build_dir" -j"$(nproc)"
# ctest runs two tests at once on the two cores: one OpenMP thread each avoids oversubscription
# (spinning OpenMP barriers made multi-threaded tests 5-10x slower side by side).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
ctest --test-dir "$build_dir" --output-on-failure -j"$(nproc)" "$@"

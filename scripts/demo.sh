#!/usr/bin/env bash
# The main job of the README's quick start: installs what is missing, builds the programs and
# runs the demo. Until the MSCL pretraining pipeline lands (issues 3-5), the demo trains a small
# R3D for a few dozen steps on random clips and shows the loss falling.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --core
build_dir=${MSCL_BUILD_DIR:-build}
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMSCL_BUILD_TESTS=OFF -DMSCL_BUILD_BENCHMARKS=OFF
cmake --build "$build_dir" --target mscl-train-random -j"$(nproc)"
mkdir -p runs
OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} "$build_dir/examples/mscl-train-random" --steps 40 --log runs/train-random.jsonl "$@"
echo "log: runs/train-random.jsonl"

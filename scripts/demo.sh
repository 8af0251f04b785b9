#!/usr/bin/env bash
# The main job of the README's quick start, on a fresh Debian 12 machine from a clean clone:
# installs what is missing, builds the programs, and runs the whole demo pipeline on the
# built-in synthetic motion dataset:
#
#   1. mscl-make-synthetic   videos whose classes are defined only by motion -> rawframes + lists
#   2. mscl-extract-flow     TV-L1 flow of every video -> MMAction2 flow_x_/flow_y_ JPEGs
#   3. mscl-gen-samples      MDS: motion-differential clip starts per training video
#   4. mscl-pretrain  x2     (a) MSCL and (b) the MoCo-RGB baseline, the same wall-clock budget
#   5. mscl-retrieve  x3     Recall@k + linear probe of the frozen RGB backbone: MSCL, MoCo-RGB,
#                            random init (the floor)
#   6. mscl-finetune         supervised training of the same backbone (the ceiling)
#   7. mscl-report           side-by-side table, report.md with loss curves and retrieval pictures
#
# Every stage skips work that is already done (rerun after an interruption to continue).
# Options: --seeds 0,1,2 (default 0; the bar is stated over 3 seeds), --budget SECONDS (pretraining
# budget per objective, default 420), --out DIR (default runs/demo), --threads N (default: cores),
# --mscl-set KEY=VALUE (repeatable: overrides a key of configs/demo_mscl.json for the MSCL run only,
# e.g. --mscl-set w_mx=1 for the released loss weights; the baseline is unaffected),
# --data-seed S (default 0: the generator key of the synthetic videos; another seed renders
# videos that no setting of configs/demo_mscl.json was chosen on — use a fresh --out with it).
set -euo pipefail
cd "$(dirname "$0")/.."

seeds=0
budget=420
out=runs/demo
threads=$(nproc)
mscl_sets=()
data_seed=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --seeds) seeds=$2; shift 2 ;;
    --budget) budget=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --mscl-set) mscl_sets+=(--set "$2"); shift 2 ;;
    --data-seed) data_seed=$2; shift 2 ;;
    -h|--help) sed -n 2,21p "$0"; exit 0 ;;
    *) echo "demo.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

start=$(date +%s)
stage() { printf '\n== [%4ds] %s\n' $(( $(date +%s) - start )) "$*"; }

stage "setup (Debian packages; skipped when present)"
scripts/setup.sh --core
build_dir=${MSCL_BUILD_DIR:-build-demo}
programs=(mscl-make-synthetic mscl-extract-flow mscl-gen-samples mscl-pretrain mscl-retrieve mscl-finetune mscl-report)
stage "build ${programs[*]}"
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMSCL_BUILD_TESTS=OFF -DMSCL_BUILD_BENCHMARKS=OFF \
  -DMSCL_WITH_MPI=OFF >/dev/null
cmake --build "$build_dir" --target "${programs[@]}" -j"$(nproc)"
bin=$build_dir/examples
export OMP_NUM_THREADS=$threads
# Passive OpenMP waiting: idle worker threads sleep instead of spinning, which matters when the
# loader's threads and the training threads share two cores.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
data=$out/data
flow=$out/flow
mkdir -p "$out"

stage "1/7 synthetic motion dataset -> $data"
if [[ -f $data/test_list.txt ]]; then echo "exists, skipped"; else
  "$bin/mscl-make-synthetic" --out "$data" --threads "$threads" --seed "$data_seed"
fi

stage "2/7 TV-L1 flow -> $flow"
"$bin/mscl-extract-flow" --input-kind rawframes --input "$data" --out "$flow" --workers "$threads"

stage "3/7 MDS samples -> $out/samples.jsonl"
"$bin/mscl-gen-samples" --flow-root "$flow" --list "$data/train_list.txt" --out "$out/samples.jsonl" \
  --threads "$threads" --block 10

common=(--config configs/demo_mscl.json --set data_root="$data" --set annotation_file="$data/train_list.txt"
        --set flow_root="$flow" --set samples_file="$out/samples.jsonl" --set time_budget_s="$budget"
        --set threads="$threads")
moco=(--set flow_moco=false --set cross_modal=false --set lmcl=false --set fra=false)
retrieve=(--root "$data" --depth 10 --width 16 --clips 4 --centering per-set --linear-probe --threads "$threads" --quiet)

for seed in ${seeds//,/ }; do
  sd=$out/seed$seed
  stage "4/7 pretrain MSCL, seed $seed, budget ${budget}s -> $sd/mscl"
  "$bin/mscl-pretrain" "${common[@]}" "${mscl_sets[@]}" --set seed="$seed" --out "$sd/mscl" --resume
  stage "4/7 pretrain MoCo-RGB, seed $seed, budget ${budget}s -> $sd/moco"
  "$bin/mscl-pretrain" "${common[@]}" "${moco[@]}" --set seed="$seed" --out "$sd/moco" --resume
  stage "5/7 retrieval + linear probe, seed $seed"
  "$bin/mscl-retrieve" --checkpoint "$sd/mscl" "${retrieve[@]}" --json "$sd/mscl.json" --grid "$sd/mscl_grid.png"
  "$bin/mscl-retrieve" --checkpoint "$sd/moco" "${retrieve[@]}" --json "$sd/moco.json" --grid "$sd/moco_grid.png"
  "$bin/mscl-retrieve" --random-init --seed "$seed" "${retrieve[@]}" --json "$sd/random.json" --grid "$sd/random_grid.png"
done

stage "6/7 supervised ceiling -> $out/supervised"
if [[ -f $out/supervised/metrics.json ]]; then echo "exists, skipped"; else
  "$bin/mscl-finetune" --config configs/finetune_small_cpu.json --set train_root="$data" \
    --set train_list="$data/train_list.txt" --set test_root="$data" --set test_list="$data/test_list.txt" \
    --set threads="$threads" --out "$out/supervised"
fi

stage "7/7 report"
"$bin/mscl-report" --dir "$out" --seeds "$seeds"
stage "done"

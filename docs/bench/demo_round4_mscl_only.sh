#!/usr/bin/env bash
# docs/demo.md, "Results of the main job": demo.sh stages 4-7 for the MSCL runs only (w_mx 6), the MoCo-RGB runs and their evaluations
# taken from runs/demo3 (the MoCo objective does not read w_mx).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=runs/demo4; data=$out/data; flow=$out/flow; threads=2; bin=build-demo/examples
export OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive
common=(--config configs/demo_mscl.json --set data_root="$data" --set annotation_file="$data/train_list.txt"
        --set flow_root="$flow" --set samples_file="$out/samples.jsonl" --set time_budget_s=420 --set threads=2)
retrieve=(--root "$data" --depth 10 --width 16 --clips 4 --centering per-set --linear-probe --threads 2 --quiet)
for seed in 0 1 2; do
  sd=$out/seed$seed
  rm -f $sd/moco; cp -r runs/demo3/seed$seed/moco $sd/moco
  cp runs/demo3/seed$seed/moco.json runs/demo3/seed$seed/random.json runs/demo3/seed$seed/moco_grid.png runs/demo3/seed$seed/random_grid.png $sd/
  echo "== $(date +%T) MSCL seed $seed"
  "$bin/mscl-pretrain" "${common[@]}" --set w_mx=6 --set seed="$seed" --out "$sd/mscl" --resume
  "$bin/mscl-retrieve" --checkpoint "$sd/mscl" "${retrieve[@]}" --json "$sd/mscl.json" --grid "$sd/mscl_grid.png"
done
"$bin/mscl-report" --dir "$out" --seeds 0,1,2
echo "== $(date +%T) done"

#!/usr/bin/env bash
# End-to-end smoke test of the example programs on a tiny synthetic dataset, the main job's
# pipeline at toy size: make-synthetic -> extract-flow -> gen-samples -> pretrain (MSCL and
# MoCo-RGB, a few steps) -> retrieve (+ linear probe, grid) -> finetune (from the MSCL
# checkpoint) -> report. Fails on any nonzero exit or missing output.
#   programs_smoke.sh BIN_DIR SOURCE_DIR WORK_DIR
set -euo pipefail
bin=$1; src=$2; work=$3
rm -rf "$work"; mkdir -p "$work"
export OMP_NUM_THREADS=1
d=$work/data; f=$work/flow; out=$work/demo
"$bin/mscl-make-synthetic" --out "$d" --train 12 --test 6 --classes 3 --frames 20 --threads 1 > /dev/null
"$bin/mscl-extract-flow" --input-kind rawframes --input "$d" --out "$f" --workers 1 --no-sync > /dev/null
"$bin/mscl-gen-samples" --flow-root "$f" --list "$d/train_list.txt" --out "$work/samples.jsonl" --threads 1 --block 10 > /dev/null
common=(--config "$src/configs/demo_mscl.json" --set data_root="$d" --set annotation_file="$d/train_list.txt"
        --set flow_root="$f" --set samples_file="$work/samples.jsonl" --set time_budget_s=0 --set iterations=3
        --set batch=4 --set queue_size=16 --set threads=1 --set log_every=1)
"$bin/mscl-pretrain" "${common[@]}" --out "$out/seed0/mscl" 2> "$work/pretrain_mscl.log"
"$bin/mscl-pretrain" "${common[@]}" --set flow_moco=false --set cross_modal=false --set lmcl=false --set fra=false \
  --out "$out/seed0/moco" 2> "$work/pretrain_moco.log"
test -f "$out/seed0/mscl/latest.json" && test -s "$out/seed0/mscl/log.jsonl"
ret=(--root "$d" --depth 10 --width 16 --clips 1 --centering per-set --linear-probe --threads 1 --quiet)
"$bin/mscl-retrieve" --checkpoint "$out/seed0/mscl" "${ret[@]}" --json "$out/seed0/mscl.json" --grid "$out/seed0/mscl_grid.png"
"$bin/mscl-retrieve" --checkpoint "$out/seed0/moco" "${ret[@]}" --json "$out/seed0/moco.json"
"$bin/mscl-retrieve" --random-init "${ret[@]}" --json "$out/seed0/random.json"
ck=$(ls "$out"/seed0/mscl/ckpt-*.safetensors | tail -1)
"$bin/mscl-finetune" --config "$src/configs/finetune_small_cpu.json" --set train_root="$d" --set train_list="$d/train_list.txt" \
  --set test_root="$d" --set test_list="$d/test_list.txt" --set epochs=1 --set batch=4 --set test_clips=1 --set threads=1 \
  --init "$ck" --out "$out/supervised" > "$work/finetune.log" 2>&1
"$bin/mscl-report" --dir "$out" --seeds 0 > "$work/report.txt"
test -s "$out/report.md" && test -s "$out/curves_mscl_seed0.png" && test -f "$out/supervised/metrics.json"
grep -q "MSCL" "$work/report.txt"
# a resume with another configuration is refused and leaves the run's config.json as it was
cp "$out/seed0/mscl/config.json" "$work/config_before.json"
if "$bin/mscl-pretrain" "${common[@]}" --set w_mx=5 --out "$out/seed0/mscl" --resume 2> "$work/resume_bad.log"; then
  echo "mscl-pretrain resumed a run made with another configuration" >&2; exit 1
fi
grep -q "cannot resume" "$work/resume_bad.log"
cmp "$out/seed0/mscl/config.json" "$work/config_before.json"
# bad input is reported, not crashed on: a missing annotation file names the file
if "$bin/mscl-pretrain" "${common[@]}" --set annotation_file="$work/nope.txt" --out "$work/bad" 2> "$work/bad.log"; then
  echo "mscl-pretrain accepted a missing annotation file" >&2; exit 1
fi
grep -q "nope.txt" "$work/bad.log"
echo "programs smoke test passed"

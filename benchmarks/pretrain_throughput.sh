#!/usr/bin/env bash
# mscl-pretrain end to end at the paper's shapes (configs/mscl_r18_ucf101.json: R3D-18 + flow
# network, batch 32, 8 x 112 x 112, K 4096) on rendered videos of UCF101's size (171 x 128, 80
# frames, TV-L1 flow from mscl-extract-flow): what the program sustains with the loader, the
# host-to-device copies and the step together. Prints one JSON line per run with the clips/s of
# the last logged window and the time the loop waited for data in it.
#   pretrain_throughput.sh BIN_DIR SOURCE_DIR WORK_DIR [DEVICE]     (DEVICE: cuda (default) or cpu)
# Environment: ITERS (40), BATCH (32), WORKERS (12), VIDEOS (64), FLOW_CODINGS ("device
# device-nooverlap host" with cuda; "host" with cpu: where the flows' colour coding and the RGB
# views' photometric augmentation run — device: --flow-coding device --rgb-photometric device,
# host: both in the loader — and "-nooverlap" runs with MSCL_OVERLAP_COPIES=0, the synchronous
# per-batch copy, for the A/B of the background copy), PYTHON (python3).
set -euo pipefail
bin=$1; src=$2; work=$3; dev=${4:-cuda}
iters=${ITERS:-40}; batch=${BATCH:-32}; workers=${WORKERS:-12}; videos=${VIDEOS:-64}
codings=${FLOW_CODINGS:-$([[ $dev == cuda ]] && echo "device device-nooverlap host" || echo host)}
py=${PYTHON:-python3}
mkdir -p "$work"
d=$work/data; f=$work/flow
if [[ ! -f $d/train_list.txt ]]; then
  "$bin/mscl-make-synthetic" --out "$d" --train "$videos" --test 0 --classes 4 --frames 80 --height 128 --width 171 \
    --threads "$workers" > /dev/null 2>&1
fi
if [[ ! -f $f/.mscl_done ]]; then
  "$bin/mscl-extract-flow" --input-kind rawframes --input "$d" --out "$f" --workers 4 --no-sync --device "$dev" \
    > "$work/flow.log" 2>&1 || { tail -5 "$work/flow.log" >&2; exit 1; }
  touch "$f/.mscl_done"
fi
log_every=$(( iters / 4 > 0 ? iters / 4 : 1 ))
for coding in $codings; do
  out=$work/run_$coding
  rm -rf "$out"
  overlap=1; [[ $coding == *-nooverlap ]] && overlap=0
  start=$(date +%s.%N)
  MSCL_OVERLAP_COPIES=$overlap "$bin/mscl-pretrain" --config "$src/configs/mscl_r18_ucf101.json" --device "$dev" \
    --flow-coding "${coding%-nooverlap}" --rgb-photometric "${coding%-nooverlap}" \
    --set data_root="$d" --set annotation_file="$d/train_list.txt" --set flow_root="$f" --set samples_file= \
    --set iterations="$iters" --set batch="$batch" --set workers="$workers" --set log_every="$log_every" \
    --set checkpoint_every=0 --set iterations_per_epoch=0 --out "$out" 2> "$work/run_$coding.log" \
    || { tail -5 "$work/run_$coding.log" >&2; exit 1; }
  end=$(date +%s.%N)
  "$py" - "$out/log.jsonl" "$dev" "${coding%-nooverlap}" "$batch" "$workers" "$start" "$end" "$overlap" <<'EOF'
import json, sys
path, dev, coding, batch, workers, start, end, overlap = sys.argv[1:]
rows = [json.loads(l) for l in open(path) if l.strip()]
last = rows[-1]
window = last["iteration"] - (rows[-2]["iteration"] if len(rows) > 1 else 0)
print(json.dumps({"bench": "pretrain_throughput", "device": dev, "flow_coding": coding, "rgb_photometric": coding,
                  "overlap_copies": dev == "cuda" and overlap == "1", "batch": int(batch),
                  "workers": int(workers), "iterations": last["iteration"], "clips_per_s": round(last["clips_per_s"], 2),
                  "data_wait_s_per_iteration": round(last["data_wait_s"] / max(1, window), 4),
                  "wall_s_including_start": round(float(end) - float(start), 1)}))
EOF
done

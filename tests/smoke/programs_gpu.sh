#!/usr/bin/env bash
# The example programs with --device cuda, end to end on a tiny synthetic dataset, each against
# the same program with --device cpu: make-synthetic -> extract-flow (CUDA TV-L1) -> pretrain
# (MSCL on the rawframes loader) -> the GPU run resumed on the CPU -> retrieve -> finetune ->
# Grad-CAM and extract-features on the fine-tuned model.
# Fails on a nonzero exit, a missing output, or a GPU/CPU disagreement beyond the tolerances:
# iteration-1 losses within 1e-3 (relative, FP32: the GPU runs take --precision fp32), retrieval
# features within 1e-3 of their scale; and a short --precision bf16 pretraining run whose
# iteration-1 losses stay within 5e-2 of the CPU's. Exits 77 (skipped) without a usable GPU.
#   programs_gpu.sh BIN_DIR SOURCE_DIR WORK_DIR        (PYTHON: an interpreter with numpy)
# MSCL_SMOKE_GPU_DEVICE=cpu runs the "GPU" side on the CPU too: a check of this script's own
# plumbing on a machine without a GPU (every comparison then holds trivially).
set -euo pipefail
bin=$1; src=$2; work=$3
py=${PYTHON:-python3}
"$py" -c "import numpy" 2>/dev/null || py=/usr/bin/python3  # Debian's has numpy; a venv's first on PATH may not
gpu=${MSCL_SMOKE_GPU_DEVICE:-cuda}
rm -rf "$work"; mkdir -p "$work"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4} NVIDIA_TF32_OVERRIDE=0
# FP32 on the GPU for the comparisons (the programs' own switch; the variable above is a second
# guard). The plumbing check on the CPU takes the CPU's default.
gpu_precision=(); [[ $gpu == cuda ]] && gpu_precision=(--precision fp32)
d=$work/data; f=$work/flow
"$bin/mscl-make-synthetic" --out "$d" --train 12 --test 6 --classes 3 --frames 20 --threads 2 > /dev/null 2>&1
if ! "$bin/mscl-extract-flow" --input-kind rawframes --input "$d" --out "$f" --workers 1 --no-sync --device "$gpu" \
     > "$work/flow_cuda.log" 2>&1; then
  if grep -q "no usable CUDA device\|needs a build with" "$work/flow_cuda.log"; then
    echo "MSCL_CUDA_SKIP: $(grep -m1 -o 'no usable CUDA device.*\|needs a build with.*' "$work/flow_cuda.log")"; exit 77
  fi
  cat "$work/flow_cuda.log" >&2; exit 1
fi
echo "extract-flow --device $gpu: $(find "$f" -name '*.jpg' | wc -l) flow images"
test "$(find "$f" -name 'flow_x_*.jpg' | wc -l)" -gt 0

# pretraining: the same 4 iterations on either device (checkpoints at 2 and 4); then the GPU run,
# as if killed after its checkpoint at 2, resumed on the CPU: iterations 3-4 again, logged beside
# the GPU's own
common=(--config "$src/configs/demo_mscl.json" --set data_root="$d" --set annotation_file="$d/train_list.txt"
        --set flow_root="$f" --set time_budget_s=0 --set iterations=4 --set checkpoint_every=2 --set batch=4
        --set queue_size=16 --set threads=2 --set log_every=1 --set workers=1)
for role in ref gpu; do
  dev=(--device cpu); [[ $role == gpu ]] && dev=(--device "$gpu" "${gpu_precision[@]}")
  "$bin/mscl-pretrain" "${common[@]}" "${dev[@]}" --out "$work/pretrain_$role" 2> "$work/pretrain_$role.log" \
    || { tail -5 "$work/pretrain_$role.log" >&2; exit 1; }
done
# With --device cuda the flows' colour coding and the RGB jitter/grey/blur/normalisation run on the
# GPU by default (the loader hands over raw flows and photometric tables): make sure they did, so
# the loss comparison below covers those kernels
if [[ $gpu == cuda ]]; then
  grep -q "flows colour-coded on the device" "$work/pretrain_gpu.log" \
    && grep -q "RGB jitter/grey/blur/normalisation on the device" "$work/pretrain_gpu.log" \
    || { echo "mscl-pretrain --device cuda did not augment on the device:" >&2; head -5 "$work/pretrain_gpu.log" >&2; exit 1; }
fi
# bf16 autocast: two iterations, compared with the CPU run's first iteration below
bf16=(--device "$gpu"); [[ $gpu == cuda ]] && bf16+=(--precision bf16)
"$bin/mscl-pretrain" "${common[@]}" --set iterations=2 "${bf16[@]}" --out "$work/pretrain_bf16" \
  2> "$work/pretrain_bf16.log" || { tail -5 "$work/pretrain_bf16.log" >&2; exit 1; }
grep -m1 "cuda device" "$work/pretrain_gpu.log" || true
mkdir -p "$work/pretrain_resumed"
cp "$work/pretrain_gpu/config.json" "$work/pretrain_gpu/ckpt-00000002.safetensors" "$work/pretrain_resumed/"
printf '{"file": "ckpt-00000002.safetensors", "iteration": 2}\n' > "$work/pretrain_resumed/latest.json"
head -2 "$work/pretrain_gpu/log.jsonl" > "$work/pretrain_resumed/log.jsonl"
"$bin/mscl-pretrain" "${common[@]}" --device cpu --out "$work/pretrain_resumed" --resume \
  2> "$work/pretrain_resumed.log" || { tail -5 "$work/pretrain_resumed.log" >&2; exit 1; }
grep -q "resumed from .* at iteration 2" "$work/pretrain_resumed.log" \
  || { echo "the GPU run's checkpoint did not resume on the CPU" >&2; exit 1; }

# retrieval features from the GPU run's checkpoint on either device
ret=(--root "$d" --clips 2 --centering per-set --threads 2 --quiet)
for role in ref gpu; do
  dev=(--device cpu); [[ $role == gpu ]] && dev=(--device "$gpu" "${gpu_precision[@]}")
  "$bin/mscl-retrieve" --checkpoint "$work/pretrain_gpu" "${ret[@]}" "${dev[@]}" --cache "$work/features_$role" \
    --json "$work/retrieve_$role.json" > "$work/retrieve_$role.log" || { tail -5 "$work/retrieve_$role.log" >&2; exit 1; }
done

# fine-tuning from that checkpoint, one epoch on either device
ck=$(ls "$work"/pretrain_gpu/ckpt-*.safetensors | tail -1)
for role in ref gpu; do
  dev=(--device cpu); [[ $role == gpu ]] && dev=(--device "$gpu" "${gpu_precision[@]}")
  "$bin/mscl-finetune" --config "$src/configs/finetune_small_cpu.json" --set train_root="$d" \
    --set train_list="$d/train_list.txt" --set test_root="$d" --set test_list="$d/test_list.txt" --set epochs=1 \
    --set batch=4 --set test_clips=1 --set threads=2 --set log_every=1 --init "$ck" "${dev[@]}" \
    --out "$work/finetune_$role" > "$work/finetune_$role.log" 2>&1 || { tail -5 "$work/finetune_$role.log" >&2; exit 1; }
  # (one test per line: under set -e a failing test inside an && list would not stop the script)
  test -f "$work/finetune_$role/metrics.json"
  test -f "$work/finetune_$role/model.safetensors"
done

# Grad-CAM of class 0 (fixed: a near tie of the predicted class could flip between devices) for
# 3 test videos on either device
for role in ref gpu; do
  dev=(--device cpu); [[ $role == gpu ]] && dev=(--device "$gpu" "${gpu_precision[@]}")
  "$bin/mscl-gradcam" --run "$work/finetune_gpu" --videos 0,1,2 --class 0 "${dev[@]}" --out "$work/gradcam_$role" \
    > "$work/gradcam_$role.jsonl" 2> "$work/gradcam_$role.log" || { tail -5 "$work/gradcam_$role.log" >&2; exit 1; }
  test -f "$work/gradcam_$role/gradcam_2.png"
done

# mscl-extract-features on the fine-tuned model (MMAction2 names mapped to torchvision's), 5 clips
"$py" -c "import numpy as np, sys; np.save(sys.argv[1], np.random.default_rng(0).standard_normal((5, 3, 8, 32, 32)).astype(np.float32))" \
  "$work/clips.npy"
for role in ref gpu; do
  dev=(--device cpu); [[ $role == gpu ]] && dev=(--device "$gpu" "${gpu_precision[@]}")
  "$bin/mscl-extract-features" --weights "$work/finetune_gpu/model.safetensors" --key-map "backbone.=,cls_head.fc_cls.=fc." \
    --arch r3d_10 --width 16 --clips "$work/clips.npy" --batch 2 "${dev[@]}" --out "$work/extract_$role.npy" \
    --logits-out "$work/extract_logits_$role.npy" > "$work/extract_$role.log" 2>&1 < /dev/null \
    || { tail -5 "$work/extract_$role.log" >&2; exit 1; }
done

"$py" - "$work" <<'EOF'
import json, sys
import numpy as np
w = sys.argv[1]
def first(path):
    with open(path) as f:
        return json.loads(f.readline())
bad = []
def close(what, a, b, rtol=1e-3, names=("cpu", "cuda")):
    ok = abs(a - b) <= rtol * max(1.0, abs(a))
    print(f"{'ok  ' if ok else 'FAIL'} {what}: {names[0]} {a:.6g}  {names[1]} {b:.6g}  (bound {rtol:g} relative)")
    if not ok: bad.append(what)
def line(path, it):
    with open(path) as f:
        return next(r for r in map(json.loads, f) if r.get("iteration") == it)
c, g = first(f"{w}/pretrain_ref/log.jsonl"), first(f"{w}/pretrain_gpu/log.jsonl")
for k in sorted(k for k in c if k.startswith("loss")):
    close(f"pretrain iteration 1 {k}", c[k], g[k])
# iteration 3 on the CPU from the GPU's checkpoint at 2 vs the GPU's own iteration 3 (two steps of
# float32 drift in the weights; the queues and momentum buffers came through the checkpoint)
close("pretrain iteration 3 loss, resumed on the cpu vs on the gpu", line(f"{w}/pretrain_gpu/log.jsonl", 3)["loss"],
      line(f"{w}/pretrain_resumed/log.jsonl", 3)["loss"], rtol=5e-3, names=("gpu run", "resumed on cpu"))
# bf16 autocast against the CPU's float: rounding noise, not summation order
c, g = first(f"{w}/pretrain_ref/log.jsonl"), first(f"{w}/pretrain_bf16/log.jsonl")
for k in sorted(k for k in c if k.startswith("loss")):
    close(f"pretrain iteration 1 {k}, bf16 autocast", c[k], g[k], rtol=5e-2, names=("cpu", "cuda bf16"))
c, g = first(f"{w}/finetune_ref/log.jsonl"), first(f"{w}/finetune_gpu/log.jsonl")
close("finetune iteration 1 loss", c["loss"], g["loss"])
def close_arrays(what, ref_path, got_path, rtol=1e-3):  # relative to the reference's scale
    a, b = np.load(ref_path), np.load(got_path)
    err = float(np.abs(a - b).max()) / max(1e-12, float(np.abs(a).max())) if a.shape == b.shape else float("inf")
    ok = err <= rtol
    print(f"{'ok  ' if ok else 'FAIL'} {what} {a.shape}: max |cpu - cuda| / max |cpu| = {err:.2e}")
    if not ok: bad.append(what)
for part in ("gallery", "query"):
    close_arrays(f"retrieval {part} features", f"{w}/features_ref/{part}_features.npy", f"{w}/features_gpu/{part}_features.npy")
for part in ("extract", "extract_logits"):
    close_arrays(f"mscl-extract-features {part}", f"{w}/{part}_ref.npy", f"{w}/{part}_gpu.npy")
cams = [[json.loads(l) for l in open(f"{w}/gradcam_{role}.jsonl") if l.strip()] for role in ("ref", "gpu")]
for c, g in zip(*cams):
    same = c["class"] == g["class"] == 0
    print(f"{'ok  ' if same else 'FAIL'} mscl-gradcam video {c['video']}: explained class cpu {c['class']}  cuda {g['class']}"
          f" (predicted, reported: cpu {c['predicted']}  cuda {g['predicted']})")
    if not same: bad.append(f"gradcam {c['video']}")
    close(f"mscl-gradcam video {c['video']} probability of class 0", c["probability"], g["probability"])
if len(cams[0]) != 3 or len(cams[1]) != 3: bad.append("gradcam lines")
rc, rg = json.load(open(f"{w}/retrieve_ref.json")), json.load(open(f"{w}/retrieve_gpu.json"))
print(f"retrieval R@1 (reported, 6 queries): cpu {rc['recall']['1']:.3f}  cuda {rg['recall']['1']:.3f}")
sys.exit(1 if bad else 0)
EOF
echo "programs on the GPU: passed"

#!/usr/bin/env bash
# One command for a GPU machine: builds the CUDA backend's test and benchmark, runs every GPU
# test, then the GPU benchmarks side by side with PyTorch, and prints one table.
#
#   scripts/gpu-check.sh                 build (needs nvcc, cuDNN 9, Eigen, nlohmann_json, Catch2) + run
#   scripts/gpu-check.sh --build-only    build here (no GPU needed) into $MSCL_GPU_BUILD_DIR/gpu-bundle
#   scripts/gpu-check.sh --run-only      run a bundle built earlier (carried to the GPU machine)
#
# Typical use from a machine without a GPU (the device tool of this workplace):
#   scripts/gpu-check.sh --build-only                     # here
#   run(command="scripts/gpu-check.sh --run-only", carry=["build-gpu/gpu-bundle"], timeout_s=480)
# Environment: MSCL_GPU_BUILD_DIR (default build-gpu), MSCL_GPU_QUICK=1 (fewer timed iterations),
# PYTHON (default python3: the interpreter with torch + torchvision).
#
# Bars (issue 6): r3d_18 training-step throughput >= 1.0x PyTorch eager at the same precision;
# GPU and CPU losses of a full training step within the documented tolerance (the tests);
# TV-L1 >= 1000 pairs/s at 320x240 and the full MSCL step are reported when implemented.
set -uo pipefail
cd "$(dirname "$0")/.."
mode=all
case "${1:-}" in
  --build-only) mode=build ;;
  --run-only) mode=run ;;
  "" ) ;;
  -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
  *) echo "gpu-check: unknown option $1 (--build-only | --run-only | --help)" >&2; exit 2 ;;
esac
build_dir=${MSCL_GPU_BUILD_DIR:-build-gpu}
bundle=$build_dir/gpu-bundle
py=${PYTHON:-python3}
t_start=$(date +%s)

if [[ $mode != run ]]; then
  echo "== build ($build_dir)"
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMSCL_WITH_CUDA=ON \
        -DMSCL_BUILD_EXAMPLES=OFF -DMSCL_WITH_MPI=OFF >"$build_dir.configure.log" 2>&1 \
    || { cat "$build_dir.configure.log"; echo "gpu-check: configure failed" >&2; exit 1; }
  cmake --build "$build_dir" --target cuda_backend_test cuda_step_prog cuda_flow_test cuda_tvl1_prog -j"$(nproc)" \
    || { echo "gpu-check: build failed" >&2; exit 1; }
  mkdir -p "$bundle"
  cp "$build_dir/cuda_backend_test" "$bundle/" 2>/dev/null || cp "$build_dir"/*/cuda_backend_test "$bundle/"
  cp "$build_dir/benchmarks/cuda_step_prog" "$bundle/"
  cp "$build_dir/cuda_flow_test" "$bundle/" 2>/dev/null || cp "$build_dir"/*/cuda_flow_test "$bundle/"
  cp "$build_dir/benchmarks/cuda_tvl1_prog" "$bundle/"
  echo "bundle: $bundle ($(du -sh "$bundle" | cut -f1))"
  [[ $mode == build ]] && exit 0
fi

[[ -x $bundle/cuda_backend_test && -x $bundle/cuda_step_prog ]] \
  || { echo "gpu-check: no bundle at $bundle (run --build-only first and carry it)" >&2; exit 1; }

# cuDNN / cuBLAS: the CUDA toolkit's, else the ones PyTorch's wheels bring.
libdirs=/usr/local/cuda/lib64
site=$("$py" -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null || true)
for s in $site; do
  for lib in libcudnn.so.9 libcublas.so.13 libcublasLt.so.13 libcudart.so.13; do
    for f in $(find "$s/nvidia" -name "$lib" 2>/dev/null); do libdirs="$libdirs:$(dirname "$f")"; done
  done
done
export LD_LIBRARY_PATH="$libdirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
missing=$(ldd "$bundle/cuda_step_prog" | grep "not found" || true)
if [[ -n $missing ]]; then echo "gpu-check: missing shared libraries:"; echo "$missing"; exit 1; fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "(nvidia-smi unavailable)"

results=$(mktemp -d)
echo "== GPU tests (cuda vs cpu; docs/cuda.md has the tolerances)"
"$bundle/cuda_backend_test" --durations yes 2>&1 | tee "$results/tests.log"
test_rc=${PIPESTATUS[0]}
echo "== CUDA TV-L1 tests (cuda vs cpu and ground truth)"
"$bundle/cuda_flow_test" --durations yes 2>&1 | tee -a "$results/tests.log"
[[ ${PIPESTATUS[0]} == 0 ]] || test_rc=1
if grep -q MSCL_CUDA_SKIP "$results/tests.log"; then echo "gpu-check: tests SKIPPED (no usable GPU)"; test_rc=77; fi

iters=10; warm=3
[[ ${MSCL_GPU_QUICK:-0} == 1 ]] && { iters=4; warm=2; }
bench() {  # name, then the common arguments
  local name=$1; shift
  echo "== $name"
  timeout 150 "$bundle/cuda_step_prog" "$@" --iters $iters --warmup $warm >"$results/$name.mscl.json" 2>"$results/$name.mscl.err" \
    || { echo "mscl failed:"; cat "$results/$name.mscl.err"; }
  timeout 150 "$py" benchmarks/peer_pytorch_gpu.py "$@" --iters $iters --warmup $warm >"$results/$name.torch.json" 2>"$results/$name.torch.err" \
    || { echo "pytorch failed:"; tail -3 "$results/$name.torch.err"; }
  cat "$results/$name.mscl.json" "$results/$name.torch.json" 2>/dev/null
}
bench r3d18_train_b32_tf32 --mode train --batch 32 --frames 8 --size 112
bench r3d18_train_b32_fp32 --mode train --batch 32 --frames 8 --size 112 --no-tf32
echo "== mscl_step_b32_tf32 (full MSCL step, queue 65536; no PyTorch peer)"
timeout 240 "$bundle/cuda_step_prog" --mode mscl --batch 32 --frames 8 --size 112 --queue 65536 --iters $iters \
  --warmup $warm >"$results/mscl_step_b32_tf32.mscl.json" 2>"$results/mscl_step_b32_tf32.mscl.err" \
  || { echo "mscl step failed:"; tail -5 "$results/mscl_step_b32_tf32.mscl.err"; }
cat "$results/mscl_step_b32_tf32.mscl.json" "$results/mscl_step_b32_tf32.mscl.err" 2>/dev/null
echo "== tvl1_320x240 (CUDA TV-L1, batch 64; CPU TV-L1 on 4 pairs as the reference)"
timeout 240 "$bundle/cuda_tvl1_prog" --pairs $(( iters * 64 )) >"$results/tvl1.json" 2>"$results/tvl1.err" \
  || { echo "tvl1 failed:"; tail -5 "$results/tvl1.err"; }
cat "$results/tvl1.json" 2>/dev/null

echo
"$py" - "$results" "$test_rc" <<'EOF'
import json, os, sys
d, test_rc = sys.argv[1], int(sys.argv[2])
def load(p):
    try:
        with open(p) as f:
            return json.loads(f.read().strip().splitlines()[-1])
    except Exception:
        return None
rows = []
for name, label in [("r3d18_train_b32_tf32", "r3d_18 train step, batch 32, 8x112x112, TF32"),
                    ("r3d18_train_b32_fp32", "r3d_18 train step, batch 32, 8x112x112, FP32")]:
    m, t = load(os.path.join(d, name + ".mscl.json")), load(os.path.join(d, name + ".torch.json"))
    ratio = (t["median_ms"] / m["median_ms"]) if (m and t) else None
    rows.append((label, f"{m['median_ms']:.1f} ms" if m else "failed", f"{t['median_ms']:.1f} ms" if t else "failed",
                 f"{ratio:.2f}x" if ratio else "-", ("PASS" if ratio >= 1.0 else "FAIL") if ratio else "-", ">= 1.0x"))
m = load(os.path.join(d, "mscl_step_b32_tf32.mscl.json"))
rows.append(("full MSCL step, batch 32, 8x112x112, K 65536, TF32",
             f"{m['median_ms']:.1f} ms, {m['clips_per_s']:.1f} clips/s" if m else "failed", "-", "-", "-", "reported"))
f = load(os.path.join(d, "tvl1.json"))
f = f if f and "cuda_pairs_per_s" in f else None
rows.append(("TV-L1 pairs/s at 320x240, batch 64 (vs CPU TV-L1, all cores)",
             f"{f['cuda_pairs_per_s']:.0f} pairs/s" if f else "failed", f"cpu {f['cpu_pairs_per_s']:.1f} pairs/s" if f else "-",
             f"{f['speedup']:.0f}x" if f else "-", ("PASS" if f['cuda_pairs_per_s'] >= 1000 else "FAIL") if f else "-", ">= 1000"))
status = {0: "PASS", 77: "SKIPPED (no GPU)"}.get(test_rc, "FAIL")
rows.append(("GPU tests incl. full r3d step loss vs CPU", status, "-", "-", status, "tolerances in docs/cuda.md"))
w = [max(len(str(r[i])) for r in rows + [("check", "mscl", "pytorch", "speed-up", "verdict", "bar")]) for i in range(6)]
hdr = ("check", "mscl", "pytorch", "speed-up", "verdict", "bar")
print("  ".join(h.ljust(w[i]) for i, h in enumerate(hdr)))
print("  ".join("-" * w[i] for i in range(6)))
for r in rows:
    print("  ".join(str(c).ljust(w[i]) for i, c in enumerate(r)))
m = load(os.path.join(d, "r3d18_train_b32_tf32.mscl.json"))
if m: print(f"device: {m['device']}")
EOF
echo "gpu-check: $(( $(date +%s) - t_start )) s"
[[ $test_rc == 0 ]]

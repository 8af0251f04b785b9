#!/usr/bin/env bash
# One command for a GPU machine: builds the CUDA backend's test and benchmark, runs every GPU
# test (the NCCL ones, one rank, where built and a libnccl.so.2 exists) and the programs with
# --device cuda against --device cpu, then the GPU benchmarks beside PyTorch; prints one table.
#
#   scripts/gpu-check.sh                 build (needs nvcc, cuDNN 9, Eigen, nlohmann_json, Catch2) + run
#   scripts/gpu-check.sh --build-only    build here (no GPU needed) into $MSCL_GPU_BUILD_DIR/gpu-bundle
#   scripts/gpu-check.sh --run-only      run a bundle built earlier (carried to the GPU machine)
#
# Typical use from a machine without a GPU (the device tool of this workplace):
#   scripts/gpu-check.sh --build-only                     # here
#   run(command="scripts/gpu-check.sh --run-only", carry=["build-gpu/gpu-bundle"], timeout_s=480)
# Environment: MSCL_GPU_BUILD_DIR (default build-gpu), MSCL_GPU_QUICK=1 (fewer timed iterations),
# MSCL_GPU_PROFILE=1 (per-kernel times of one r3d_18 step of both engines with ncu),
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
  mkdir -p "$build_dir"
  # The programs travel to machines with other CPUs and libraries: no -march=native, and no MPI,
  # FFmpeg or oneDNN (libjpeg, the one library they keep, travels in fallback-lib).
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMSCL_WITH_CUDA=ON \
        -DMSCL_BUILD_EXAMPLES=ON -DMSCL_WITH_MPI=OFF -DMSCL_WITH_FFMPEG=OFF -DMSCL_WITH_ONEDNN=OFF -DMSCL_NATIVE=OFF \
        >"$build_dir/configure.log" 2>&1 \
    || { cat "$build_dir/configure.log"; echo "gpu-check: configure failed" >&2; exit 1; }
  programs=(mscl-make-synthetic mscl-extract-flow mscl-pretrain mscl-finetune mscl-retrieve mscl-extract-features mscl-gradcam)
  cmake --build "$build_dir" --target cuda_backend_test cuda_step_prog cuda_flow_test cuda_tvl1_prog "${programs[@]}" -j"$(nproc)" \
    || { echo "gpu-check: build failed" >&2; exit 1; }
  mkdir -p "$bundle"
  cp "$build_dir/cuda_backend_test" "$bundle/" 2>/dev/null || cp "$build_dir"/*/cuda_backend_test "$bundle/"
  cp "$build_dir/benchmarks/cuda_step_prog" "$bundle/"
  cp "$build_dir/cuda_flow_test" "$bundle/" 2>/dev/null || cp "$build_dir"/*/cuda_flow_test "$bundle/"
  cp "$build_dir/benchmarks/cuda_tvl1_prog" "$bundle/"
  mkdir -p "$bundle/programs"
  for p in "${programs[@]}"; do cp "$build_dir/examples/$p" "$bundle/programs/"; done
  # OpenMP's runtime as a last resort for a GPU image without it (searched after the system's).
  mkdir -p "$bundle/fallback-lib"
  cp "$(ldd "$bundle/cuda_step_prog" | awk '/libgomp/ {print $3}')" "$bundle/fallback-lib/" 2>/dev/null || true
  cp "$(ldd "$bundle/programs/mscl-pretrain" | awk '/libjpeg/ {print $3}')" "$bundle/fallback-lib/" 2>/dev/null || true
  # NCCL (dist/nccl.hpp) on one GPU: a second build with MSCL_WITH_NCCL=ON, of its two test
  # programs only, into $bundle/nccl (libnccl.so.2 itself is too large to carry: the run phase
  # finds one on the GPU machine). Optional: without NCCL here the rest of the bundle is unaffected.
  nccl_build=${build_dir}-nccl
  rm -rf "$bundle/nccl"
  mkdir -p "$nccl_build"
  echo "== build ($nccl_build: MSCL_WITH_NCCL=ON, cuda_nccl_test and dist_collectives_test)"
  if ! cmake -S . -B "$nccl_build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMSCL_WITH_CUDA=ON -DMSCL_WITH_NCCL=ON \
        -DMSCL_BUILD_EXAMPLES=OFF -DMSCL_BUILD_BENCHMARKS=OFF -DMSCL_WITH_MPI=OFF -DMSCL_WITH_FFMPEG=OFF \
        -DMSCL_WITH_ONEDNN=OFF -DMSCL_NATIVE=OFF >"$nccl_build/configure.log" 2>&1; then
    echo "gpu-check: note: the NCCL build did not configure (no NCCL here?); the bundle has no NCCL tests:"
    grep -i -m3 "nccl\|error" "$nccl_build/configure.log" | sed 's/^/      /'
  elif ! cmake --build "$nccl_build" --target cuda_nccl_test dist_collectives_test -j"$(nproc)" \
        >"$nccl_build/build.log" 2>&1; then
    echo "gpu-check: note: the NCCL build failed ($nccl_build/build.log); the bundle has no NCCL tests:"
    grep -m10 -A3 "error\|FAILED" "$nccl_build/build.log" | head -20 | sed 's/^/      /'
  else
    mkdir -p "$bundle/nccl"
    cp "$nccl_build/cuda_nccl_test" "$nccl_build/tests/dist_collectives_test" "$bundle/nccl/"
    echo "bundle: $bundle/nccl: cuda_nccl_test, dist_collectives_test (MSCL_WITH_NCCL)"
  fi
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
export LD_LIBRARY_PATH="$libdirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}:$PWD/$bundle/fallback-lib"
missing=$(ldd "$bundle/cuda_step_prog" "$bundle/programs/mscl-pretrain" | grep "not found" | sort -u || true)
if [[ -n $missing ]]; then  # last resort: wherever the image keeps them
  for lib in $(echo "$missing" | awk '{print $1}'); do
    f=$(find /usr /opt -name "$lib" 2>/dev/null | head -1)
    [[ -n $f ]] && LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$(dirname "$f")"
  done
  export LD_LIBRARY_PATH
  missing=$(ldd "$bundle/cuda_step_prog" "$bundle/programs/mscl-pretrain" | grep "not found" | sort -u || true)
fi
if [[ -n $missing ]]; then echo "gpu-check: missing shared libraries:"; echo "$missing"; exit 1; fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "(nvidia-smi unavailable)"

results=$(mktemp -d)
# Where a device tool collects files ($OUT), everything this run wrote comes back as one archive.
pack() { [[ -n ${OUT:-} && -d ${OUT:-} ]] && tar czf "$OUT/gpu-check-results.tgz" -C "$results" . 2>/dev/null; }
trap pack EXIT
# Each test case runs in its own process under a time limit: a sticky CUDA error or a hang in one
# case cannot hide the verdicts of the others, and the log names the case that broke.
run_cases() {  # binary, its source (Catch2's listing wraps long names, so they come from the source)
  local bin=$1 src=$2 name escaped rc
  while IFS= read -r name; do
    escaped=$(printf '%s' "$name" | sed 's/[][,*\\]/\\&/g')
    timeout 120 "$bin" "$escaped" --durations yes --warn NoTests </dev/null >"$results/case.log" 2>&1
    rc=$?
    cat "$results/case.log" >>"$results/tests.log"
    if grep -q MSCL_CUDA_SKIP "$results/case.log"; then echo "SKIP  $name"; skipped=1
    elif [[ $rc == 0 ]]; then echo "PASS  $name  ($(grep -o '^[0-9.]* s: ' "$results/case.log" | head -1 | tr -d ': '))"
    else
      echo "FAIL  $name  (exit $rc$([[ $rc == 124 ]] && echo ', timed out'))"; failed=$((failed + 1))
      failed_cases+=("$bin|$escaped")
      grep -v "^mscl 0.1.0" "$results/case.log" | grep -B2 -A12 -m3 "FAILED\|error\|Error\|what()" | head -40 | sed 's/^/      /'
    fi
  done < <(grep -o 'TEST_CASE("[^"]*"' "$src" | sed 's/^TEST_CASE("//; s/"$//')
}
failed=0; skipped=0; failed_cases=()
echo "== GPU tests (cuda vs cpu; docs/cuda.md has the tolerances), one process per case"
run_cases "$bundle/cuda_backend_test" tests/cuda/cuda_backend_test.cu
echo "== CUDA TV-L1 tests (cuda vs cpu and ground truth)"
run_cases "$bundle/cuda_flow_test" tests/cuda/cuda_flow_test.cu
echo "== the programs with --device cuda against --device cpu (tests/smoke/programs_gpu.sh)"
programs_rc=0
OMP_NUM_THREADS=8 PYTHON=$py timeout 240 bash tests/smoke/programs_gpu.sh "$bundle/programs" . "$results/programs_gpu" \
  >"$results/programs_gpu.log" 2>&1 || programs_rc=$?
cat "$results/programs_gpu.log"
case $programs_rc in 0) echo "PASS  programs --device cuda" ;; 77) echo "SKIP  programs --device cuda"; skipped=1 ;;
  *) echo "FAIL  programs --device cuda (exit $programs_rc$([[ $programs_rc == 124 ]] && echo ', timed out'))"; failed=$((failed + 1)) ;; esac
# NCCL (dist/nccl.hpp), one rank: the bundle's NCCL test programs (built with MSCL_WITH_NCCL,
# see the build phase) against a libnccl.so.2 of this machine: the system's or the CUDA
# toolkit's, else the one PyTorch's pip wheel brings (nvidia-nccl-cu12 / -cu13). One row each in
# the table (nccl_rows.tsv); a failure fails the run, a missing library or build is reported.
find_libnccl() {
  local f s
  f=$(ldconfig -p 2>/dev/null | awk '$1 == "libnccl.so.2" {print $NF; exit}')
  [[ -n $f && -e $f ]] && { echo "$f"; return 0; }
  for f in /usr/local/cuda*/lib*/libnccl.so.2 /usr/local/cuda*/targets/*/lib/libnccl.so.2; do
    [[ -e $f ]] && { echo "$f"; return 0; }
  done
  while IFS= read -r s; do
    [[ -n $s && -d $s ]] || continue
    f=$( { find "$s/nvidia" -maxdepth 4 -name 'libnccl.so.2' 2>/dev/null  # nvidia/nccl/lib/ (pip)
           find "$s/torch/lib" -maxdepth 1 -name 'libnccl*.so*' 2>/dev/null; } | head -1)
    [[ -n $f ]] && { echo "$f"; return 0; }
  done < <("$py" -c "import site,sys; print('\n'.join(site.getsitepackages()+[site.getusersitepackages()]))" 2>/dev/null)
  return 1
}
echo "== NCCL, one rank (dist/nccl.hpp): dist_collectives_test [nccl], cuda_nccl_test"
nccl_failed=0
: >"$results/nccl_rows.tsv"
if [[ ! -x $bundle/nccl/cuda_nccl_test || ! -x $bundle/nccl/dist_collectives_test ]]; then
  echo "SKIP  NCCL: not built (the build phase found no NCCL)"
  printf '%s\t%s\t%s\n' "NCCL one rank: dist_collectives [nccl] / cuda_nccl_test" "not built" "-" >>"$results/nccl_rows.tsv"
elif ! libnccl=$(find_libnccl); then
  echo "SKIP  NCCL: no libnccl.so.2 on this machine (system, /usr/local/cuda*, $py's site-packages)"
  printf '%s\t%s\t%s\n' "NCCL one rank: dist_collectives [nccl] / cuda_nccl_test" \
    "skipped: no libnccl.so.2 on this machine" "-" >>"$results/nccl_rows.tsv"
else
  nccl_dir=$(dirname "$libnccl")
  if [[ $(basename "$libnccl") != libnccl.so.2 ]]; then  # e.g. torch/lib/libnccl-<hash>.so.2: link it by its soname
    nccl_dir=$results/nccl-lib
    mkdir -p "$nccl_dir" && ln -sf "$libnccl" "$nccl_dir/libnccl.so.2"
  fi
  echo "libnccl: $libnccl"
  for entry in "dist_collectives_test|60|[nccl]" "cuda_nccl_test|120|"; do
    IFS='|' read -r name limit filter <<<"$entry"
    args=(--durations yes --warn NoTests)
    [[ -n $filter ]] && args=("$filter" "${args[@]}")
    NCCL_DEBUG=${NCCL_DEBUG:-WARN} LD_LIBRARY_PATH="$nccl_dir:$LD_LIBRARY_PATH" timeout "$limit" \
      "$bundle/nccl/$name" "${args[@]}" </dev/null >"$results/nccl_$name.log" 2>&1
    rc=$?
    grep "^cuda_nccl_test: " "$results/nccl_$name.log" | sed 's/^/      /'
    label="NCCL one rank (libnccl from $libnccl): $name${filter:+ $filter}"
    if [[ $rc == 0 ]] && grep -q "MSCL_CUDA_SKIP\|no CUDA device" "$results/nccl_$name.log"; then
      echo "SKIP  $label (no GPU)"; status="SKIPPED (no GPU)"; verdict="-"
    elif [[ $rc == 0 ]]; then
      echo "PASS  $label  ($(grep -o 'All tests passed.*\|^test cases:.*' "$results/nccl_$name.log" | head -1))"
      status=PASS; verdict=PASS
    else
      status="FAIL (exit $rc$([[ $rc == 124 ]] && echo ', timed out'))"; verdict=FAIL
      echo "FAIL  $label  (exit $rc$([[ $rc == 124 ]] && echo ', timed out'))"; nccl_failed=$((nccl_failed + 1))
      grep -v "^mscl 0.1.0" "$results/nccl_$name.log" | grep -B2 -A12 -m3 "FAILED\|error\|Error\|what()\|NCCL WARN" \
        | head -40 | sed 's/^/      /'
    fi
    printf '%s\t%s\t%s\n' "$label" "$status" "$verdict" >>"$results/nccl_rows.tsv"
  done
fi
test_rc=0
[[ $failed != 0 ]] && test_rc=1
[[ $skipped == 1 && $failed == 0 ]] && { echo "gpu-check: tests SKIPPED (no usable GPU)"; test_rc=77; }

iters=10; warm=3
[[ ${MSCL_GPU_QUICK:-0} == 1 ]] && { iters=4; warm=2; }
bench() {  # name, then the common arguments
  local name=$1; shift
  echo "== $name"
  timeout 100 "$bundle/cuda_step_prog" "$@" --iters $iters --warmup $warm >"$results/$name.mscl.json" 2>"$results/$name.mscl.err" \
    || { echo "mscl failed:"; cat "$results/$name.mscl.err"; }
  timeout 100 "$py" benchmarks/peer_pytorch_gpu.py "$@" --iters $iters --warmup $warm >"$results/$name.torch.json" 2>"$results/$name.torch.err" \
    || { echo "pytorch failed:"; tail -3 "$results/$name.torch.err"; }
  cat "$results/$name.mscl.json" "$results/$name.torch.json" 2>/dev/null
}
MSCL_CUDNN_LOG=1 bench r3d18_train_b32_tf32 --mode train --batch 32 --frames 8 --size 112
echo "   convolution choices (forward/backward x shapes): $(grep -c -- '-> engine' "$results/r3d18_train_b32_tf32.mscl.err") graph-API engines," \
     "$(grep -c -- '-> legacy' "$results/r3d18_train_b32_tf32.mscl.err") legacy algorithms (MSCL_CUDNN_LOG lines in the archive)"
echo "== r3d18_train_b32_tf32_legacy (MSCL_CUDNN_SEARCH=legacy: cudnnFind algorithms only)"
MSCL_CUDNN_SEARCH=legacy timeout 100 "$bundle/cuda_step_prog" --mode train --batch 32 --frames 8 --size 112 --iters $iters \
  --warmup $warm >"$results/r3d18_train_b32_tf32_legacy.mscl.json" 2>"$results/r3d18_train_b32_tf32_legacy.mscl.err" \
  || { echo "mscl (legacy search) failed:"; tail -5 "$results/r3d18_train_b32_tf32_legacy.mscl.err"; }
cat "$results/r3d18_train_b32_tf32_legacy.mscl.json" 2>/dev/null
bench r3d18_train_b32_fp32 --mode train --batch 32 --frames 8 --size 112 --no-tf32
bench r3d18_train_b32_bf16 --mode train --batch 32 --frames 8 --size 112 --bf16
echo "== mscl_step_b32_tf32 (full MSCL step, queue 65536; no PyTorch peer)"
timeout 150 "$bundle/cuda_step_prog" --mode mscl --batch 32 --frames 8 --size 112 --queue 65536 --iters $iters \
  --warmup $warm >"$results/mscl_step_b32_tf32.mscl.json" 2>"$results/mscl_step_b32_tf32.mscl.err" \
  || { echo "mscl step failed:"; tail -5 "$results/mscl_step_b32_tf32.mscl.err"; }
cat "$results/mscl_step_b32_tf32.mscl.json" "$results/mscl_step_b32_tf32.mscl.err" 2>/dev/null
echo "== augment_b32 (the loader's device stage: photometric_batch on 2 RGB views + colour coding of 4 flows)"
timeout 60 "$bundle/cuda_step_prog" --mode augment --batch 32 --frames 8 --size 112 --iters $(( iters * 2 )) \
  --warmup $warm >"$results/augment_b32.mscl.json" 2>"$results/augment_b32.mscl.err" \
  || { echo "augment stage failed:"; tail -5 "$results/augment_b32.mscl.err"; }
cat "$results/augment_b32.mscl.json" 2>/dev/null
echo "== tvl1_320x240 (CUDA TV-L1, batch 64; CPU TV-L1 on 4 pairs as the reference)"
timeout 150 "$bundle/cuda_tvl1_prog" --pairs $(( iters * 64 )) >"$results/tvl1.json" 2>"$results/tvl1.err" \
  || { echo "tvl1 failed:"; tail -5 "$results/tvl1.err"; }
cat "$results/tvl1.json" 2>/dev/null
echo "== mscl-pretrain --device cuda at the paper's shapes (benchmarks/pretrain_throughput.sh: loader + copies + step)"
if [[ $programs_rc == 0 ]]; then
  OMP_NUM_THREADS=2 ITERS=$(( iters * 4 )) PYTHON=$py timeout 260 bash benchmarks/pretrain_throughput.sh "$bundle/programs" . \
    "$results/pretrain_throughput" cuda >"$results/pretrain_throughput.json" 2>"$results/pretrain_throughput.err" \
    || { echo "pretrain throughput failed:"; tail -5 "$results/pretrain_throughput.err"; }
  cat "$results/pretrain_throughput.json" 2>/dev/null
else
  echo "(skipped: the programs' check did not pass)"
fi

# A failed case gets one compute-sanitizer (memcheck) pass while the time allows: out-of-bounds
# accesses and API errors are named by kernel, which a tolerance failure alone does not say.
if (( ${#failed_cases[@]} > 0 )) && command -v compute-sanitizer >/dev/null; then
  for entry in "${failed_cases[@]:0:3}"; do
    (( $(date +%s) - t_start > ${MSCL_GPU_SANITIZE_UNTIL_S:-330} )) && { echo "(no time left for compute-sanitizer)"; break; }
    echo "== compute-sanitizer memcheck: ${entry#*|}"
    timeout 90 compute-sanitizer --tool memcheck --print-limit 20 "${entry%%|*}" "${entry#*|}" </dev/null \
      >"$results/sanitizer.log" 2>&1
    cat "$results/sanitizer.log" >>"$results/sanitizer-all.log"
    grep -v "^mscl 0.1.0" "$results/sanitizer.log" | grep -A6 -m4 "=========\|FAILED" | head -30
  done
fi

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
m, t = load(os.path.join(d, "r3d18_train_b32_tf32_legacy.mscl.json")), load(os.path.join(d, "r3d18_train_b32_tf32.torch.json"))
ratio = (t["median_ms"] / m["median_ms"]) if (m and t) else None
rows.append(("r3d_18 TF32 step as above, legacy cuDNN search only", f"{m['median_ms']:.1f} ms" if m else "failed",
             f"{t['median_ms']:.1f} ms" if t else "failed", f"{ratio:.2f}x" if ratio else "-", "-", "reported"))
mb, tb = load(os.path.join(d, "r3d18_train_b32_bf16.mscl.json")), load(os.path.join(d, "r3d18_train_b32_bf16.torch.json"))
ratio = (tb["median_ms"] / mb["median_ms"]) if (mb and tb) else None
rows.append(("r3d_18 train step as above, bf16 autocast (PyTorch: torch.autocast)", f"{mb['median_ms']:.1f} ms" if mb else "failed",
             f"{tb['median_ms']:.1f} ms" if tb else "failed", f"{ratio:.2f}x" if ratio else "-", "-", "reported"))
m = load(os.path.join(d, "mscl_step_b32_tf32.mscl.json"))
rows.append(("full MSCL step, batch 32, 8x112x112, K 65536, TF32",
             f"{m['median_ms']:.1f} ms, {m['clips_per_s']:.1f} clips/s" if m else "failed", "-", "-", "-", "reported"))
a = load(os.path.join(d, "augment_b32.mscl.json"))
rows.append(("device augmentation per batch of 32 (2 RGB views jitter/grey/blur/normalise + 4 flows colour-coded)",
             f"{a['median_ms']:.2f} ms, {a['clips_per_s']:.0f} clips/s" if a else "failed", "-", "-", "-", "reported"))
f = load(os.path.join(d, "tvl1.json"))
f = f if f and "cuda_pairs_per_s" in f else None
rows.append(("TV-L1 pairs/s at 320x240, batch 64 (vs CPU TV-L1, all cores)",
             f"{f['cuda_pairs_per_s']:.0f} pairs/s" if f else "failed", f"cpu {f['cpu_pairs_per_s']:.1f} pairs/s" if f else "-",
             f"{f['speedup']:.0f}x" if f else "-", ("PASS" if f['cuda_pairs_per_s'] >= 1000 else "FAIL") if f else "-", ">= 1000"))
try:
    runs = [json.loads(l) for l in open(os.path.join(d, "pretrain_throughput.json")) if l.strip()]
except Exception:
    runs = []
for r in runs:
    copies = "background copies" if r.get("overlap_copies") else "synchronous copies"
    rows.append((f"mscl-pretrain --device cuda, paper shapes, batch {r['batch']}, flow coding and RGB jitter/blur on the {'GPU' if r['flow_coding'] == 'device' else 'host'}, {copies}",
                 f"{r['clips_per_s']:.1f} clips/s, data wait {r['data_wait_s_per_iteration']:.3f} s/it", "-", "-", "-", "reported"))
status = {0: "PASS", 77: "SKIPPED (no GPU)"}.get(test_rc, "FAIL")
rows.append(("GPU tests incl. full r3d step loss vs CPU, programs --device cuda", status, "-", "-", status, "tolerances in docs/cuda.md"))
try:
    for line in open(os.path.join(d, "nccl_rows.tsv")):
        if line.strip():
            label, st, verdict = line.rstrip("\n").split("\t")
            rows.append((label, st, "-", "-", verdict, "one rank: collectives exact"))
except Exception:
    pass
w = [max(len(str(r[i])) for r in rows + [("check", "mscl", "pytorch", "speed-up", "verdict", "bar")]) for i in range(6)]
hdr = ("check", "mscl", "pytorch", "speed-up", "verdict", "bar")
print("  ".join(h.ljust(w[i]) for i, h in enumerate(hdr)))
print("  ".join("-" * w[i] for i in range(6)))
for r in rows:
    print("  ".join(str(c).ljust(w[i]) for i, c in enumerate(r)))
m = load(os.path.join(d, "r3d18_train_b32_tf32.mscl.json"))
if m: print(f"device: {m['device']}")
EOF
# MSCL_GPU_PROFILE=1: where the time of one r3d_18 training step goes, per kernel, for both
# engines under the same tool (ncu, one timed step each, kernels serialised; the sum of kernel
# times against the step's wall time above separates GPU work from host overhead).
if [[ ${MSCL_GPU_PROFILE:-0} == 1 ]] && command -v ncu >/dev/null; then
  ncu_args=(--profile-from-start off --metrics gpu__time_duration.sum --clock-control none --csv --page raw --print-units base)
  echo "== ncu: r3d_18 train step, batch 32, 8x112x112, TF32 (one step per engine)"
  timeout 200 ncu "${ncu_args[@]}" --log-file "$results/ncu_mscl.csv" "$bundle/cuda_step_prog" --mode train --batch 32 \
    --frames 8 --size 112 --iters 1 --warmup 2 >/dev/null 2>"$results/ncu_mscl.err" || tail -5 "$results/ncu_mscl.err"
  timeout 200 ncu "${ncu_args[@]}" --log-file "$results/ncu_torch.csv" "$py" benchmarks/peer_pytorch_gpu.py --mode train \
    --batch 32 --frames 8 --size 112 --iters 1 --warmup 2 >/dev/null 2>"$results/ncu_torch.err" || tail -5 "$results/ncu_torch.err"
  "$py" - "$results" <<'EOF'
import csv, os, re, sys, collections  # ncu --csv prints numbers with thousands separators
d = sys.argv[1]
def load(name):
    p = os.path.join(d, name)
    if not os.path.exists(p): return None
    rows = [l for l in open(p, errors="replace") if l.startswith('"')]
    if len(rows) < 3: return None
    r = list(csv.DictReader(rows))[1:]  # the second row holds the units
    out = collections.defaultdict(lambda: [0.0, 0])
    for x in r:
        k = re.sub(r"\(.*", "", x.get("Kernel Name", "?"))[:70]
        try: t = float(x["gpu__time_duration.sum"].replace(",", ""))
        except (KeyError, ValueError): continue
        out[k][0] += t; out[k][1] += 1
    return out
for eng in ("mscl", "torch"):
    k = load(f"ncu_{eng}.csv")
    if not k: print(f"{eng}: no kernels profiled"); continue
    tot = sum(v[0] for v in k.values()); n = sum(v[1] for v in k.values())
    print(f"-- {eng}: {n} kernels, {tot/1e6:.2f} ms of kernel time")
    for name, (t, c) in sorted(k.items(), key=lambda kv: -kv[1][0])[:18]:
        print(f"   {t/1e6:8.3f} ms  {100*t/tot:5.1f}%  x{c:<4d} {name}")
EOF
fi
echo "gpu-check: $(( $(date +%s) - t_start )) s"
[[ $test_rc == 0 && $nccl_failed == 0 ]]

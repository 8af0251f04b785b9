#!/usr/bin/python3
"""Peer benchmark: PyTorch (Debian torch 1.13 + torchvision 0.14) vs mscl on r3d_18 / r2d_18_flow, CPU.

Usage (from the repository root, Debian's interpreter):
    /usr/bin/python3 benchmarks/peer_pytorch.py                        # r3d_18, N in {1,8}, fwd+train
    /usr/bin/python3 benchmarks/peer_pytorch.py --quick --batches 1    # 2 timed iterations, N=1
    /usr/bin/python3 benchmarks/peer_pytorch.py --arch r2d_18_flow --json flow.json
    options: --modes forward,train  --runs A,B  --iters K --warmup W  --frames 8 --size 112 --threads 2
             --mscl-bin build/benchmarks/step_prog  --no-mscl  --timeout 1800

Workload (BASELINES.md "How these were measured"): random-init model with a 400-way fc; input
N x 3 x T x S x S (default T=8, S=112), torch.set_num_threads(threads).
  forward : model.eval(), torch.no_grad(), one forward.
  train   : model.train(), forward + 400-way cross-entropy on random labels + backward +
            SGD(lr 0.01, momentum 0.9, weight decay 1e-4) step.
Each (engine, mode, N) runs in a FRESH subprocess, so the peak RSS (ru_maxrss from os.wait4 on that
child) is per case, and so the run-B environment can be applied:
  run A : the environment as it is.
  run B : OPENBLAS_CORETYPE=SkylakeX, LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2,
          MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1 (the strongest peer; ratios are against it).
          On a CPU without AVX-512 the coretype defaults to Haswell (SkylakeX kernels would SIGILL);
          --openblas-coretype overrides. Each PyTorch row reports which BLAS torch actually loaded
          (Debian's libblas.so.3 is the slow reference BLAS unless libopenblas0-pthread is installed,
          in which case OPENBLAS_CORETYPE has no effect) and whether jemalloc is mapped.
Timing: median (and min/max) over --iters iterations after --warmup warm-ups, perf_counter per step.

mscl engine contract (the C++ program at --mscl-bin, run in the environment as it is):
    step_prog --mode forward|train --batch N --frames T --size S --iters K --warmup W --threads 2
              [--arch r2d_18_flow]            (only passed when --arch is not r3d_18)
    prints one JSON line on stdout:
    {"mode":..,"batch":..,"median_ms":..,"min_ms":..,"max_ms":..,"peak_rss_mb":..}
If the binary is missing the mscl rows are skipped with a message.

FLOPs per clip are counted with forward hooks (conv/linear MAC x 2; scripts/torch_models.count_flops):
r3d_18 at 8x112x112 = 40.70 GFLOP forward, train = 3 x fwd - stem grad-input = 120.7 GFLOP.
Columns: GFLOP/s = clips/s x GFLOP per clip; "thr/ptB" = engine throughput / PyTorch-B throughput;
"RSS/ptB" = engine peak RSS / PyTorch-B peak RSS (same mode and N; PyTorch-A when B is not run).
Peak RSS is ru_maxrss of the case's process, which starts at the launcher's own (~13 MB, printed as
"RSS floor"). "process CPU/wall" near --threads means the case had the cores to itself.
"""

import argparse
import json
import os
import statistics
import signal
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "scripts"))

JEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
NUM_CLASSES = 400


# ----------------------------------------------------------------------------------------------
# child: one PyTorch case
# ----------------------------------------------------------------------------------------------
def _loaded_libs():
    try:
        with open("/proc/self/maps") as f:
            return sorted({line.split()[-1] for line in f if ".so" in line})
    except OSError:
        return []


def _blas_info():
    """The BLAS torch loaded, and OpenBLAS's kernel choice (Prescott/SkylakeX, BASELINES.md) if it is OpenBLAS.

    Debian's libblas.so.3 is an alternatives link: reference BLAS unless libopenblas0-* is installed.
    """
    import ctypes
    found = []
    for lib in _loaded_libs():
        if "blas" in os.path.basename(lib):
            real = os.path.realpath(lib)
            try:
                fn = ctypes.CDLL(lib).openblas_get_corename
                fn.restype = ctypes.c_char_p
                return f"OpenBLAS:{fn().decode()} ({real})"
            except (OSError, AttributeError):
                found.append(real)
    return ("non-OpenBLAS: " + ", ".join(found)) if found else "none loaded"


def run_child(args):
    import torch
    import torch.nn.functional as F
    from torch_models import build

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build(args.arch, None, NUM_CLASSES)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn((args.batch, 3, args.frames, args.size, args.size), generator=gen)
    labels = torch.randint(0, NUM_CLASSES, (args.batch,), generator=gen)
    times = []
    if args.mode == "forward":
        model.eval()
        with torch.no_grad():
            for i in range(args.warmup + args.iters):
                t0 = time.perf_counter()
                model(x)
                times.append(time.perf_counter() - t0)
    else:
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
        for i in range(args.warmup + args.iters):
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), labels)
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t0)
    timed = [1e3 * t for t in times[args.warmup:]]
    import resource
    print(json.dumps({
        "mode": args.mode, "batch": args.batch,
        "median_ms": statistics.median(timed), "min_ms": min(timed), "max_ms": max(timed),
        "iters_ms": timed, "warmup_ms": [1e3 * t for t in times[:args.warmup]],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "torch_threads": torch.get_num_threads(),
        "jemalloc": any("jemalloc" in lib for lib in _loaded_libs()),
        "blas": _blas_info(),
        "openblas_coretype_env": os.environ.get("OPENBLAS_CORETYPE"),
    }), flush=True)


# ----------------------------------------------------------------------------------------------
# parent
# ----------------------------------------------------------------------------------------------
def env_for(run, coretype):
    env = dict(os.environ)
    if run == "B":
        env["OPENBLAS_CORETYPE"] = coretype
        env["LD_PRELOAD"] = (JEMALLOC + " " + env["LD_PRELOAD"]).strip() if env.get("LD_PRELOAD") else JEMALLOC
        env["MALLOC_CONF"] = "dirty_decay_ms:-1,muzzy_decay_ms:-1"
    return env


def spawn(cmd, env, timeout):
    """Run cmd; return (rc, stdout, stderr, peak_rss_mb of that child from wait4, wall_s, cpu_s).

    os.posix_spawn (glibc: clone(CLONE_VM|CLONE_VFORK)) rather than fork: a forked child starts with
    a copy of the parent's page tables, and Linux carries that RSS high-water mark across exec, so
    ru_maxrss would include the parent's memory. With posix_spawn it is the case's own peak.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.time()
        pid = os.posix_spawn(cmd[0], cmd, env, file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, out.fileno(), 1),
            (os.POSIX_SPAWN_DUP2, err.fileno(), 2)])
        deadline = t0 + timeout
        while True:
            wpid, status, ru = os.wait4(pid, os.WNOHANG)
            if wpid:
                break
            if time.time() > deadline:
                os.kill(pid, signal.SIGKILL)
                wpid, status, ru = os.wait4(pid, 0)
                break
            time.sleep(0.05)
        rc = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return (rc, out.read().decode(errors="replace"), err.read().decode(errors="replace"),
                ru.ru_maxrss / 1024.0, time.time() - t0, ru.ru_utime + ru.ru_stime)


def last_json(text):
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                pass
    return None


def flops_child(args):
    from torch_models import build, count_flops
    fwd, stem = count_flops(build(args.arch, None, NUM_CLASSES), (1, 3, args.frames, args.size, args.size))
    print(json.dumps({"forward": fwd / 1e9, "train": (3 * fwd - stem) / 1e9}))


def flops_per_clip(args):
    """GFLOP per clip (forward, train), counted in a subprocess so the parent never imports torch."""
    rc, out, err, _, _, _ = spawn([sys.executable, os.path.abspath(__file__), "--flops", "--arch", args.arch,
                                "--frames", str(args.frames), "--size", str(args.size)], dict(os.environ), 600)
    res = last_json(out)
    if rc != 0 or res is None:
        raise RuntimeError(f"peer_pytorch: FLOP count failed (rc={rc}): {err.strip()[-500:]}")
    return res["forward"], res["train"]


def cpu_has_avx512():
    try:
        with open("/proc/cpuinfo") as f:
            return " avx512f" in f.read()
    except OSError:
        return False


def main(argv=None):
    p = argparse.ArgumentParser(description="PyTorch vs mscl peer benchmark (see module docstring).")
    p.add_argument("--arch", choices=("r3d_18", "r2d_18_flow"), default="r3d_18")
    p.add_argument("--batches", default="1,8")
    p.add_argument("--modes", default="forward,train")
    p.add_argument("--runs", default="A,B", help="PyTorch environments to run (A, B)")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="--iters 2")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--mscl-bin", default=os.path.join("build", "benchmarks", "step_prog"))
    p.add_argument("--no-mscl", action="store_true")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per case")
    p.add_argument("--json", default=None, help="write all rows to this file")
    # internal: one PyTorch case in this process
    p.add_argument("--openblas-coretype", default=None,
                   help="run B's OPENBLAS_CORETYPE (default SkylakeX, or Haswell when the CPU lacks AVX-512, "
                        "where the SkylakeX kernels would die with SIGILL)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--flops", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mode", choices=("forward", "train"), help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.iters = 2
    if args.child:
        run_child(args)
        return 0
    if args.flops:
        flops_child(args)
        return 0
    coretype = args.openblas_coretype or ("SkylakeX" if cpu_has_avx512() else "Haswell")

    batches = [int(b) for b in args.batches.split(",") if b]
    modes = [m for m in args.modes.split(",") if m]
    runs = [r for r in args.runs.split(",") if r]
    for m in modes:
        if m not in ("forward", "train"):
            p.error(f"--modes: expected forward/train, got {m!r}")
    for r in runs:
        if r not in ("A", "B"):
            p.error(f"--runs: expected A/B, got {r!r}")
    if "B" in runs and not os.path.exists(JEMALLOC):
        print(f"warning: {JEMALLOC} not found; run B will fail (apt-get install libjemalloc2)")

    mscl_bin = args.mscl_bin if os.path.isabs(args.mscl_bin) else os.path.join(ROOT, args.mscl_bin)
    use_mscl = not args.no_mscl and os.access(mscl_bin, os.X_OK)
    if not args.no_mscl and not use_mscl:
        print(f"note: mscl binary {mscl_bin} not found or not executable; skipping mscl rows "
              f"(build it: cmake --build <build dir> --target step_prog)")

    gf_fwd, gf_train = flops_per_clip(args)
    print(f"{args.arch} {args.frames}x{args.size}x{args.size}: {gf_fwd:.2f} GFLOP/clip forward, "
          f"{gf_train:.1f} GFLOP/clip train step; threads {args.threads}, median of {args.iters} "
          f"after {args.warmup} warm-up(s); run B OPENBLAS_CORETYPE={coretype}", flush=True)

    # The RSS high-water mark of a spawned child starts at the launcher's own (Linux folds the shared
    # mm's peak into the child's at exec), so report that floor: a trivial program's ru_maxrss.
    floor_mb = spawn(["/bin/true"], dict(os.environ), 60)[3]
    print(f"RSS floor (ru_maxrss of /bin/true spawned by this launcher): {floor_mb:.0f} MB", flush=True)

    rows = []
    for mode in modes:
        for n in batches:
            common = ["--mode", mode, "--batch", str(n), "--frames", str(args.frames), "--size", str(args.size),
                      "--iters", str(args.iters), "--warmup", str(args.warmup), "--threads", str(args.threads)]
            cases = [("pytorch-" + r, [sys.executable, os.path.abspath(__file__), "--child", "--arch", args.arch]
                      + common, env_for(r, coretype)) for r in runs]
            if use_mscl:
                extra = ["--arch", args.arch] if args.arch != "r3d_18" else []
                cases.append(("mscl", [mscl_bin] + common + extra, dict(os.environ)))
            for engine, cmd, env in cases:
                rc, out, err, rss, wall, cpu = spawn(cmd, env, args.timeout)
                res = last_json(out) if rc == 0 else None
                row = {"arch": args.arch, "mode": mode, "batch": n, "frames": args.frames, "size": args.size,
                       "engine": engine, "threads": args.threads, "iters": args.iters, "warmup": args.warmup,
                       "wall_s": wall, "cpu_s": cpu, "peak_rss_mb": rss}
                if res is None:
                    row["error"] = f"rc={rc}: " + (err.strip().splitlines() or ["no JSON on stdout"])[-1]
                    print(f"  {mode} N={n} {engine}: FAILED {row['error']}", flush=True)
                else:
                    if (res.get("mode") != mode or res.get("batch") != n
                            or res.get("arch", args.arch) != args.arch):
                        print(f"  warning: {engine} reported mode={res.get('mode')!r} batch={res.get('batch')!r} "
                              f"arch={res.get('arch')!r}, expected {mode!r} {n} {args.arch!r}", flush=True)
                    row.update({k: v for k, v in res.items() if k not in ("peak_rss_mb", "mode", "batch", "arch")})
                    row["self_reported_rss_mb"] = res.get("peak_rss_mb")
                    gf = gf_fwd if mode == "forward" else gf_train
                    row["clips_per_s"] = 1e3 * n / row["median_ms"]
                    row["gflops"] = row["clips_per_s"] * gf
                    print(f"  {mode} N={n} {engine}: median {row['median_ms']:.0f} ms "
                          f"({row['min_ms']:.0f}-{row['max_ms']:.0f}), RSS {rss:.0f} MB, "
                          f"process CPU/wall {cpu / wall:.2f} (of {args.threads}; low = CPU shared)"
                          + (f", jemalloc={res['jemalloc']}, blas={res['blas']}" if "blas" in res else ""),
                          flush=True)
                rows.append(row)

    # ratios against PyTorch run B (or the last PyTorch run present)
    ref_engine = "pytorch-B" if "B" in runs else ("pytorch-" + runs[-1] if runs else None)
    for row in rows:
        ref = next((r for r in rows if r["engine"] == ref_engine and r["mode"] == row["mode"]
                    and r["batch"] == row["batch"] and "median_ms" in r), None)
        if ref and "median_ms" in row:
            row["thr_vs_ref"] = ref["median_ms"] / row["median_ms"]
            row["rss_vs_ref"] = row["peak_rss_mb"] / ref["peak_rss_mb"]
            row["ref_engine"] = ref_engine

    ref_tag = (ref_engine or "-").replace("pytorch-", "pt")
    hdr = (f"{'config':<24} {'engine':<10} {'median ms (min-max)':>22} {'clips/s':>8} {'GFLOP/s':>8} "
           f"{'RSS MB':>8} {'thr/' + ref_tag:>9} {'RSS/' + ref_tag:>9}")
    print()
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        cfg = f"{args.arch} {r['mode']} N={r['batch']}"
        if "median_ms" not in r:
            print(f"{cfg:<24} {r['engine']:<10} {'FAILED: ' + r['error'][:60]}")
            continue
        mm = f"{r['median_ms']:.0f} ({r['min_ms']:.0f}-{r['max_ms']:.0f})"
        print(f"{cfg:<24} {r['engine']:<10} {mm:>22} {r['clips_per_s']:>8.2f} {r['gflops']:>8.1f} "
              f"{r['peak_rss_mb']:>8.0f} {r.get('thr_vs_ref', float('nan')):>9.2f} "
              f"{r.get('rss_vs_ref', float('nan')):>9.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"gflop_per_clip": {"forward": gf_fwd, "train": gf_train}, "rss_floor_mb": floor_mb,
                       "run_b_openblas_coretype": coretype, "rows": rows}, f, indent=1)
        print(f"wrote {args.json}")
    return 0 if all("median_ms" in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

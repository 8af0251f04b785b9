#!/usr/bin/env python3
"""PyTorch peer of benchmarks/cuda_step_prog.cu: torchvision r3d_18 training step (or forward) on the GPU.

Usage (on a GPU machine with PyTorch + torchvision; scripts/gpu-check.sh runs it):
    python3 benchmarks/peer_pytorch_gpu.py --mode train --batch 32 --frames 8 --size 112 \
        --iters 10 --warmup 3 [--no-tf32] [--bf16] [--heuristic-algos]

Workload (identical to cuda_step_prog): r3d_18 with a 400-way fc, random init; input N x 3 x T x S x S
of N(0, 1) values already on the GPU; labels i % 400.
  train   : model.train(), forward, cross-entropy, zero_grad, backward, SGD(lr 0.01, momentum 0.9,
            weight decay 1e-4) step.
  forward : model.eval(), torch.no_grad(), one forward.
Precision: TF32 on (torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32 both True)
unless --no-tf32, which sets both False; eager mode, FP32 tensors. cudnn.benchmark=True unless
--heuristic-algos (mscl's default also times cuDNN's algorithms once per shape).
--bf16 runs forward and loss under torch.autocast("cuda", dtype=torch.bfloat16) (backward follows
the recorded casts), the peer of cuda_step_prog --bf16; parameters and optimiser stay FP32.
Timing: torch.cuda.synchronize() before and after each step, perf_counter; median/min/max over
--iters steps after --warmup steps. Prints one JSON line with the same keys as cuda_step_prog.
The timed steps run between torch.cuda.profiler.start() and stop() (and in an NVTX range "timed"),
like cuda_step_prog's, for ncu --profile-from-start off.
"""

import argparse
import json
import statistics
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["train", "forward"], default="train")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--no-tf32", action="store_true")
    ap.add_argument("--heuristic-algos", action="store_true")
    ap.add_argument("--bf16", action="store_true")
    a = ap.parse_args()

    try:
        import torch
        import torchvision
    except ImportError as e:
        print(f"peer_pytorch_gpu: PyTorch/torchvision not importable ({e})", file=sys.stderr)
        return 3
    if not torch.cuda.is_available():
        print("peer_pytorch_gpu: torch.cuda.is_available() is False", file=sys.stderr)
        return 3

    tf32 = not a.no_tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = not a.heuristic_algos
    torch.manual_seed(0)
    dev = torch.device("cuda")
    model = torchvision.models.video.r3d_18(num_classes=400).to(dev)
    clip = torch.randn(a.batch, 3, a.frames, a.size, a.size, device=dev)
    labels = (torch.arange(a.batch, device=dev) % 400).long()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()

    times = []
    for it in range(a.warmup + a.iters):
        torch.cuda.synchronize()
        if it == a.warmup:
            torch.cuda.profiler.start()
        if it >= a.warmup:
            torch.cuda.nvtx.range_push("timed")
        t0 = time.perf_counter()
        autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=a.bf16)
        if a.mode == "forward":
            model.eval()
            with torch.no_grad(), autocast:
                model(clip)
        else:
            model.train()
            with autocast:
                loss = loss_fn(model(clip), labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        torch.cuda.synchronize()
        ms = (time.perf_counter() - t0) * 1000.0
        if it >= a.warmup:
            torch.cuda.nvtx.range_pop()
            times.append(ms)
    torch.cuda.profiler.stop()
    med = statistics.median(times)
    print(json.dumps({
        "engine": "pytorch", "device": torch.cuda.get_device_name(0), "mode": a.mode, "arch": "r3d_18",
        "batch": a.batch, "frames": a.frames, "size": a.size, "median_ms": round(med, 3),
        "min_ms": round(min(times), 3), "max_ms": round(max(times), 3),
        "clips_per_s": round(1000.0 * a.batch / med, 2),
        "peak_device_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1), "tf32": tf32,
        "bf16": a.bf16,
        "torch": torch.__version__, "cudnn": torch.backends.cudnn.version(),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())

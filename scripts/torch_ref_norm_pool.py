#!/usr/bin/python3
"""PyTorch reference outputs for the batch-norm and pooling tests (tests/unit/ops_{norm,pool}_test.cpp).

Usage: torch_ref_norm_pool.py CASE_DIR [CASE_DIR ...]

Several cases go in one call because importing torch costs seconds. Each CASE_DIR/case.json names the op and its parameters and lists the input tensors:
  {"op": "batch_norm" | "max_pool3d" | "avg_pool3d" | "adaptive_avg_pool3d" | "max_pool2d" |
         "avg_pool2d" | "adaptive_avg_pool2d" | "global_avg_pool",
   "params": {...}, "inputs": {"x": [shape...], "weight": [...], ..., "dy": [...]}}
Each input NAME is stored as CASE_DIR/NAME.bin (raw little-endian float64, row-major).
Writes CASE_DIR/out.bin (forward output), grad_<name>.bin for x/weight/bias when "dy" is given
(backward with grad_output = dy), and running_mean.bin / running_var.bin after the call for
batch_norm with running buffers. Everything runs in float64 so that the C++ side can compare tightly.
Exit status 0 on success; the tests treat a missing torch as "skip".
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F


def load(case_dir, name, shape):
    data = np.fromfile(os.path.join(case_dir, name + ".bin"), dtype="<f8")
    return torch.from_numpy(data.reshape(shape)).clone()


def save(case_dir, name, t):
    t.detach().contiguous().numpy().astype("<f8").tofile(os.path.join(case_dir, name + ".bin"))


def run_case(case_dir):
    with open(os.path.join(case_dir, "case.json")) as f:
        case = json.load(f)
    op, p = case["op"], case.get("params", {})
    ins = {k: load(case_dir, k, v) for k, v in case["inputs"].items()}
    for k in ("x", "weight", "bias"):
        if k in ins:
            ins[k].requires_grad_(True)
    x = ins["x"]

    if op == "batch_norm":
        rm, rv = ins.get("running_mean"), ins.get("running_var")
        out = F.batch_norm(x, rm, rv, ins.get("weight"), ins.get("bias"), training=p["training"],
                           momentum=p["momentum"], eps=p["eps"])
        if p.get("relu", False):
            out = F.relu(out)
        if rm is not None:
            save(case_dir, "running_mean", rm)
            save(case_dir, "running_var", rv)
    elif op in ("max_pool3d", "max_pool2d"):
        fn = F.max_pool3d if op == "max_pool3d" else F.max_pool2d
        out = fn(x, p["kernel"], p["stride"], p["padding"])
    elif op in ("avg_pool3d", "avg_pool2d"):
        fn = F.avg_pool3d if op == "avg_pool3d" else F.avg_pool2d
        out = fn(x, p["kernel"], p["stride"], p["padding"], count_include_pad=p["count_include_pad"])
    elif op == "adaptive_avg_pool3d":
        out = F.adaptive_avg_pool3d(x, p["output_size"])
    elif op == "adaptive_avg_pool2d":
        out = F.adaptive_avg_pool2d(x, p["output_size"])
    elif op == "global_avg_pool":
        out = x.mean(dim=tuple(range(2, x.dim())))
    else:
        sys.exit("torch_ref_norm_pool.py: unknown op '%s'" % op)

    save(case_dir, "out", out)
    if "dy" in ins:
        out.backward(ins["dy"])
        for k in ("x", "weight", "bias"):
            if k in ins and ins[k].grad is not None:
                save(case_dir, "grad_" + k, ins[k].grad)


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: torch_ref_norm_pool.py CASE_DIR [CASE_DIR ...]")
    torch.set_num_threads(1)
    for case_dir in sys.argv[1:]:
        run_case(case_dir)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""PyTorch reference outputs for the 3-D resize ops and the TPN neck
(tests/unit/ops_resize_test.cpp, tests/unit/models_tpn_neck_test.cpp).

Usage: torch_ref_resize.py CASE_DIR [CASE_DIR ...]

Several cases go in one call because importing torch costs seconds. Each CASE_DIR/case.json is
  {"op": "nearest" | "trilinear" | "tpn_neck", "dtype": "float64" | "float32" (default float64),
   "params": {...}, "inputs": {"NAME": [shape...], ...}}
and each input NAME is stored as CASE_DIR/NAME.bin (raw little-endian float64, row-major).

op "nearest" / "trilinear": params {"size": [t, h, w], "align_corners": bool (trilinear)};
  inputs x and optionally dy. Writes out.bin = F.interpolate(x, size, mode) and, with dy,
  grad_x.bin (backward with grad_output = dy).
op "tpn_neck": params {"levels": L, "pconv_num": P, "sepc_stride": [st, sh, sw]}; inputs
  x0..x{L-1}, every neck parameter under its mscl name with '.' replaced by '_' (e.g.
  fpn_lateral_0_weight, sepc_1_from_finer_bias), and optionally dy0..dy{L-1}. The neck is written
  here from ALGORITHM.md §1.2 with F.conv3d / F.interpolate (mmdet FPN + SEPC PConv semantics).
  Writes out{l}.bin per level and, with dy, grad_x{l}.bin and grad_<param>.bin.
All outputs are written as float64. Exit status 0 on success; the tests treat a missing torch as
"skip".
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F


def load(case_dir, name, shape, dtype):
    data = np.fromfile(os.path.join(case_dir, name + ".bin"), dtype="<f8")
    return torch.from_numpy(data.reshape(shape)).to(dtype).clone()


def save(case_dir, name, t):
    t.detach().to(torch.float64).contiguous().numpy().astype("<f8").tofile(os.path.join(case_dir, name + ".bin"))


def tpn_neck(ins, p):
    L, P = p["levels"], p["pconv_num"]
    stride = tuple(p["sepc_stride"])
    xs = [ins["x%d" % l] for l in range(L)]
    lat = [F.conv3d(xs[l], ins["fpn_lateral_%d_weight" % l], ins["fpn_lateral_%d_bias" % l]) for l in range(L)]
    for l in range(L - 1, 0, -1):  # mmdet FPN: cumulative top-down, nearest, size of the finer level
        lat[l - 1] = lat[l - 1] + F.interpolate(lat[l], size=lat[l - 1].shape[2:], mode="nearest")
    x = [F.conv3d(lat[l], ins["fpn_output_%d_weight" % l], ins["fpn_output_%d_bias" % l], padding=(0, 1, 1))
         for l in range(L)]
    for k in range(P):
        def conv(name, t, s=1):
            return F.conv3d(t, ins["sepc_%d_%s_weight" % (k, name)], ins["sepc_%d_%s_bias" % (k, name)],
                            stride=s, padding=1)
        nxt = []
        for l in range(L):
            y = conv("mid", x[l])
            if l > 0:
                y = y + conv("from_finer", x[l - 1], stride)
            if l < L - 1:
                y = y + F.interpolate(conv("from_coarser", x[l + 1]), size=y.shape[2:], mode="trilinear",
                                      align_corners=False)
            nxt.append(y)
        x = [F.relu(t) for t in nxt]
    return x


def run_case(case_dir):
    with open(os.path.join(case_dir, "case.json")) as f:
        case = json.load(f)
    op, p = case["op"], case.get("params", {})
    dtype = {"float64": torch.float64, "float32": torch.float32}[case.get("dtype", "float64")]
    ins = {k: load(case_dir, k, v, dtype) for k, v in case["inputs"].items()}
    for k, t in ins.items():
        if not k.startswith("dy"):
            t.requires_grad_(True)

    if op in ("nearest", "trilinear"):
        kw = {"align_corners": p.get("align_corners", False)} if op == "trilinear" else {}
        out = F.interpolate(ins["x"], size=tuple(p["size"]), mode=op, **kw)
        save(case_dir, "out", out)
        if "dy" in ins:
            out.backward(ins["dy"])
            save(case_dir, "grad_x", ins["x"].grad)
    elif op == "tpn_neck":
        outs = tpn_neck(ins, p)
        for l, o in enumerate(outs):
            save(case_dir, "out%d" % l, o)
        if "dy0" in ins:
            torch.autograd.backward(outs, [ins["dy%d" % l] for l in range(len(outs))])
            for k, t in ins.items():
                if not k.startswith("dy") and t.grad is not None:
                    save(case_dir, "grad_" + k, t.grad)
    else:
        sys.exit("torch_ref_resize.py: unknown op '%s'" % op)


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: torch_ref_resize.py CASE_DIR [CASE_DIR ...]")
    torch.set_num_threads(1)
    for case_dir in sys.argv[1:]:
        run_case(case_dir)


if __name__ == "__main__":
    main()

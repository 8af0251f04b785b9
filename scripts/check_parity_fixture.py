#!/usr/bin/python3
"""Verify a fixture written by torch_parity.py: file layout, round trip, and self-consistency.

Usage:  /usr/bin/python3 scripts/check_parity_fixture.py DIR [DIR ...]
        /usr/bin/python3 scripts/check_parity_fixture.py --generate   (writes 3 small fixtures to a
                                                                      temp dir, then checks them)
Exit status 0 when every check passes, 1 otherwise.

What is checked (this is the test of scripts/safetensors_io.py's writer, and of the fixture contract):
 1. On-disk layout of each .safetensors: header length a multiple of 8, space padding, JSON keys sorted
    (after __metadata__), data laid out by (decreasing itemsize, name) so F64/I64 are 8-byte aligned,
    offsets covering the buffer exactly (the reader enforces this).
 2. Reader rejects corrupted copies (truncated buffer, overlapping offsets, bad header length), so
    the checks above can fail.
 3. weights.safetensors equals the state_dict of the model rebuilt independently from meta.json's
    arguments (same seed), bit for bit, with the right dtypes (floats F32/F64, num_batches_tracked I64).
 4. Contract coverage: grad.<p> for exactly the named parameters, buffer.<b> for exactly the buffers,
    tap.stem..tap.layer4 with the shapes in meta.json; num_batches_tracked == 1 after the forward.
 5. Independent numpy checks: output == fc(mean over T,H,W of tap.layer4) (or the mean itself when
    there is no fc), in train and eval; loss == numpy cross-entropy / sum(output * proj);
    grad.fc.{weight,bias} == numpy's (softmax - onehot)/N formulas.
 6. Re-running the model from the READ weights and input.npy (torch, same threads) reproduces the
    train/eval outputs, gradients, buffers and taps (tolerance 1e-6 relative for float32; determinism
    is expected, the tolerance only guards against oneDNN thread-order effects).
"""

import json
import os
import shutil
import struct
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import SafetensorsError, read_safetensors  # noqa: E402
from torch_models import build  # noqa: E402

TAPS = ("stem", "layer1", "layer2", "layer3", "layer4")


class Checker:
    def __init__(self):
        self.failures = 0
        self.passes = 0

    def check(self, cond, what):
        if cond:
            self.passes += 1
        else:
            self.failures += 1
            print("  FAIL:", what)

    def close(self, a, b, what, rtol, atol):
        a = np.asarray(a, dtype=np.float64)
        b = np.asarray(b, dtype=np.float64)
        if a.shape != b.shape:
            self.check(False, f"{what}: shape {a.shape} vs {b.shape}")
            return
        err = np.max(np.abs(a - b)) if a.size else 0.0
        tol = atol + rtol * (np.max(np.abs(b)) if b.size else 0.0)
        self.check(err <= tol, f"{what}: max abs err {err:.3g} > tol {tol:.3g}")


def check_layout(c, path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    c.check(n % 8 == 0, f"{path}: header length {n} not a multiple of 8")
    text = raw[8:8 + n].decode("utf-8")
    c.check(text.rstrip(" ") == text.rstrip(" ").strip() and text.rstrip(" ").endswith("}"),
            f"{path}: header padding is not trailing spaces")
    keys = list(json.loads(text).keys())
    names = [k for k in keys if k != "__metadata__"]
    c.check(names == sorted(names), f"{path}: header names not sorted")
    c.check("__metadata__" not in keys or keys[0] == "__metadata__", f"{path}: __metadata__ not first")
    tensors, meta, layout, _ = read_safetensors(path, return_layout=True)
    size = {"F64": 8, "I64": 8, "F32": 4, "I32": 4, "U8": 1, "BOOL": 1}
    by_offset = sorted(layout, key=lambda k: layout[k][2])
    expect = sorted(layout, key=lambda k: (-size[layout[k][0]], k))
    c.check(by_offset == expect, f"{path}: data not laid out by (itemsize desc, name)")
    for k, (dt, _, begin, _) in layout.items():
        c.check(begin % size[dt] == 0, f"{path}: '{k}' ({dt}) at misaligned offset {begin}")
    c.check(meta.get("format") == "pt" and meta.get("layout") == "NCTHW", f"{path}: metadata {meta}")
    return tensors, meta


def check_reader_rejects(c, path, workdir):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    bad = {}
    bad["truncated"] = raw[:-4]
    bad["header_len"] = struct.pack("<Q", len(raw)) + raw[8:]
    # Make the first (by offset) tensor overlap the second by moving its end forward.
    names = sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])
    if len(names) >= 2:
        h2 = json.loads(raw[8:8 + n])
        h2[names[1]]["data_offsets"] = [h2[names[1]]["data_offsets"][0] - 4,
                                        h2[names[1]]["data_offsets"][1] - 4]
        blob = json.dumps(h2).encode()
        blob += b" " * ((-len(blob)) % 8)
        bad["overlap"] = struct.pack("<Q", len(blob)) + blob + raw[8 + n:]
    dup = raw[8:8 + n].decode().rstrip()
    first = names[0]
    dup = dup[:-1] + ',"%s":%s}' % (first, json.dumps(header[first]))
    dup = dup.encode() + b" " * ((-len(dup.encode())) % 8)
    bad["duplicate"] = struct.pack("<Q", len(dup)) + dup + raw[8 + n:]
    for what, data in bad.items():
        p = os.path.join(workdir, f"bad_{what}.safetensors")
        with open(p, "wb") as f:
            f.write(data)
        try:
            read_safetensors(p)
            c.check(False, f"reader accepted a corrupted file ({what})")
        except SafetensorsError:
            c.check(True, what)


def numpy_ce(logits, labels):
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -logp[np.arange(len(labels)), labels].mean(), np.exp(logp)


def check_dir(d):
    c = Checker()
    print(f"checking {d}")
    with open(os.path.join(d, "meta.json")) as f:
        info = json.load(f)
    f64 = info["dtype"] == "float64"
    fdt = np.float64 if f64 else np.float32
    rtol = 1e-12 if f64 else 1e-6

    w, wmeta = check_layout(c, os.path.join(d, "weights.safetensors"))
    tr, _ = check_layout(c, os.path.join(d, "train_outputs.safetensors"))
    ev, _ = check_layout(c, os.path.join(d, "eval_outputs.safetensors"))
    with tempfile.TemporaryDirectory() as tmp:
        check_reader_rejects(c, os.path.join(d, "weights.safetensors"), tmp)
    c.check(wmeta.get("arch") == info["arch"] and wmeta.get("dtype") == info["dtype"], "metadata arch/dtype")

    # 3. rebuild independently and compare bit for bit
    torch.set_num_threads(info.get("threads", 2))
    torch.manual_seed(info["seed"])
    model = build(info["arch"], info["width"], info["num_classes"])
    if info.get("perturb_bn"):
        from torch_parity import _perturb_bn
        _perturb_bn(model, torch.Generator().manual_seed(info["seed"] + 2))
    model = model.to(torch.float64 if f64 else torch.float32)
    sd = model.state_dict()
    c.check(sorted(sd) == sorted(w), f"weights names differ: {set(sd) ^ set(w)}")
    for k, v in sd.items():
        if k not in w:
            continue
        arr = w[k]
        if k.endswith("num_batches_tracked"):
            c.check(arr.dtype == np.int64 and arr.shape == (), f"{k}: {arr.dtype}{arr.shape}, expected int64 scalar")
        else:
            c.check(arr.dtype == fdt, f"{k}: dtype {arr.dtype}, expected {fdt}")
        c.check(np.array_equal(arr, v.numpy()), f"{k}: values differ from the rebuilt model")

    # 4. coverage
    params = [n for n, _ in model.named_parameters()]
    buffers = [n for n, _ in model.named_buffers()]
    c.check(sorted(k[5:] for k in tr if k.startswith("grad.")) == sorted(params), "grad.* != parameters")
    c.check(sorted(k[7:] for k in tr if k.startswith("buffer.")) == sorted(buffers), "buffer.* != buffers")
    for t in TAPS:
        for name, src in (("train", tr), ("eval", ev)):
            c.check(("tap." + t) in src and list(src["tap." + t].shape) == info["tap_shapes"][t],
                    f"{name} tap.{t} missing or wrong shape")
    for b in buffers:
        if b.endswith("num_batches_tracked"):
            c.check(int(tr["buffer." + b]) == 1, f"buffer.{b} = {tr['buffer.' + b]}, expected 1")
    c.check(tr["loss"].shape == (), "loss must be rank 0")
    extra = set(tr) - {"output", "loss"} - {k for k in tr if k.startswith(("grad.", "buffer.", "tap."))}
    c.check(not extra, f"unexpected train names {extra}")
    c.check(set(ev) == {"output"} | {"tap." + t for t in TAPS}, f"eval names {sorted(ev)}")

    # 5. independent numpy checks of the head
    x = np.load(os.path.join(d, "input.npy"))
    c.check(x.dtype == fdt and list(x.shape) == info["input_shape"], f"input.npy {x.dtype}{x.shape}")
    n = x.shape[0]
    for name, src in (("train", tr), ("eval", ev)):
        pooled = src["tap.layer4"].astype(np.float64).mean(axis=(2, 3, 4))
        ref = pooled @ w["fc.weight"].astype(np.float64).T + w["fc.bias"] if info["num_classes"] else pooled
        c.close(src["output"], ref, f"{name} output vs numpy head", rtol * 10, 0)
    if info["num_classes"]:
        labels = np.load(os.path.join(d, "labels.npy"))
        c.check(labels.dtype == np.int64 and labels.shape == (n,), "labels.npy dtype/shape")
        c.check(labels.min() >= 0 and labels.max() < info["num_classes"], "labels range")
        loss, prob = numpy_ce(tr["output"].astype(np.float64), labels)
        c.close(tr["loss"], loss, "loss vs numpy CE", rtol * 10, 0)
        g = prob.copy()
        g[np.arange(n), labels] -= 1
        g /= n
        pooled = tr["tap.layer4"].astype(np.float64).mean(axis=(2, 3, 4))
        c.close(tr["grad.fc.bias"], g.sum(0), "grad.fc.bias vs numpy", rtol * 10, 0)
        c.close(tr["grad.fc.weight"], g.T @ pooled, "grad.fc.weight vs numpy", rtol * 10, 0)
    else:
        proj = np.load(os.path.join(d, "proj.npy"))
        c.check(proj.shape == tr["output"].shape, "proj.npy shape")
        c.close(tr["loss"], (tr["output"].astype(np.float64) * proj).sum(), "loss vs sum(out*proj)", rtol * 10, 0)
    c.check(not np.array_equal(tr["tap.stem"], ev["tap.stem"]), "train and eval stem taps identical")

    # 6. re-run from the read weights and input
    model.load_state_dict({k: torch.from_numpy(v) for k, v in w.items()})
    taps = {}
    for t in TAPS:
        getattr(model, t).register_forward_hook(lambda m, i, o, t=t: taps.__setitem__(t, o.detach().clone()))
    xt = torch.from_numpy(x)
    model.train()
    out = model(xt)
    if info["num_classes"]:
        loss = F.cross_entropy(out, torch.from_numpy(labels))
    else:
        loss = (out * torch.from_numpy(proj)).sum()
    loss.backward()
    c.close(out.detach().numpy(), tr["output"], "re-run train output", rtol, 0)
    c.close(loss.detach().numpy(), tr["loss"], "re-run loss", rtol, 0)
    for p_name, p in model.named_parameters():
        ref = tr["grad." + p_name]
        c.close(p.grad.numpy(), ref, f"re-run grad.{p_name}", rtol * 10, 1e-30)
    for b_name, b in model.named_buffers():
        c.close(b.numpy(), tr["buffer." + b_name], f"re-run buffer.{b_name}", rtol, 0)
    for t in TAPS:
        c.close(taps[t].numpy(), tr["tap." + t], f"re-run train tap.{t}", rtol, 0)
    model.eval()
    with torch.no_grad():
        out = model(xt)
    c.close(out.numpy(), ev["output"], "re-run eval output", rtol, 0)
    for t in TAPS:
        c.close(taps[t].numpy(), ev["tap." + t], f"re-run eval tap.{t}", rtol, 0)

    print(f"  {c.passes} checks passed, {c.failures} failed")
    return c.failures == 0


def main(argv):
    if argv == ["--generate"]:
        from torch_parity import main as parity_main
        tmp = tempfile.mkdtemp(prefix="mscl_parity_")
        cases = [
            ["--arch", "r3d_narrow", "--width", "4", "--num-classes", "7", "--batch", "2", "--frames", "4",
             "--size", "24", "--seed", "3", "--perturb-bn"],
            ["--arch", "r3d_narrow", "--width", "4", "--num-classes", "5", "--batch", "3", "--frames", "4",
             "--size", "24", "--seed", "4", "--dtype", "float64"],
            ["--arch", "r2d_18_flow", "--width", "8", "--num-classes", "0", "--batch", "2", "--frames", "8",
             "--size", "32", "--seed", "5", "--perturb-bn", "--input-dist", "uniform"],
        ]
        dirs = []
        for i, case in enumerate(cases):
            d = os.path.join(tmp, f"case{i}")
            parity_main(case + ["--out", d])
            dirs.append(d)
        ok = all([check_dir(d) for d in dirs])
        shutil.rmtree(tmp)
    elif argv and not any(a.startswith("-") for a in argv):
        ok = all([check_dir(d) for d in argv])
    else:
        print(__doc__)
        return 2
    print("ALL FIXTURE CHECKS PASSED" if ok else "FIXTURE CHECKS FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

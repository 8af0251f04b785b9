#!/usr/bin/python3
"""Write a PyTorch reference fixture for the mscl C++ parity tests (train step + eval forward).

Usage (Debian's interpreter; torch 1.13, torchvision 0.14, numpy; no `safetensors` package needed):

    /usr/bin/python3 scripts/torch_parity.py --arch r3d_narrow --width 8 --num-classes 10 \
        --batch 2 --frames 4 --size 32 --seed 0 --perturb-bn --out /tmp/fix_r3d
    /usr/bin/python3 scripts/torch_parity.py --arch r2d_18_flow --num-classes 0 \
        --batch 2 --frames 8 --size 32 --seed 1 --dtype float64 --out /tmp/fix_flow

FILE CONTRACT (what the C++ parity test reads; all names exact, layout NCTHW, little-endian)
-----------------------------------------------------------------------------------------
DIR/weights.safetensors   the model's full state_dict BEFORE the training forward, torchvision names:
                          stem.0.weight, stem.1.{weight,bias,running_mean,running_var,num_batches_tracked},
                          layerL.B.conv{1,2}.0.weight, layerL.B.conv{1,2}.1.{...BN...},
                          layerL.0.downsample.0.weight, layerL.0.downsample.1.{...BN...} (L = 2..4),
                          fc.weight, fc.bias (absent when --num-classes 0).
                          Floats are F32 (or F64 with --dtype float64); num_batches_tracked is I64 rank 0.
                          __metadata__: format=pt, arch, width, num_classes, dtype, layout=NCTHW, seed,
                          batch, frames, size, source.
DIR/input.npy             float32/float64 [N, 3, T, S, S], the input for both passes.
DIR/labels.npy            int64 [N] in [0, K)           (only when num_classes > 0)
DIR/proj.npy              float [N, C_out]             (only when num_classes == 0; C_out = 8*width)
DIR/train_outputs.safetensors   model.train(); out = model(input); loss; loss.backward():
    "output"              [N, K] logits, or [N, C_out] pooled features when num_classes == 0
    "loss"                rank-0 scalar: mean cross-entropy(output, labels)   (num_classes > 0)
                                         sum(output * proj)                     (num_classes == 0)
    "grad.<param name>"   d loss / d parameter, one per named_parameters() entry (same shape)
    "buffer.<name>"       every BN buffer after the training forward (running_mean, running_var with
                          momentum 0.1 and the UNBIASED batch variance; num_batches_tracked I64 == 1)
    "tap.stem", "tap.layer1" .. "tap.layer4"   module outputs (after the block's final ReLU) of the
                          training forward, [N, C, T', H', W']
DIR/eval_outputs.safetensors    then model.eval(); with torch.no_grad(): model(input)  -- i.e. with the
                          parameters of weights.safetensors and the BN buffers of "buffer.*" above
                          (backward does not change parameters; there is no optimiser step):
    "output", "tap.stem", "tap.layer1" .. "tap.layer4"
DIR/meta.json             the command-line arguments, shapes and torch/torchvision versions.

Determinism: seeded weights (torch.manual_seed(seed) before construction), input/labels/proj from a
separate torch.Generator seeded with seed+1 (BN perturbation: seed+2, so the input does not depend on it); torch.use_deterministic_algorithms(True, warn_only) and
set_num_threads(2). With --dtype float64 the weights and input are drawn in float32 and cast, so the
two dtypes start from the same values (to float32 precision).

--perturb-bn (recommended for parity): after the default init, BN gamma ~ U(0.5, 1.5), beta ~ N(0, 0.1),
running_mean ~ N(0, 0.1), running_var ~ U(0.5, 1.5), so that BN is not a
near-identity in eval mode and the running-stat update is tested with non-trivial old values.
--input-dist: "normal" (default, N(0,1)) or "uniform" ([0,1), like the flow net's colour-coded input).
"""

import argparse
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import write_safetensors  # noqa: E402
from torch_models import ARCHS, DEFAULT_CLASSES, DEFAULT_WIDTH, build  # noqa: E402

TAP_MODULES = ("stem", "layer1", "layer2", "layer3", "layer4")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Write a PyTorch parity fixture (see the module docstring).")
    p.add_argument("--arch", choices=ARCHS, default="r3d_narrow")
    p.add_argument("--width", type=int, default=None, help="base width (default: arch's own: 64/8/16)")
    p.add_argument("--num-classes", type=int, default=None, help="0 = no fc (default: 400/400/0)")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--frames", type=int, default=4)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--perturb-bn", action="store_true", help="randomise BN affine params and running stats")
    p.add_argument("--input-dist", choices=("normal", "uniform"), default="normal")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", required=True, help="output directory (created)")
    return p.parse_args(argv)


def _perturb_bn(model, gen):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                c = m.num_features
                m.weight.copy_(0.5 + torch.rand(c, generator=gen))
                m.bias.copy_(0.1 * torch.randn(c, generator=gen))
                m.running_mean.copy_(0.1 * torch.randn(c, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(c, generator=gen))


def _state_tensors(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def make_fixture(args):
    torch.set_num_threads(args.threads)
    try:
        torch.use_deterministic_algorithms(True, warn_only=True)
    except TypeError:  # older torch without warn_only
        torch.use_deterministic_algorithms(True)
    width = DEFAULT_WIDTH[args.arch] if args.width is None else args.width
    num_classes = DEFAULT_CLASSES[args.arch] if args.num_classes is None else args.num_classes
    dtype = torch.float64 if args.dtype == "float64" else torch.float32

    torch.manual_seed(args.seed)
    model = build(args.arch, width, num_classes)
    if args.perturb_bn:
        _perturb_bn(model, torch.Generator().manual_seed(args.seed + 2))
    gen = torch.Generator().manual_seed(args.seed + 1)
    shape = (args.batch, 3, args.frames, args.size, args.size)
    x = torch.randn(shape, generator=gen) if args.input_dist == "normal" else torch.rand(shape, generator=gen)
    model = model.to(dtype)
    x = x.to(dtype)

    os.makedirs(args.out, exist_ok=True)
    meta = {
        "format": "pt", "arch": args.arch, "width": str(width), "num_classes": str(num_classes),
        "dtype": args.dtype, "layout": "NCTHW", "seed": str(args.seed), "batch": str(args.batch),
        "frames": str(args.frames), "size": str(args.size), "perturb_bn": str(int(args.perturb_bn)),
        "source": "scripts/torch_parity.py (torch %s, torchvision %s)" % (torch.__version__,
                                                                          torchvision.__version__),
    }
    write_safetensors(os.path.join(args.out, "weights.safetensors"), _state_tensors(model), meta)
    np.save(os.path.join(args.out, "input.npy"), x.numpy())

    taps = {}

    def make_hook(name):
        def hook(mod, inp, out):
            taps[name] = out.detach().clone()  # clone: later in-place ops must not alter the tap
        return hook

    hooks = [getattr(model, n).register_forward_hook(make_hook(n)) for n in TAP_MODULES]

    # ---- training pass ----
    model.train()
    model.zero_grad(set_to_none=True)
    out = model(x)
    if num_classes > 0:
        labels = torch.randint(0, num_classes, (args.batch,), generator=gen, dtype=torch.int64)
        np.save(os.path.join(args.out, "labels.npy"), labels.numpy())
        loss = F.cross_entropy(out, labels)
    else:
        proj = torch.randn(out.shape, generator=gen).to(dtype)
        np.save(os.path.join(args.out, "proj.npy"), proj.numpy())
        loss = (out * proj).sum()
    loss.backward()

    train = {"output": out.detach(), "loss": loss.detach().reshape(())}
    for name, p in model.named_parameters():
        if p.grad is None:
            raise RuntimeError(f"torch_parity: parameter {name} received no gradient")
        train["grad." + name] = p.grad.detach().clone()
    for name, b in model.named_buffers():
        train["buffer." + name] = b.detach().clone()
    for name in TAP_MODULES:
        train["tap." + name] = taps[name]
    write_safetensors(os.path.join(args.out, "train_outputs.safetensors"), train, meta)

    # ---- eval pass (BN uses the running stats updated by the training forward) ----
    taps.clear()
    model.eval()
    with torch.no_grad():
        out_eval = model(x)
    ev = {"output": out_eval}
    for name in TAP_MODULES:
        ev["tap." + name] = taps[name]
    write_safetensors(os.path.join(args.out, "eval_outputs.safetensors"), ev, meta)
    for h in hooks:
        h.remove()

    info = dict(vars(args))
    info.update({
        "width": width, "num_classes": num_classes,
        "torch": torch.__version__, "torchvision": torchvision.__version__,
        "input_shape": list(shape), "output_shape": list(out.shape), "loss": float(loss),
        "tap_shapes": {n: list(taps[n].shape) for n in TAP_MODULES},
        "num_parameters": sum(p.numel() for p in model.parameters()),
    })
    with open(os.path.join(args.out, "meta.json"), "w") as f:
        json.dump(info, f, indent=1, sort_keys=True)
    return info


def main(argv=None):
    args = parse_args(argv)
    info = make_fixture(args)
    print(f"wrote {args.out}: arch={info['arch']} width={info['width']} classes={info['num_classes']} "
          f"dtype={info['dtype']} output={info['output_shape']} loss={info['loss']:.6g} "
          f"params={info['num_parameters']}")


if __name__ == "__main__":
    main()

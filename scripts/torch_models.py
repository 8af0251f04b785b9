"""PyTorch reference builders for the networks mscl re-implements (parity tests and peer benchmark).

* ``build_r3d_18(num_classes)``: torchvision's ``r3d_18`` verbatim (random init).
* ``build_r3d_narrow(width, num_classes)``: the same VideoResNet-18 (Conv3DSimple 3x3x3 convs, stem
  (3,7,7) stride (1,2,2) pad (1,3,3)), but with channels w, 2w, 4w, 8w. Narrow widths keep the C++
  parity tests fast on 2 cores while exercising exactly the same code path and the same
  parameter names as torchvision (``stem.0.weight``, ``layer1.0.conv1.0.weight``, ...). With
  ``width=64`` it is bit-identical to torchvision's r3d_18 for the same seed (see ``--self-test``).
* ``build_r2d_18_flow(width=16, num_classes=0)``: the MSCL flow backbone (ALGORITHM.md §1.2,
  mmaction ``resnet_flow.r2d_18``): BasicBlocks, every conv (1,3,3) pad (0,1,1) stride (1,s,s)
  (torchvision's ``Conv3DNoTemporal``), widths 16/32/64/128, stem Conv3d 3->16 kernel (1,7,7)
  stride (2,2,2) pad (0,3,3) + BN + ReLU, no max-pool, 1x1x1 shortcut stride (1,2,2) + BN at the first
  block of layers 2-4, global average pool, optional fc (``num_classes=0``: no ``fc`` entry, the
  model returns the pooled features).

All builders reuse torchvision's own ``VideoResNet._make_layer``/``forward`` and ``BasicBlock``
classes so the module tree (and hence every state-dict name) is torchvision's.

Init (all three): conv Kaiming-normal (fan_out, ReLU), BN gamma=1 beta=0, Linear N(0, 0.01) with
zero bias -- torchvision's VideoResNet init. The spec gives no fc init for the flow net (it normally
has none); torchvision's is used.

FLOP counting (``count_flops``): conv/linear MACs x 2 via forward hooks, as BASELINES.md does.
"""

import argparse
import sys

import torch
import torch.nn as nn
from torchvision.models.video import r3d_18 as _tv_r3d_18
from torchvision.models.video.resnet import (BasicBlock, Conv3DNoTemporal, Conv3DSimple,
                                             VideoResNet)

ARCHS = ("r3d_18", "r3d_narrow", "r2d_18_flow")
DEFAULT_WIDTH = {"r3d_18": 64, "r3d_narrow": 8, "r2d_18_flow": 16}
DEFAULT_CLASSES = {"r3d_18": 400, "r3d_narrow": 400, "r2d_18_flow": 0}


class _Stem(nn.Sequential):
    """conv-BN-ReLU stem with configurable geometry (children 0/1/2 as in torchvision's BasicStem)."""

    def __init__(self, out_planes, kernel, stride, padding):
        super().__init__(
            nn.Conv3d(3, out_planes, kernel_size=kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm3d(out_planes),
            nn.ReLU(inplace=True),
        )


class WidthVideoResNet(VideoResNet):
    """torchvision VideoResNet with a configurable base width, stem and optional fc.

    Construction order mirrors ``VideoResNet.__init__`` exactly (stem, layer1..4, avgpool, fc, then
    the init loop) so the RNG stream is consumed in the same order as torchvision's.
    """

    def __init__(self, conv_builder, stem, width, num_classes, layers=(2, 2, 2, 2)):
        nn.Module.__init__(self)  # skip VideoResNet.__init__: it hard-codes width 64
        widths = (width, 2 * width, 4 * width, 8 * width)
        self.inplanes = width
        self.stem = stem
        self.layer1 = self._make_layer(BasicBlock, conv_builder, widths[0], layers[0], stride=1)
        self.layer2 = self._make_layer(BasicBlock, conv_builder, widths[1], layers[1], stride=2)
        self.layer3 = self._make_layer(BasicBlock, conv_builder, widths[2], layers[2], stride=2)
        self.layer4 = self._make_layer(BasicBlock, conv_builder, widths[3], layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool3d((1, 1, 1))
        # num_classes == 0: no fc parameters at all (features-only backbone).
        self.fc = nn.Linear(widths[3], num_classes) if num_classes > 0 else nn.Identity()
        _torchvision_init(self)


def _torchvision_init(model):
    for m in model.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.BatchNorm3d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.constant_(m.bias, 0)


def build_r3d_18(num_classes=400):
    """torchvision r3d_18, random init. ``num_classes=0`` replaces fc by Identity (features only)."""
    model = _tv_r3d_18(weights=None, num_classes=max(num_classes, 1))
    if num_classes == 0:
        model.fc = nn.Identity()
    return model


def build_r3d_narrow(width=8, num_classes=400):
    stem = _Stem(width, (3, 7, 7), (1, 2, 2), (1, 3, 3))
    return WidthVideoResNet(Conv3DSimple, stem, width, num_classes)


def build_r2d_18_flow(width=16, num_classes=0):
    stem = _Stem(width, (1, 7, 7), (2, 2, 2), (0, 3, 3))
    return WidthVideoResNet(Conv3DNoTemporal, stem, width, num_classes)


def build(arch, width=None, num_classes=None):
    """Dispatch by name; ``None`` picks the arch's default width / class count."""
    if arch not in ARCHS:
        raise ValueError(f"build: arch must be one of {ARCHS}, got {arch!r}")
    width = DEFAULT_WIDTH[arch] if width is None else int(width)
    num_classes = DEFAULT_CLASSES[arch] if num_classes is None else int(num_classes)
    if width < 1 or num_classes < 0:
        raise ValueError(f"build: width must be >= 1 and num_classes >= 0, got {width}, {num_classes}")
    if arch == "r3d_18":
        if width != 64:
            raise ValueError(f"build: r3d_18 has width 64 (use r3d_narrow for others), got {width}")
        return build_r3d_18(num_classes)
    if arch == "r3d_narrow":
        return build_r3d_narrow(width, num_classes)
    return build_r2d_18_flow(width, num_classes)


def count_flops(model, input_shape):
    """Return (forward_flops, stem_conv_flops) for one forward at ``input_shape`` (conv/linear MACs x 2).

    The train-step estimate used in BASELINES.md is ``3 * forward - stem`` (no grad-input for the stem).
    """
    totals = {"all": 0}
    hooks = []

    def hook(mod, inp, out):
        if isinstance(mod, nn.Conv3d):
            k = mod.in_channels // mod.groups
            for s in mod.kernel_size:
                k *= s
            totals["all"] += 2 * out.numel() * k
        elif isinstance(mod, nn.Linear):
            totals["all"] += 2 * out.numel() * mod.in_features

    for m in model.modules():
        if isinstance(m, (nn.Conv3d, nn.Linear)):
            hooks.append(m.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        x = torch.zeros(input_shape, dtype=next(model.parameters()).dtype)
        out = model.stem[0](x)
        stem = 2 * out.numel() * model.stem[0].weight[0].numel()  # weight[0]: C_in*kT*kH*kW
        totals["all"] = 0
        model(x)
    for h in hooks:
        h.remove()
    model.train(was_training)
    return totals["all"], stem


def _self_test():
    """Checks the narrow builder against torchvision and the flow net's shapes (ALGORITHM.md §1.2)."""
    ok = True
    torch.manual_seed(0)
    tv = build_r3d_18(400)
    torch.manual_seed(0)
    mine = build_r3d_narrow(64, 400)
    a, b = tv.state_dict(), mine.state_dict()
    same_names = list(a) == list(b)
    same_vals = same_names and all(torch.equal(a[k], b[k]) for k in a)
    print(f"r3d_narrow(64) vs torchvision r3d_18: names equal={same_names}, values equal={same_vals}, "
          f"entries={len(a)}, params={sum(p.numel() for p in mine.parameters())}")
    ok &= same_vals and len(a) == 122 and sum(p.numel() for p in mine.parameters()) == 33371472

    flow = build_r2d_18_flow(16, 0)
    shapes = {}
    for name in ("stem", "layer1", "layer2", "layer3", "layer4"):
        getattr(flow, name).register_forward_hook(
            lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape[1:])))
    flow.eval()
    with torch.no_grad():
        y = flow(torch.zeros(1, 3, 8, 112, 112))
    expect = {"stem": (16, 4, 56, 56), "layer1": (16, 4, 56, 56), "layer2": (32, 4, 28, 28),
              "layer3": (64, 4, 14, 14), "layer4": (128, 4, 7, 7)}
    print(f"r2d_18_flow shapes: {shapes}, output {tuple(y.shape)}")
    ok &= shapes == expect and tuple(y.shape) == (1, 128) and "fc.weight" not in flow.state_dict()
    print("r2d_18_flow keys:", [k for k in flow.state_dict() if k.startswith(("stem", "layer2.0"))])

    fwd, stem = count_flops(tv, (1, 3, 8, 112, 112))
    print(f"r3d_18 FLOPs at 1x3x8x112x112: fwd {fwd / 1e9:.2f} G, stem {stem / 1e9:.3f} G, "
          f"train estimate {(3 * fwd - stem) / 1e9:.1f} G")
    ok &= abs(fwd / 1e9 - 40.70) < 0.01
    ffwd, fstem = count_flops(flow, (1, 3, 8, 112, 112))
    print(f"r2d_18_flow FLOPs at 1x3x8x112x112: fwd {ffwd / 1e9:.3f} G, train estimate "
          f"{(3 * ffwd - fstem) / 1e9:.3f} G")
    print("SELF-TEST", "PASSED" if ok else "FAILED")
    return ok


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--self-test", action="store_true", help="compare builders against torchvision")
    args = p.parse_args()
    if args.self_test:
        sys.exit(0 if _self_test() else 1)
    p.print_help()

"""BatchNorm2d + ReLU fused (`ferlab/models/bn_relu2d.py`) against torch's two modules, in one
process (issue 12: the training step's share of the bf16 peak, and epochs per 10 minutes).

    .venv/bin/python benchmarks/bn_relu2d.py --out benchmarks/results/bn_relu2d.json

`layer`: forward + backward of one BatchNorm2d -> ReLU on each of FerNet-S's channels_last
bfloat16 activation shapes at batch 128 (the stem's 48x48x32, then 24x24x64, 12x12x128, 6x6x256).
`step`: a whole FerNet-S training step as `ferlab train` takes it (bf16 autocast, channels_last,
batch 128, SGD-Nesterov fused) on a random batch. Alternating blocks as in `maxpool_step.py`;
medians in milliseconds, with the load average.
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn

from maxpool_step import alternate, finish, start
from ferlab.models import bn_relu2d, create_model
from ferlab.models.layers import Sequential


def _fused(on: bool):
    def switch():
        ext = list(bn_relu2d._ext)
        if not on:
            bn_relu2d._ext[:] = [None]  # unavailable: torch's BatchNorm2d and ReLU
        return lambda: bn_relu2d._ext.__setitem__(slice(None), ext)
    return switch


VARIANTS = {"ferlab": _fused(True), "torch": _fused(False)}
SHAPES = {"128x32x48x48": (128, 32, 48, 48), "128x64x24x24": (128, 64, 24, 24),
          "128x128x12x12": (128, 128, 12, 12), "128x256x6x6": (128, 256, 6, 6)}


def layer_case(shape, repeats: int) -> dict:
    seq = Sequential(nn.BatchNorm2d(shape[1]), nn.ReLU(inplace=True)).train()
    x = torch.randn(shape).to(torch.bfloat16).contiguous(memory_format=torch.channels_last).requires_grad_()
    g = torch.randn(shape).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)

    def fn():
        seq(x).backward(g)
        x.grad = None

    return alternate(fn, 10, repeats, VARIANTS)


def step_case(repeats: int) -> dict:
    model = create_model("fernet_s").to(memory_format=torch.channels_last).train()
    x = torch.randn(128, 1, 48, 48).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 7, (128,))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, fused=True)

    def fn():
        with torch.autocast("cpu", torch.bfloat16):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return alternate(fn, 5, repeats, VARIANTS)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=6)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="benchmarks/results/bn_relu2d.json")
    a = p.parse_args()
    if not bn_relu2d.available():
        raise SystemExit("the C++ extension could not be built (or FERLAB_BN_ACT=torch is set): nothing to compare")
    res = {**start("bn_relu2d.py", a), "issue": 12, "layer": {}}
    for key, shape in SHAPES.items():
        res["layer"][key] = r = layer_case(shape, a.repeats)
        print(f"layer {key}: ferlab {r['ms']['ferlab']['median']:.2f} ms, torch {r['ms']['torch']['median']:.2f} ms, "
              f"{r['speedup']:.2f}x", flush=True)
    res["step"] = r = step_case(a.repeats)
    print(f"step fernet_s b128: ferlab {r['ms']['ferlab']['median']:.1f} ms ({128e3 / r['ms']['ferlab']['median']:.0f} "
          f"img/s), torch {r['ms']['torch']['median']:.1f} ms ({128e3 / r['ms']['torch']['median']:.0f} img/s), "
          f"{r['speedup']:.2f}x", flush=True)
    finish(res, a.out)


if __name__ == "__main__":
    main()

"""The fused layers of `layers.Sequential` in training: BatchNorm1d + LeakyReLU + Dropout as one
compiled kernel pair (`ferlab/models/bn_act.py`) and MaxPool2d + ReLU as one pooling kernel
(`ferlab/models/maxpool.py`), against the same layers run one by one, in one process (issue 14).

    .venv/bin/python benchmarks/fused_step.py --out benchmarks/results/fused_step.json

`layer`: forward + backward of one BatchNorm1d -> LeakyReLU(0.01) -> Dropout(0.1) on the report
dense layers' (64, 512) and (64, 256) bfloat16 activations, and of one 2x2 MaxPool -> ReLU on the
report CNNs' channels_last bfloat16 activations. `step`: a whole training step of the report
networks that have such layers (bf16 autocast forward, loss, backward, fused Adam) on a random
batch of 64. "torch" runs every layer on its own (the pools still with ferlab's kernels, see
`maxpool_step.py`). Alternating blocks as in `maxpool_step.py`; medians in milliseconds, with the
load average.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch
from torch import nn

from maxpool_step import alternate, finish, start, time_steps
from ferlab.models import bn_act, layers, maxpool
from ferlab.models.layers import Dropout, MaxPool2d, Sequential


def _fusions(on: bool):
    def switch():
        kernels, match = list(bn_act._kernels), layers._pool_relu
        if not on:
            bn_act._kernels[:] = [None]  # unavailable: the layers run as torch's modules
            layers._pool_relu = lambda *a: 0
        return lambda: (bn_act._kernels.__setitem__(slice(None), kernels), setattr(layers, "_pool_relu", match))
    return switch


VARIANTS = {"ferlab": _fusions(True), "torch": _fusions(False)}
LAYERS = {"bn_act 64x512": (64, 512), "bn_act 64x256": (64, 256),
          "pool_relu 64x32x47x47": (64, 32, 47, 47), "pool_relu 64x32x22x22": (64, 32, 22, 22)}
STEP_NETS = ("seed_dense_bn", "seed_cnn_bn", "seed_cnn_a", "seed_cnn_b_pool")


def layer_case(shape, repeats: int) -> dict:
    if len(shape) == 2:
        seq = Sequential(nn.BatchNorm1d(shape[1]), nn.LeakyReLU(0.01, inplace=True), Dropout(0.1))
        fmt, out_shape = torch.contiguous_format, shape
    else:
        seq = Sequential(MaxPool2d(2), nn.ReLU(inplace=True))
        fmt, out_shape = torch.channels_last, (*shape[:2], shape[2] // 2, shape[3] // 2)
    x = torch.randn(shape).to(torch.bfloat16).contiguous(memory_format=fmt).requires_grad_()
    g = torch.randn(out_shape).to(torch.bfloat16).contiguous(memory_format=fmt)

    def fn():
        seq(x).backward(g)
        x.grad = None

    return alternate(fn, 200 if len(shape) == 2 else 20, repeats, VARIANTS)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="benchmarks/results/fused_step.json")
    a = p.parse_args()
    if not (bn_act.available() and maxpool.available()):
        raise SystemExit("numba is not installed (or FERLAB_BN_ACT/FERLAB_MAXPOOL=torch is set): nothing to compare")
    res = {**start("fused_step.py", a), "layer": {}, "step": {}}
    for key, shape in LAYERS.items():
        res["layer"][key] = layer_case(shape, a.repeats)
        ms = res["layer"][key]["ms"]
        print(f"layer {key}: ferlab {ms['ferlab']['median']:.3f} ms, torch {ms['torch']['median']:.3f} ms, "
              f"{res['layer'][key]['speedup']:.2f}x", flush=True)
    res["step"] = time_steps(STEP_NETS, a.repeats, VARIANTS)
    finish(res, a.out)


if __name__ == "__main__":
    main()

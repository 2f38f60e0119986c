"""Training-time BatchNorm1d + LeakyReLU + Dropout: ferlab's fused kernels (`ferlab/models/bn_act.py`)
against torch's three modules, alone and inside whole training steps, in one process (issue 14).

    .venv/bin/python benchmarks/bn_act_step.py --out benchmarks/results/bn_act_step.json

`layer`: forward + backward of one BatchNorm1d -> LeakyReLU(0.01) -> Dropout(0.1) on the report
dense layers' (64, 512) and (64, 256) bfloat16 activations. `step`: a whole training step of the
two report networks with such layers (bf16 autocast forward, loss, backward, fused Adam) on a
random batch of 64. Alternating blocks as in `maxpool_step.py`; medians in milliseconds, with the
load average.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch
from torch import nn

from maxpool_step import alternate, train_step
from ferlab.devices import keep_freed_memory
from ferlab.fileio import write_json
from ferlab.models import bn_act
from ferlab.models.layers import Dropout, Sequential


def _kernels(on: bool):
    def switch():
        real = list(bn_act._kernels)
        if not on:
            bn_act._kernels[:] = [None]  # unavailable: the layers run as torch's modules
        return lambda: bn_act._kernels.__setitem__(slice(None), real)
    return switch


VARIANTS = {"ferlab": _kernels(True), "torch": _kernels(False)}


def layer_case(width: int, repeats: int) -> dict:
    seq = Sequential(nn.BatchNorm1d(width), nn.LeakyReLU(0.01, inplace=True), Dropout(0.1))
    x = torch.randn(64, width).to(torch.bfloat16).requires_grad_()
    g = torch.randn(64, width).to(torch.bfloat16)

    def fn():
        seq(x).backward(g)
        x.grad = None

    return alternate(fn, 200, repeats, VARIANTS)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="benchmarks/results/bn_act_step.json")
    a = p.parse_args()
    if not bn_act.available():
        raise SystemExit("numba is not installed (or FERLAB_BN_ACT=torch is set): nothing to compare")
    keep_freed_memory()  # as train does
    torch.set_num_threads(a.threads)
    res = {"issue": 14, "command": ["benchmarks/bn_act_step.py", *sys.argv[1:]], "threads": a.threads,
           "repeats": a.repeats, "torch": torch.__version__, "loadavg_before": os.getloadavg(),
           "written": time.strftime("%Y-%m-%d %H:%M:%S"), "layer": {}, "step": {}}
    for width in (512, 256):
        key = f"64x{width}"
        res["layer"][key] = layer_case(width, a.repeats)
        ms = res["layer"][key]["ms"]
        print(f"layer {key}: ferlab {ms['ferlab']['median'] * 1e3:.0f} us, torch {ms['torch']['median'] * 1e3:.0f} us, "
              f"{res['layer'][key]['speedup']:.2f}x", flush=True)
    for arch in ("seed_dense_bn", "seed_cnn_bn"):
        fn, n = train_step(arch)
        res["step"][arch] = alternate(fn, n, a.repeats, VARIANTS)
        ms = res["step"][arch]["ms"]
        print(f"step {arch}: ferlab {ms['ferlab']['median']:.2f} ms, torch {ms['torch']['median']:.2f} ms, "
              f"{res['step'][arch]['speedup']:.2f}x", flush=True)
    res["loadavg_after"] = os.getloadavg()
    write_json(a.out, res)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()

"""Optimizer step and zero_grad time: ferlab's `FusedAdam` against `torch.optim.Adam(fused=True)`,
on a report network's own parameters and gradients, in one process (issue 14).

    .venv/bin/python benchmarks/optim_step.py seed_dnn seed_dense_bn --out benchmarks/results/optim_step.json

Both optimizers get the report recipe's two parameter groups (weights, biases). Each repetition
runs a block of steps with one and then a block with the other (the order alternating), so the
VM's drifting speed hits both alike; a step is a forward and backward of a random batch of 64
under bf16 autocast (untimed), then `zero_grad` and `step` (timed). Medians per block in
microseconds, with the load average.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F

from ferlab.devices import keep_freed_memory
from ferlab.fileio import write_json
from ferlab.models import create_model
from ferlab.train import build
from ferlab.train.finetune import param_groups
from ferlab.train.optim import FusedAdam


def block(model, opt, x, y, steps: int) -> tuple[float, float]:
    """Median microseconds of `opt.step()` and of `opt.zero_grad()` over `steps` training steps."""
    step_t, zero_t = [], []
    for _ in range(steps):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        zero_t.append(time.perf_counter() - t)
        with torch.autocast("cpu", torch.bfloat16):
            loss = F.cross_entropy(model(x).float(), y)
        loss.backward()
        t = time.perf_counter()
        opt.step()
        step_t.append(time.perf_counter() - t)
    return statistics.median(step_t) * 1e6, statistics.median(zero_t) * 1e6


def compare(arch: str, repeats: int, steps: int) -> dict:
    cfg = build("report", arch=arch, data="unused")
    model = create_model(arch).to(memory_format=torch.channels_last)
    s = model.input_size
    x = torch.randn(64, model.in_chans, s, s).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, model.num_classes, (64,))
    opts = {"ferlab FusedAdam": FusedAdam(param_groups(model, cfg), lr=cfg.lr, fused=True),
            "torch Adam(fused=True)": torch.optim.Adam(param_groups(model, cfg), lr=cfg.lr, fused=True)}
    runs = {k: {"step_us": [], "zero_grad_us": []} for k in opts}
    for name, opt in opts.items():
        block(model, opt, x, y, 20)  # warm-up; also creates each optimizer's state
    for r in range(repeats):
        for name in (list(opts) if r % 2 == 0 else list(opts)[::-1]):
            st, zt = block(model, opts[name], x, y, steps)
            runs[name]["step_us"].append(st)
            runs[name]["zero_grad_us"].append(zt)
    out = {"params": sum(p.numel() for p in model.parameters()), "tensors": len(list(model.parameters())),
           "groups": len(opts["ferlab FusedAdam"].param_groups), "runs": runs}
    for name, r in runs.items():
        out[name] = {k: statistics.median(v) for k, v in r.items()}
        print(f"{arch:14s} {name:24s} step {out[name]['step_us']:7.1f} us  zero_grad {out[name]['zero_grad_us']:6.1f} us")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("arch", nargs="+")
    p.add_argument("--repeats", type=int, default=6)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="benchmarks/results/optim_step.json")
    a = p.parse_args()
    keep_freed_memory()  # as the training loop does
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    result = {"command": ["benchmarks/optim_step.py", *a.arch, "--repeats", str(a.repeats), "--steps", str(a.steps)],
              "threads": a.threads, "batch_size": 64, "torch": torch.__version__,
              "date": time.strftime("%Y-%m-%d %H:%M"), "loadavg_before": list(os.getloadavg())}
    result["networks"] = {arch: compare(arch, a.repeats, a.steps) for arch in a.arch}
    result["loadavg_after"] = list(os.getloadavg())
    write_json(a.out, result)
    print("written:", a.out)


if __name__ == "__main__":
    main()

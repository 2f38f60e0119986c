"""Training-step throughput of registered models: fp32 vs bf16 autocast, channels_last vs not.

    .venv/bin/python benchmarks/train_step.py fernet_s fernet_tiny --out benchmarks/results/train_step.json
    .venv/bin/python benchmarks/train_step.py fernet_s --compile --out benchmarks/results/train_step_compile.json

`--compile` times bf16 channels_last eager against the same under `torch.compile` (inductor's CPU
backend; the warm-up steps include the compiling).

Random data, batch 128, SGD; measures images/s of forward+backward+step after a warm-up, so the
effect of the memory format and precision switches is isolated from data and augmentation.
"""
from __future__ import annotations

import argparse
import os
import time

import torch

from ferlab.fileio import write_json
from ferlab.models import create_model, get_spec


def images_per_s(model, opt, x, y, bf16: bool, steps: int, warmup: int = 3) -> float:
    """Images/s of forward + backward + optimizer step on the batch (x, y), after `warmup` steps."""
    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * len(x) / (time.perf_counter() - t)


def step_rate(name: str, bf16: bool, channels_last: bool, batch: int = 128, steps: int = 8,
              compiled: bool = False) -> float:
    spec = get_spec(name)
    m = create_model(name)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    m = m.to(memory_format=fmt)
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, spec.in_chans, spec.input_size, spec.input_size).contiguous(memory_format=fmt)
    y = torch.randint(0, spec.num_classes, (batch,))
    return images_per_s(torch.compile(m) if compiled else m, opt, x, y, bf16, steps)  # opt holds m's parameters


def compiled_rate(name: str, repeats: int = 3) -> dict:
    """bf16 channels_last, eager then compiled, alternated `repeats` times (so that a busy moment of
    the machine does not land on one side only); medians and every run."""
    rates = {"eager": [], "compiled": []}
    t = time.perf_counter()
    for _ in range(repeats):
        rates["eager"].append(step_rate(name, True, True, steps=16))
        rates["compiled"].append(step_rate(name, True, True, steps=16, compiled=True))
    return {**{f"bf16_channels_last_{k}": sorted(v)[len(v) // 2] for k, v in rates.items()},
            "runs": rates, "wall_s": time.perf_counter() - t}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compile", action="store_true", help="time eager against torch.compile (bf16 channels_last)")
    ap.add_argument("--out", default="benchmarks/results/train_step.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    res = {"threads": args.threads, "loadavg_before": os.getloadavg(), "torch": str(torch.__version__), "models": {}}
    for name in args.models:
        if args.compile:
            res["models"][name] = compiled_rate(name)
            print(name, {k: round(v) for k, v in res["models"][name].items() if k.startswith("bf16")}, flush=True)
            continue
        res["models"][name] = {f"{'bf16' if b else 'fp32'}_{'channels_last' if c else 'nchw'}": step_rate(name, b, c)
                               for b in (False, True) for c in (False, True)}
        print(name, {k: round(v) for k, v in res["models"][name].items()}, flush=True)
    res["loadavg_after"] = os.getloadavg()
    write_json(args.out, res)


if __name__ == "__main__":
    main()

"""Training-time 2x2 max-pooling: ferlab's compiled kernels (`ferlab/models/maxpool.py`) against
torch's `max_pool2d` kernel, alone and inside whole training steps, in one process (issue 14).

    .venv/bin/python benchmarks/maxpool_step.py --out benchmarks/results/maxpool_step.json

`pool`: forward + backward of one pool (then a ReLU, as in the report CNNs) on the report
networks' activation shapes, channels_last bfloat16 (what the `report` recipe trains in), batch 64.
`step`: a whole training step of each network (bf16 autocast forward, loss, backward, fused Adam)
on a random batch of 64. Each repetition times a block with one kernel and then a block with the
other, the order alternating, so the VM's drifting speed hits both alike; medians in
milliseconds, with the load average.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from ferlab.devices import keep_freed_memory
from ferlab.fileio import write_json
from ferlab.models import create_model, maxpool
from ferlab.train.optim import FusedAdam

#: (network, activation before its first pools) as the report networks see them at batch 64
POOLS = {"seed_cnn_a": [(64, 32, 47, 47), (64, 32, 22, 22), (64, 32, 10, 10)],
         "seed_cnn_b_pool": [(64, 32, 98, 98), (64, 64, 47, 47)],
         "seed_cnn_bn": [(64, 32, 48, 48), (64, 64, 24, 24)]}
STEP_NETS = ("seed_cnn_a", "seed_cnn_b_pool", "seed_cnn_bn", "fernet_tiny")


def timed_block(fn, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1e3


def alternate(fn, n: int, repeats: int, variants: dict) -> dict:
    """Milliseconds of fn() under each variant (name -> a function that switches to it and returns
    the switch back): alternating blocks of n calls after a warm-up; speedup = torch / ferlab."""
    runs = {k: [] for k in variants}
    for r in range(repeats):
        for name in (list(variants) if r % 2 == 0 else list(variants)[::-1]):
            restore = variants[name]()
            try:
                for _ in range(3):
                    fn()
                runs[name].append(timed_block(fn, n))
            finally:
                restore()
    med = {k: statistics.median(v) for k, v in runs.items()}
    return {"ms": {k: {"median": med[k], "runs": v} for k, v in runs.items()},
            "speedup": med["torch"] / med["ferlab"]}


def _pool_kernel(supported):
    def switch():
        real = maxpool.supported
        maxpool.supported = supported
        return lambda: setattr(maxpool, "supported", real)
    return switch


def ab(fn, n: int, repeats: int) -> dict:
    """fn() with ferlab's pooling kernels against torch's."""
    return alternate(fn, n, repeats, _pool_variants())


def _pool_variants() -> dict:
    return {"ferlab": _pool_kernel(maxpool.supported), "torch": _pool_kernel(lambda x: False)}


def pool_case(shape, repeats: int) -> dict:
    from ferlab.models.layers import MaxPool2d

    pool = MaxPool2d(2)
    x = torch.randn(shape).to(torch.bfloat16).contiguous(memory_format=torch.channels_last).requires_grad_()
    g = torch.randn(shape[0], shape[1], shape[2] // 2, shape[3] // 2).to(torch.bfloat16)
    g = g.contiguous(memory_format=torch.channels_last)

    def fn():
        F.relu(pool(x)).backward(g)
        x.grad = None

    return ab(fn, 40 if shape[-1] < 64 else 8, repeats)


def train_step(arch: str):
    """A training step of `arch` on a random batch of 64, and the number of steps a block times."""
    model = create_model(arch).to(memory_format=torch.channels_last)
    s = model.input_size
    x = torch.randn(64, model.in_chans, s, s).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, model.num_classes, (64,))
    opt = FusedAdam(model.parameters(), lr=1e-3, fused=True)

    def fn():
        with torch.autocast("cpu", torch.bfloat16):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return fn, 20 if s < 64 else 4


def time_steps(nets, repeats: int, variants: dict) -> dict:
    """Whole training steps of each network under each variant, printed as they finish."""
    out = {}
    for arch in nets:
        fn, n = train_step(arch)
        out[arch] = r = alternate(fn, n, repeats, variants)
        print(f"step {arch}: ferlab {r['ms']['ferlab']['median']:.2f} ms, torch {r['ms']['torch']['median']:.2f} ms, "
              f"{r['speedup']:.2f}x", flush=True)
    return out


def start(script: str, a) -> dict:
    """The machine set up as train sets it up, and the result's header (before the cases run)."""
    keep_freed_memory()  # as train does: no page faults from freshly mapped activations
    torch.set_num_threads(a.threads)
    return {"issue": 14, "command": [f"benchmarks/{script}", *sys.argv[1:]], "threads": a.threads,
            "repeats": a.repeats, "torch": torch.__version__, "loadavg_before": os.getloadavg(),
            "written": time.strftime("%Y-%m-%d %H:%M:%S")}


def finish(res: dict, out: str) -> None:
    res["loadavg_after"] = os.getloadavg()
    write_json(out, res)
    print(f"wrote {out}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=6)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="benchmarks/results/maxpool_step.json")
    a = p.parse_args()
    if not maxpool.available():
        raise SystemExit("numba is not installed (or FERLAB_MAXPOOL=torch is set): nothing to compare")
    res = {**start("maxpool_step.py", a), "pool": {}, "step": {}}
    for arch, shapes in POOLS.items():
        for shape in shapes:
            key = f"{arch} {'x'.join(map(str, shape))}"
            res["pool"][key] = pool_case(shape, a.repeats)
            print(f"pool {key}: {res['pool'][key]['speedup']:.2f}x", flush=True)
    res["step"] = time_steps(STEP_NETS, a.repeats, _pool_variants())
    finish(res, a.out)


if __name__ == "__main__":
    main()

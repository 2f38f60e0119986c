"""Where a FerNet training step's convolution time goes: forward, input gradient and weight
gradient of each 3x3 convolution shape, timed apart (bf16, channels_last, batch 128, oneDNN).

    .venv/bin/python benchmarks/conv_backward.py --out benchmarks/results/conv_backward.json

The profiler puts `aten::convolution_backward` at about half of a FerNet-S step, 4x the forward
convolutions although a backward is 2x a forward's FLOPs. This separates the two halves of that
backward, so the JSON says which one is slow and at which shapes (GFLOP/s and % of the bf16
matmul peak timed in the same process). It also times one way around oneDNN's weight gradient:
nine matrix products, one per tap of the 3x3 kernel (`shifted_weight_grad`), checked against
oneDNN's result.
"""
from __future__ import annotations

import argparse
import os
import time

import torch

from ferlab.bench.kit import machine
from ferlab.bench.train import matmul_peak
from ferlab.fileio import write_json

SHAPES = [(32, 64, 24), (64, 64, 24), (64, 128, 12), (128, 128, 12), (128, 256, 6), (256, 256, 6)]


def ms(f, n: int) -> float:
    for _ in range(3):
        f()
    t = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - t) / n * 1e3


def padded_rows(t: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(N, C, H, W) -> (rows, C): each image row behind one zero column, images apart by a zero row,
    two zero rows before and after. In this layout the input pixel under tap (dy, dx) of every
    output pixel sits at one fixed offset, so each tap's operand is a contiguous slice."""
    n, c, h, w = t.shape
    width = w + 1
    rows = t.new_zeros(4 + n * (h + 1), width, c)
    rows[2:2 + n * (h + 1)].view(n, h + 1, width, c)[:, :h, 1:] = t.permute(0, 2, 3, 1)
    return rows.view(-1, c), width


def shifted_weight_grad(g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The weight gradient of a 3x3, stride-1, padding-1 convolution as nine (out x P) @ (P x in) products."""
    xs, width = padded_rows(x)
    gs, _ = padded_rows(g)
    start, count = 2 * width, x.shape[0] * (x.shape[2] + 1) * width
    gt = gs[start:start + count].t().contiguous()  # zero wherever there is no output pixel
    out = g.new_empty(g.shape[1], 3, 3, x.shape[1])
    for dy in range(3):
        for dx in range(3):
            at = start + (dy - 1) * width + (dx - 1)
            torch.mm(gt, xs[at:at + count], out=out[:, dy, dx])
    return out.permute(0, 3, 1, 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/conv_backward.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    res = {"machine": machine(), "threads": args.threads, "batch": args.batch, "loadavg_before": os.getloadavg(),
           "torch": str(torch.__version__), "bf16_matmul_peak_gflops": matmul_peak(torch.bfloat16), "shapes": []}
    cl = torch.channels_last
    for cin, cout, size in SHAPES:
        x = torch.randn(args.batch, cin, size, size).bfloat16().contiguous(memory_format=cl)
        w = torch.randn(cout, cin, 3, 3).bfloat16().contiguous(memory_format=cl)
        g = torch.randn(args.batch, cout, size, size).bfloat16().contiguous(memory_format=cl)

        def backward(mask):
            return lambda: torch.ops.aten.convolution_backward(g, x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0],
                                                               1, mask)
        gflop = 2 * args.batch * size * size * cin * cout * 9 / 1e9  # each of the three has these FLOPs
        row = {"in": cin, "out": cout, "size": size, "gflop": gflop,
               "forward_ms": ms(lambda: torch.nn.functional.conv2d(x, w, padding=1), args.repeats),
               "input_grad_ms": ms(backward((True, False, False)), args.repeats),
               "weight_grad_ms": ms(backward((False, True, False)), args.repeats),
               "both_grads_ms": ms(backward((True, True, False)), args.repeats),
               "shifted_weight_grad_ms": ms(lambda: shifted_weight_grad(g, x), args.repeats)}
        want = backward((False, True, False))()[1].float()
        row["shifted_weight_grad_max_rel_error"] = ((shifted_weight_grad(g, x).float() - want).abs().max()
                                                    / want.abs().max()).item()  # bf16 rounding: ~1e-3
        for k in ("forward", "input_grad", "weight_grad"):
            row[f"{k}_gflops"] = gflop / row[f"{k}_ms"] * 1e3
            row[f"{k}_pct_of_peak"] = 100 * row[f"{k}_gflops"] / res["bf16_matmul_peak_gflops"]
        res["shapes"].append(row)
        print(f"{cin:>3}->{cout:<3} @{size:<2}  "
              f"forward {row['forward_ms']:5.2f} ms ({row['forward_pct_of_peak']:3.0f} %)  "
              f"input grad {row['input_grad_ms']:5.2f} ({row['input_grad_pct_of_peak']:3.0f} %)  "
              f"weight grad {row['weight_grad_ms']:5.2f} ({row['weight_grad_pct_of_peak']:3.0f} %)  "
              f"both {row['both_grads_ms']:5.2f}  shifted weight grad {row['shifted_weight_grad_ms']:5.2f}", flush=True)
    res["loadavg_after"] = os.getloadavg()
    write_json(args.out, res)


if __name__ == "__main__":
    main()

"""BatchNorm2d + ReLU of a training step on channels_last bfloat16 maps, fused (numba, all threads).

In FerNet-S's bf16 training step, torch's BatchNorm forward and backward, the ReLU and its
gradient took about 35 % of the time (torch.profiler, 2026-12-07), for almost no arithmetic: each
is a pass over a map of up to 9.4M elements, memory-bound on two cores. Fused, the forward reads
the input twice (statistics, then normalise + ReLU) and writes once; the backward recomputes the
normalised input and the ReLU's mask from the saved input instead of storing either, and reads
input and gradient twice and writes once; bfloat16 is rounded once instead of after each op.

What it computes is `relu(batch_norm(x))` in training mode (biased variance to normalise, unbiased
for the running variance, `momentum` or the cumulative average when it is None), in float32
arithmetic with float64 sums; results differ from torch's by bfloat16 rounding.

Used by `layers.Sequential` in training, for a BatchNorm2d followed by a ReLU, on CPU bfloat16
channels_last inputs (what `--amp` training on a CPU with bf16 gives) when numba is installed;
`FERLAB_BN_ACT=torch` or anything else runs torch's modules, as before.
"""
from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import nn

_kernels: list = []  # [] not built yet; [None] unavailable; [the kernels module]
_pool: list = []  # the helper threads' executor of this process (none after a fork: made anew)


def _build():
    if os.environ.get("FERLAB_BN_ACT") == "torch":
        return None
    try:
        from . import _bn_relu2d_kernels as k
    except ImportError:  # no numba
        return None
    try:  # compile (or load from numba's cache) now, on the types every call uses
        b, f, d = np.ones((4, 2), np.uint16), np.ones(2, np.float32), np.zeros(2, np.float64)
        k.sums(b, 0, 4, d, d.copy())
        k.apply_relu(b, f, f, np.empty_like(b), 0, 4)
        k.grad_sums(b, b, f, f, f, f, 0, 4, d, d.copy())
        k.grad_input(b, b, f, f, f, f, f, f, f, np.empty_like(b), 0, 4)
    except Exception as e:  # noqa: BLE001 (numba raises many kinds; any of them means: not usable)
        warnings.warn(f"numba could not compile ferlab's BatchNorm2d+ReLU kernels ({type(e).__name__}: {e}); "
                      "training runs torch's BatchNorm and ReLU (the same function, slower)", RuntimeWarning,
                      stacklevel=3)
        return None
    return k


def available() -> bool:
    if not _kernels:
        _kernels.append(_build())
    return _kernels[0] is not None


os.register_at_fork(after_in_child=_pool.clear)  # the parent's threads do not exist in a child


def matches(bn: nn.Module, act: nn.Module, x: torch.Tensor) -> bool:
    """Whether `act(bn(x))` can run here: a training BatchNorm2d with affine weights and running
    statistics, then a ReLU, on a CPU bfloat16 channels_last (N, C, H, W) map of more than one value
    per channel."""
    return (type(bn) is nn.BatchNorm2d and type(act) is nn.ReLU and bn.training and bn.affine
            and bn.track_running_stats and x.dim() == 4 and x.device.type == "cpu" and x.dtype == torch.bfloat16
            and x.shape[1] == bn.num_features and x.shape[0] * x.shape[2] * x.shape[3] > 1
            and x.is_contiguous(memory_format=torch.channels_last) and bn.weight.dtype == torch.float32
            and available())


def _rows(t: torch.Tensor) -> np.ndarray:
    """A channels_last (N, C, H, W) bfloat16 tensor's memory as (N*H*W, C) uint16 bits (a view)."""
    return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1]).view(torch.int16).numpy().view(np.uint16)


def _blocks(kernel, rows: int, *args, sums: int = 0) -> np.ndarray | None:
    """kernel(*args, lo, hi[, the block's float64 sums]) over one block of rows per torch thread,
    the blocks on helper threads (the kernels release the GIL) and the first on this one; with
    `sums` > 0, the blocks' (sums, C) float64 partial sums, added up."""
    parts = max(1, min(torch.get_num_threads(), rows // 1024))  # small maps: a thread's wake-up costs more
    bounds = [rows * p // parts for p in range(parts + 1)]
    acc = np.zeros((parts, sums, args[0].shape[1]), np.float64) if sums else None
    call = lambda p: kernel(*args, bounds[p], bounds[p + 1], *(acc[p] if sums else ()))
    if parts > 1:
        if not _pool or _pool[0]._max_workers < parts - 1:
            _pool[:] = [ThreadPoolExecutor(parts - 1, thread_name_prefix="ferlab-bn")]
        futures = [_pool[0].submit(call, p) for p in range(1, parts)]
        call(0)
        for f in futures:
            f.result()
    else:
        call(0)
    return acc.sum(0) if sums else None


def run(x: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    """`relu(bn(x))` for inputs `matches` accepted, updating bn's running statistics."""
    return _BNReLU.apply(x, bn.weight, bn.bias, bn)


class _BNReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, bn):
        k = _kernels[0]
        x = x.detach()
        rows = x.shape[0] * x.shape[2] * x.shape[3]
        xs = _rows(x)
        sums = torch.from_numpy(_blocks(k.sums, rows, xs, sums=2))  # (2, C) float64: sum, sum of squares
        mean = sums[0] / rows
        var = (sums[1] / rows - mean * mean).clamp_(min=0)
        rstd = (var + bn.eps).rsqrt()
        w, b = weight.detach().double(), bias.detach().double()
        scale, shift = (w * rstd).float(), (b - mean * w * rstd).float()
        out = torch.empty_like(x, memory_format=torch.channels_last)
        _blocks(k.apply_relu, rows, xs, scale.numpy(), shift.numpy(), _rows(out))
        with torch.no_grad():
            bn.num_batches_tracked.add_(1)
            factor = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
            bn.running_mean.lerp_(mean.float(), factor)
            bn.running_var.lerp_((var * rows / (rows - 1)).float(), factor)  # unbiased, as torch's
        ctx.save_for_backward(x, weight, scale, shift, mean.float(), rstd.float())
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        k = _kernels[0]
        x, weight, scale, shift, mean, rstd = ctx.saved_tensors
        g = grad.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
        rows = x.shape[0] * x.shape[2] * x.shape[3]
        args = (_rows(g), _rows(x), scale.numpy(), shift.numpy(), mean.numpy(), rstd.numpy())
        sums = torch.from_numpy(_blocks(k.grad_sums, rows, *args, sums=2))  # sum(gy), sum(gy * xhat)
        k_gy = weight.detach().double() * rstd.double()
        gx = torch.empty_like(x, memory_format=torch.channels_last)
        _blocks(k.grad_input, rows, *args, k_gy.float().numpy(), (k_gy * sums[1] / rows).float().numpy(),
                (k_gy * sums[0] / rows).float().numpy(), _rows(gx))
        return gx, sums[1].float(), sums[0].float(), None

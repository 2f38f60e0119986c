"""BatchNorm1d + LeakyReLU (or ReLU) [+ Dropout] of a training step as two compiled CPU kernels (numba).

A dense layer's BatchNorm, activation and dropout on a (64, 512) batch are each a few microseconds
of arithmetic and tens of microseconds of dispatch, autograd bookkeeping and mask drawing: in the
report's dense-only network (six such triples) they took about a third of a 5 ms training step.
Here the forward is one pass that normalises with the batch's statistics, applies the affine map,
the activation and the dropout mask, and updates the running statistics; the backward is two
passes that recompute what they need from the saved input. A (64, 512) bfloat16 triple forward +
backward: 0.114 ms against 0.154 as three torch modules, and the dense-only net's whole training
step 1.10-1.17x faster (`benchmarks/fused_step.py`, results/fused_step.json).

What it computes is what `BatchNorm1d` (training mode, biased variance to normalise, unbiased for
the running variance, `momentum` or the cumulative average when it is None), `LeakyReLU` and
`Dropout` compute, in float32 arithmetic with one rounding to the input's dtype at the end (torch
rounds bfloat16 after each of the three; the results differ by bfloat16 rounding only). The
dropout mask is drawn differently: each element's keep bit comes from a counter-based hash of its
index and a 64-bit seed taken from torch's default generator on each call, so `torch.manual_seed`
and a resumed run's restored RNG state govern it, and the backward regenerates the mask instead of
storing it. Elements are kept with probability 1 - p (to 2^-32) and scaled by 1 / (1 - p).

Used by `layers.Sequential` in training on CPU float32/bfloat16 2-D inputs when numba is
installed; anything else (hooks on the layers, which `Sequential` checks; other modules or shapes;
a dropout of p = 1; `FERLAB_BN_ACT=torch` in the environment; a numba that cannot compile, which
warns) runs the modules one by one, as before.
The kernels run on one thread (a call is 10-30 us: a thread pool's wake-up would cost as much), so
they are safe in forked and threaded callers.
"""
from __future__ import annotations

import os
import warnings

import numpy as np
import torch
from torch import nn

_kernels: list = []  # [] not built yet; [None] unavailable; [the kernels module]


def _build():
    if os.environ.get("FERLAB_BN_ACT") == "torch":  # to compare, or to rule these kernels out
        return None
    try:
        from . import _bn_act_kernels as k
    except ImportError:  # no numba
        return None
    try:  # compile (or load from numba's cache) now, on the types every call uses
        f32 = np.float32
        x, v = np.ones((2, 1), f32), np.ones(1, f32)
        params, keys, stats = np.array([1e-5, 0.01, 1, 0.1], f32), np.zeros(3, np.uint64), np.zeros((2, 1), f32)
        k.forward_f32(x, v, v, v.copy(), v.copy(), params, keys, np.empty_like(x), stats)
        k.backward_f32(x, x, v, v, stats, params, keys, np.empty_like(x), np.empty_like(v), np.empty_like(v))
        b = np.ones((2, 1), np.uint16)
        k.forward_bf16(b, v, v, v.copy(), v.copy(), params, keys, np.empty_like(b), stats)
        k.backward_bf16(b, b, v, v, stats, params, keys, np.empty_like(b), np.empty_like(v), np.empty_like(v))
    except Exception as e:  # noqa: BLE001 (numba raises many kinds; any of them means: not usable)
        warnings.warn(f"numba could not compile ferlab's BatchNorm kernels ({type(e).__name__}: {e}); training "
                      "runs torch's BatchNorm, activation and dropout (the same function, slower)",
                      RuntimeWarning, stacklevel=3)
        return None
    return k


def available() -> bool:
    if not _kernels:
        _kernels.append(_build())
    return _kernels[0] is not None


def match(mods: list[nn.Module], i: int, x: torch.Tensor) -> int:
    """How many modules from `mods[i]` on the kernels can run on `x`: 2 (BatchNorm1d, activation),
    3 (with the Dropout after them), or 0."""
    bn = mods[i]
    if not (type(bn) is nn.BatchNorm1d and bn.training and bn.affine and bn.track_running_stats
            and i + 1 < len(mods) and type(mods[i + 1]) in (nn.LeakyReLU, nn.ReLU)):
        return 0
    if not (x.dim() == 2 and x.shape[0] > 1 and x.shape[1] == bn.num_features and x.device.type == "cpu"
            and x.dtype in (torch.float32, torch.bfloat16) and bn.weight.dtype == torch.float32):
        return 0
    drop = mods[i + 2] if i + 2 < len(mods) else None
    n = 3 if isinstance(drop, nn.Dropout) and not drop.inplace and drop.p < 1 else 2  # p = 1: all zeros, its own
    return n if available() else 0


def run(x: torch.Tensor, bn: nn.BatchNorm1d, act: nn.Module, drop: nn.Dropout | None = None) -> torch.Tensor:
    """`drop(act(bn(x)))` for modules `match` accepted, updating bn's running statistics."""
    slope = act.negative_slope if isinstance(act, nn.LeakyReLU) else 0.0
    p = drop.p if drop is not None and drop.training else 0.0
    bn.num_batches_tracked.add_(1)
    factor = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
    seed = torch.empty((), dtype=torch.int64).random_().item()  # torch's generator governs the mask
    keys = np.array([min(round(p * 2 ** 32), 2 ** 32 - 1), seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF], np.uint64)
    params = np.array([bn.eps, slope, 1.0 / (1.0 - p), factor], np.float32)
    return _BNAct.apply(x, bn.weight, bn.bias, bn.running_mean, bn.running_var, params, keys)


def _bits(t: torch.Tensor) -> np.ndarray:
    """A float32 tensor's array, or a bfloat16 tensor's uint16 bits."""
    return t.numpy() if t.dtype == torch.float32 else t.view(torch.int16).numpy().view(np.uint16)


class _BNAct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, params, keys):
        k = _kernels[0]
        x = x.detach().contiguous()
        out = torch.empty_like(x)
        stats = torch.empty(2, x.shape[1])
        forward = k.forward_f32 if x.dtype == torch.float32 else k.forward_bf16
        forward(_bits(x), weight.detach().numpy(), bias.detach().numpy(), running_mean.numpy(), running_var.numpy(),
                params, keys, _bits(out), stats.numpy())
        ctx.save_for_backward(x, weight, bias, stats)
        ctx.constants = params, keys
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        k = _kernels[0]
        x, weight, bias, stats = ctx.saved_tensors
        params, keys = ctx.constants
        g = grad.to(x.dtype).contiguous()
        gx, gw, gb = torch.empty_like(x), torch.empty_like(weight), torch.empty_like(bias)
        backward = k.backward_f32 if x.dtype == torch.float32 else k.backward_bf16
        backward(_bits(g), _bits(x), weight.detach().numpy(), bias.detach().numpy(), stats.numpy(), params, keys,
                 _bits(gx), gw.numpy(), gb.numpy())
        return gx, gw, gb, None, None, None, None

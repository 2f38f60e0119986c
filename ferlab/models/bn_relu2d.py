"""BatchNorm2d + ReLU of a training step on channels_last bfloat16 maps, fused (a C++ extension).

In FerNet-S's bf16 training step, torch's BatchNorm forward and backward, the ReLU and its
gradient took about 35 % of the time (torch.profiler on real data, 2026-12-07), for almost no
arithmetic: each is a pass over a map of up to 9.4M elements. Fused, the forward reads the input
twice (statistics, then normalise + ReLU) and writes once; the backward recomputes the normalised
input and the ReLU's mask from the saved input instead of storing either, reads input and gradient
twice and writes once; bfloat16 is rounded once instead of after each op. The passes run on
torch's own thread pool (`at::parallel_for`): numba kernels on a second pool of threads were
faster alone but slowed the whole step, torch's OpenMP threads spinning against them (README).

What it computes is `relu(batch_norm(x))` in training mode (biased variance to normalise, unbiased
for the running variance, `momentum` or the cumulative average when it is None), in float32
arithmetic with float64 sums; results differ from torch's by bfloat16 rounding.

Used by `layers.Sequential` in training, for a BatchNorm2d followed by a ReLU, on CPU bfloat16
channels_last inputs (what `--amp` training gives on a CPU with bf16). The extension is compiled
on first use (`csrc/bn_relu.cpp`, with the machine's C++ compiler and ninja; about a minute, then
cached by torch under ~/.cache/torch_extensions); without a compiler, or with `FERLAB_BN_ACT=torch`
in the environment, the layers run as torch's modules, as before.
"""
from __future__ import annotations

import hashlib
import logging
import os
import platform
import warnings
from pathlib import Path

import torch
from torch import nn

_ext: list = []  # [] not built yet; [None] unavailable; [the extension module]
_SOURCE = Path(__file__).with_name("csrc") / "bn_relu.cpp"


def _build():
    if os.environ.get("FERLAB_BN_ACT") == "torch":  # to compare, or to rule the extension out
        return None
    # importing cpp_extension under a CUDA build of torch logs a warning about CUDA_HOME: irrelevant here
    log = logging.getLogger("torch.utils.cpp_extension")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        from torch.utils import cpp_extension

        # -march=native: one build per CPU (the name carries its tag), so a home directory shared by
        # machines of other CPUs never loads code they cannot run; -ffp-contract=off: the backward
        # recomputes the ReLU's mask with the forward's exact operations
        return cpp_extension.load(f"ferlab_bn_relu_{_cpu_tag()}", [str(_SOURCE)],
                                  extra_cflags=["-O3", "-march=native", "-ffp-contract=off"])
    except Exception as e:  # noqa: BLE001 (no compiler, no ninja, a failed build: any means not usable)
        warnings.warn(f"ferlab's fused BatchNorm2d+ReLU could not be built ({type(e).__name__}: "
                      f"{' '.join(str(e).split())[:300]}); training runs torch's BatchNorm and ReLU (the same "
                      "function, slower)", RuntimeWarning, stacklevel=3)
        return None
    finally:
        log.setLevel(level)


def _cpu_tag() -> str:
    """A short hash of this CPU's model and instruction-set flags (Linux), else of its platform name."""
    try:
        info = Path("/proc/cpuinfo").read_text()
        key = "".join(line for line in info.splitlines() if line.startswith(("model name", "flags")))[:4096]
    except OSError:
        key = ""
    return hashlib.sha1((key or platform.processor() or platform.machine()).encode()).hexdigest()[:10]


def available() -> bool:
    if not _ext:
        _ext.append(_build())
    return _ext[0] is not None


def matches(bn: nn.Module, act: nn.Module, x: torch.Tensor) -> bool:
    """Whether `act(bn(x))` can run here: a training BatchNorm2d with affine weights and running
    statistics, then a ReLU, on a CPU bfloat16 channels_last (N, C, H, W) map of more than one value
    per channel."""
    return (type(bn) is nn.BatchNorm2d and type(act) is nn.ReLU and bn.training and bn.affine
            and bn.track_running_stats and x.dim() == 4 and x.device.type == "cpu" and x.dtype == torch.bfloat16
            and x.shape[1] == bn.num_features and x.shape[0] * x.shape[2] * x.shape[3] > 1
            and x.is_contiguous(memory_format=torch.channels_last) and bn.weight.dtype == torch.float32
            and available())


def run(x: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    """`relu(bn(x))` for inputs `matches` accepted, updating bn's running statistics."""
    return _BNReLU.apply(x, bn.weight, bn.bias, bn)


class _BNReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, bn):
        ext = _ext[0]
        x = x.detach()
        rows = x.numel() // x.shape[1]
        sums = ext.stats(x)  # (2, C) float64: sum, sum of squares
        mean = sums[0] / rows
        var = (sums[1] / rows - mean * mean).clamp_(min=0)
        rstd = (var + bn.eps).rsqrt()
        w, b = weight.detach().double(), bias.detach().double()
        scale, shift = (w * rstd).float(), (b - mean * w * rstd).float()
        out = ext.apply_relu(x, scale, shift)
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
        ext = _ext[0]
        x, weight, scale, shift, mean, rstd = ctx.saved_tensors
        g = grad.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
        rows = x.numel() // x.shape[1]
        sums = ext.grad_stats(g, x, scale, shift, mean, rstd)  # sum(gy), sum(gy * xhat)
        k_gy = weight.detach().double() * rstd.double()
        gx = ext.grad_input(g, x, scale, shift, mean, rstd, k_gy.float(), (k_gy * sums[1] / rows).float(),
                            (k_gy * sums[0] / rows).float())
        return gx, sums[1].float(), sums[0].float(), None

"""Drop-in replacements for torch layers whose CPU kernels are slow on small tensors, and a
flatten that keeps backward ops in their memory format.

They compute exactly what `nn.Dropout` and `nn.MaxPool2d` compute (same class hierarchy, same
state dict, same results), only faster where torch is slow:

- `Dropout` draws its mask as 8-bit integers (when p is a multiple of 1/256: 0.25, 0.5) or 16-bit
  ones (p rounded to a multiple of 1/65536) from the raw 64-bit output of NumPy's SFC64 generator
  (0.1-0.2 ns per element), not with `bernoulli_` (about 15 ns per element on CPUs where MKL's
  generator is slow, AMD's among them), and multiplies by a mask already in the input's dtype
  (multiplying by a bool tensor takes torch's slow type-promotion path: 40x slower than float x
  float at 300k elements). Each call sets the generator's state from words drawn from torch's
  default generator, so `torch.manual_seed`, and a resumed run's restored RNG state, govern it as
  they govern `nn.Dropout` (setting the state directly costs 2 us where seeding through NumPy's
  SeedSequence costs 12). A 64x32x49x49 activation, forward + backward: 57-76 ms with
  `nn.Dropout`, 28 ms with a bool mask, 13 ms with 16-bit draws.
- `MaxPool2d` (2x2, stride 2) takes the maximum of strided views when no gradient flows through
  it (evaluation, prediction, or a pool with no parameters before it): torch's pooling kernel is
  4-12x slower on few-channel NCHW tensors, 1.8x on channels_last ones. With a gradient to
  propagate it runs the compiled kernels of `maxpool` on CPU bfloat16/float32 tensors (forward +
  backward 3x faster than torch's for a 64x32x47x47 activation; each window's gradient goes to
  its first maximum, as in torch and Keras), and `nn.MaxPool2d` itself elsewhere or without numba.
- `Sequential` runs each BatchNorm1d -> LeakyReLU/ReLU [-> Dropout] of its layers as one compiled
  forward and backward (`bn_act`), and each MaxPool2d -> ReLU as one pooling kernel with the ReLU
  folded in (`maxpool.run_relu`), in training on a CPU, and every layer on its own elsewhere; its
  layers, names and state dict are `nn.Sequential`'s.
"""
from __future__ import annotations

import threading

import numpy as np
import torch
from torch import nn


def _dense(x: torch.Tensor) -> bool:
    return x.is_contiguous() or (x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last))


class Dropout(nn.Dropout):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and 0 < self.p < 1 and x.device.type == "cpu" and not self.inplace and _dense(x)) \
                or torch.compiler.is_compiling():  # a compiled graph draws its own mask (no NumPy in a graph)
            return super().forward(x)
        # 8-bit draws where they represent p exactly (0.25, 0.5, ...): half the bytes of 16-bit ones
        levels = 256 if (self.p * 256).is_integer() else 65536
        keep = np.greater_equal(_uniform_bits(x.numel(), levels), round(self.p * levels)).view(np.uint8)
        # the mask in x's own memory order (the draws are i.i.d., so any order is as good)
        mask = torch.from_numpy(keep).to(x.dtype).mul_(1.0 / (1.0 - self.p)).as_strided(x.shape, x.stride())
        return x * mask


_generators = threading.local()  # one bit generator per thread, its state set on every call


def _uniform_bits(n: int, levels: int) -> np.ndarray:
    """n integers uniform in [0, levels) (256 or 65536) from SFC64, whose state (a, b, c, counter)
    is three words (63 random bits each) drawn from torch's default generator."""
    local = _generators.__dict__
    if "sfc64" not in local:
        local["sfc64"] = np.random.SFC64(0)
        local["state"] = local["sfc64"].state  # reused: reading `.state` builds a new dict each time
    bits, state = local["sfc64"], local["state"]
    words = torch.empty(4, dtype=torch.int64).random_().numpy().view(np.uint64)
    words[3] = 1
    state["state"]["state"] = words
    bits.state = state
    per_word = 8 if levels == 256 else 4
    return bits.random_raw(-(-n // per_word)).view(np.uint8 if levels == 256 else np.uint16)[:n]


def flatten(x: torch.Tensor) -> torch.Tensor:
    """`x.flatten(1)` in NCHW order whatever x's memory format, with the gradient handed back in
    x's format: a channels_last activation otherwise receives an NCHW gradient, and the ReLU and
    dropout backward ops before it take torch's slow mixed-format path (4.4 ms -> 0.5 ms for a
    64x64x23x23 ReLU backward, for one 1 ms copy)."""
    if x.dim() == 4 and x.requires_grad and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return _ToNCHW.apply(x).flatten(1)
    return x.flatten(1)


class _ToNCHW(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.contiguous()

    @staticmethod
    def backward(ctx, grad):
        return grad.contiguous(memory_format=torch.channels_last)


def _max2x2(x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2  # floor mode: an odd last row/column is dropped
    rows = torch.maximum(x[..., 0:h:2, :w], x[..., 1:h:2, :w])
    return torch.maximum(rows[..., 0::2], rows[..., 1::2])


class MaxPool2d(nn.MaxPool2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # torch's kernel in traced graphs (ONNX export: one MaxPool node) and for other pools
        if torch.jit.is_tracing() or torch.compiler.is_compiling() or not self._is_plain_2x2() or x.dim() != 4 \
                or min(x.shape[-2:]) < 2:
            return super().forward(x)
        if torch.is_grad_enabled() and x.requires_grad:
            # a gradient to route: the compiled kernels where they apply (torch's otherwise)
            from . import maxpool  # numba loads only when a pool trains

            if maxpool.supported(x) and maxpool.available():
                return maxpool.MaxPool2x2.apply(x)
            return super().forward(x)
        return _max2x2(x)

    def _is_plain_2x2(self) -> bool:
        pair = lambda v: v if isinstance(v, tuple) else (v, v)
        return (pair(self.kernel_size) == (2, 2) and pair(self.stride or self.kernel_size) == (2, 2)
                and pair(self.padding) == (0, 0) and pair(self.dilation) == (1, 1) and not self.ceil_mode
                and not self.return_indices)


def _hooked(mods: list[nn.Module]) -> bool:
    glob = nn.modules.module
    return bool(glob._global_forward_hooks or glob._global_forward_pre_hooks or any(
        m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks for m in mods))


def _pool_relu(mods: list[nn.Module], i: int, x: torch.Tensor) -> int:
    """2 when mods[i], mods[i + 1] are a plain 2x2 MaxPool2d and a ReLU that one pooling kernel can
    run on `x` with a gradient (`maxpool`, the ReLU folded into its forward and backward), else 0."""
    from . import maxpool

    pool = mods[i]
    if not (type(pool) is MaxPool2d and i + 1 < len(mods) and type(mods[i + 1]) is nn.ReLU and pool._is_plain_2x2()
            and x.requires_grad and torch.is_grad_enabled() and maxpool.supported(x)):
        return 0
    return 2 if maxpool.available() else 0


class Sequential(nn.Sequential):
    def forward(self, x):
        # traced graphs (diagrams, export) and evaluation see the layers one by one
        if not (self.training and isinstance(x, torch.Tensor) and x.device.type == "cpu") or torch.jit.is_tracing() \
                or torch.compiler.is_compiling():
            return super().forward(x)
        from . import bn_act, maxpool  # numba loads only when such layers train

        mods, i = list(self._modules.values()), 0
        while i < len(mods):
            # a hooked layer (explanations, a user's hooks) runs on its own, so that its hooks see it
            if (n := bn_act.match(mods, i, x)) and not _hooked(mods[i:i + n]):
                x = bn_act.run(x, *mods[i:i + n])
            elif (n := _pool_relu(mods, i, x)) and not _hooked(mods[i:i + n]):
                x = maxpool.run_relu(x)
            else:
                x, n = mods[i](x), 1
            i += n
        return x

"""2x2, stride-2 max-pooling with a gradient, as two small compiled CPU kernels (numba).

torch's CPU kernel for a training step's pool (`max_pool2d_with_indices` and its backward) writes
an int64 index per output and zero-fills the input gradient before scattering into it. The kernels
here read the input once and write the output and a one-byte window position, then write every
input-gradient element once from that byte. For the report CNN's 64x32x47x47 bfloat16 activation,
forward + backward (with the ReLU after it) take 0.96 ms against torch's 2.84, and the network's
whole training step 6.8 ms against 8.8 (`benchmarks/maxpool_step.py`, results/maxpool_step.json).
They compute what torch computes, bit for bit (NaN payloads aside, below): the first maximum of
each window in row-major order wins, a NaN always wins (as in torch's `val > max || isnan(val)`),
-0.0 and +0.0 tie, and floor mode drops an odd last row or column (whose gradient is zero).

bfloat16 is compared through its bits, mapped to integers in the order of the values (numba has no
bfloat16 type); float32 is compared as floats. Channels-last tensors are pooled as (N, H, W, C)
arrays, contiguous NCHW ones as (N*C, H, W, 1). Anything else is left to torch's kernel: no numba,
other dtypes or devices, a strided view, or `FERLAB_MAXPOOL=torch` in the environment. NaNs come
out as NaNs where torch's do, though not always with torch's bits (its NCHW bfloat16 kernel
rounds them to the canonical 0x7FC0).

The kernels are compiled on first use (a few seconds, then cached on disk by numba) and run on
as many threads as torch's intra-op pool. In a process forked after they ran, they run on one
thread: GNU OpenMP, numba's threading layer here, does not survive a fork.
"""
from __future__ import annotations

import os
import threading
import warnings

import numpy as np
import torch

_kernels: dict[bool, tuple] = {}
_lock = threading.Lock()  # numba's fallback threading layer (workqueue) takes one caller at a time
_forked = False


def _after_fork() -> None:
    global _forked
    _forked = True


os.register_at_fork(after_in_child=_after_fork)


def _build(parallel: bool) -> tuple | None:
    if os.environ.get("FERLAB_MAXPOOL") == "torch":  # to compare, or to rule these kernels out
        return None
    try:
        import numba
    except ImportError:
        return None
    loop = numba.prange if parallel else range
    jit = numba.njit(parallel=parallel, cache=True, boundscheck=False, nogil=True)

    # (no jitted helpers for the bit tests: a closure over a dispatcher changes numba's cache key in
    # every process, which would recompile this kernel on every start)
    @jit
    def forward16(x, out, code, relu):  # x (N, H, W, C) int16 bits; out, code (N, H//2, W//2, C)
        n_, oh_, ow_, c_ = out.shape
        for n in loop(n_):
            for oh in range(oh_):
                for ow in range(ow_):
                    for c in range(c_):
                        # each value's rank: NaN above all (0x8000); the bits of -x below those of
                        # +x; -0 == +0. Written out: a helper would be a closure (see above)
                        best = x[n, 2 * oh, 2 * ow, c]
                        if (best & 0x7FFF) > 0x7F80:
                            kb = numba.int32(0x8000)
                        else:
                            kb = numba.int32(best) if best >= 0 else -numba.int32(best & 0x7FFF)
                        k = 0
                        for j in range(1, 4):
                            v = x[n, 2 * oh + (j >> 1), 2 * ow + (j & 1), c]
                            kv = numba.int32(v) if v >= 0 else -numba.int32(v & 0x7FFF)
                            if (v & 0x7FFF) > 0x7F80:  # torch: val > max || isnan(val)
                                best, kb, k = v, numba.int32(0x8000), j
                            elif kv > kb:
                                best, kb, k = v, kv, j
                        if relu and kb <= 0:  # ReLU: 0 for negatives, -0.0 kept (torch's); no gradient
                            k = 4
                            if kb < 0:
                                best = 0
                        out[n, oh, ow, c] = best
                        code[n, oh, ow, c] = k

    @jit
    def forward32(x, out, code, relu):  # x (N, H, W, C) float32
        n_, oh_, ow_, c_ = out.shape
        for n in loop(n_):
            for oh in range(oh_):
                for ow in range(ow_):
                    for c in range(c_):
                        best = x[n, 2 * oh, 2 * ow, c]
                        k = 0
                        for j in range(1, 4):
                            v = x[n, 2 * oh + (j >> 1), 2 * ow + (j & 1), c]
                            if v > best or v != v:
                                best, k = v, j
                        if relu and best <= 0:  # NaN passes, as through torch's ReLU
                            k = 4
                            if best < 0:
                                best = 0.0
                        out[n, oh, ow, c] = best
                        code[n, oh, ow, c] = k

    @jit
    def backward(g, code, gi):  # g, code (N, OH, OW, C); gi (N, H, W, C), every element written; code 4: none
        n_, oh_, ow_, c_ = g.shape
        h_, w_ = gi.shape[1], gi.shape[2]
        for n in loop(n_):
            for h in range(h_):
                oh = h >> 1
                for w in range(w_):
                    ow = w >> 1
                    if oh >= oh_ or ow >= ow_:  # the row or column floor mode dropped
                        for c in range(c_):
                            gi[n, h, w, c] = 0
                        continue
                    here = (h & 1) * 2 + (w & 1)
                    for c in range(c_):
                        v = g[n, oh, ow, c]
                        gi[n, h, w, c] = v if code[n, oh, ow, c] == here else 0

    try:  # compile now, on the array types every call uses: a broken numba/LLVM means torch's kernel
        code = np.zeros((1, 1, 1, 1), np.uint8)
        for dtype in (np.int16, np.float32):
            x, out = np.zeros((1, 2, 2, 1), dtype), np.zeros((1, 1, 1, 1), dtype)
            (forward16 if dtype == np.int16 else forward32)(x, out, code, True)
            backward(out, code, x)
    except Exception as e:  # noqa: BLE001 (numba raises many kinds; any of them means: not usable)
        warnings.warn(f"numba could not compile ferlab's pooling kernels ({type(e).__name__}: {e}); training "
                      "uses torch's max-pool kernel (the same results, slower)", RuntimeWarning, stacklevel=2)
        return None
    return forward16, forward32, backward


def _kernel_set() -> tuple | None:
    parallel = not _forked
    if parallel not in _kernels:
        _kernels[parallel] = _build(parallel)
    kernels = _kernels[parallel]
    if kernels is not None and parallel:
        import numba

        numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
    return kernels


def _as_nhwc(t: torch.Tensor) -> torch.Tensor:
    """A 4-D tensor's memory as an (N, H, W, C) tensor (a view, no copy)."""
    if t.is_contiguous():
        n, c, h, w = t.shape
        return t.view(n * c, h, w, 1)
    return t.permute(0, 2, 3, 1)


def supported(x: torch.Tensor) -> bool:
    return (x.device.type == "cpu" and x.dtype in (torch.bfloat16, torch.float32) and x.dim() == 4
            and min(x.shape) > 0 and min(x.shape[-2:]) >= 2
            and (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)))


class MaxPool2x2(torch.autograd.Function):
    """Forward and backward of `F.max_pool2d(x, 2)`, or with `relu` of `F.relu(F.max_pool2d(x, 2))`,
    for tensors that `supported` accepts, when numba is installed (`available()`)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, relu: bool = False) -> torch.Tensor:
        n, c, h, w = x.shape
        fmt = torch.contiguous_format if x.is_contiguous() else torch.channels_last
        out = torch.empty((n, c, h // 2, w // 2), dtype=x.dtype, memory_format=fmt)
        xa, oa = _as_nhwc(x), _as_nhwc(out)
        code = torch.empty(oa.shape, dtype=torch.uint8)  # window position of each output: 0-3, row-major
        forward16, forward32, _ = _kernel_set()
        with _lock:
            if x.dtype == torch.bfloat16:
                forward16(xa.view(torch.int16).numpy(), oa.view(torch.int16).numpy(), code.numpy(), relu)
            else:
                forward32(xa.numpy(), oa.numpy(), code.numpy(), relu)
        ctx.save_for_backward(code)
        ctx.input = (x.shape, x.dtype, fmt)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (code,) = ctx.saved_tensors
        shape, dtype, fmt = ctx.input
        grad = grad.to(dtype).contiguous(memory_format=fmt)
        grad_in = torch.empty(shape, dtype=dtype, memory_format=fmt)
        bits = torch.int16 if dtype == torch.bfloat16 else torch.float32
        _, _, backward = _kernel_set()
        with _lock:
            backward(_as_nhwc(grad).view(bits).numpy(), code.numpy(), _as_nhwc(grad_in).view(bits).numpy())
        return grad_in, None


def available() -> bool:
    return _kernel_set() is not None


def run_relu(x: torch.Tensor) -> torch.Tensor:
    """`F.relu(F.max_pool2d(x, 2))` with a gradient, in one kernel, for `x` that `supported` accepts."""
    return MaxPool2x2.apply(x, True)

"""numba kernels of `bn_relu2d`: BatchNorm (batch statistics) + ReLU over rows [lo, hi) of (R, C).

A channels_last (N, C, H, W) tensor is (N*H*W, C) rows in memory. `bn_relu2d` splits the rows in
one block per thread and calls these serial kernels from its threads (they release the GIL), so
no numba threading layer is involved: they are safe in forked and threaded callers. Per-channel
sums are accumulated in float64 (no cancellation in E[x^2] - E[x]^2 at these sizes). bfloat16
tensors arrive as their uint16 bits and are widened a block of 64 rows at a time into a small
float32 buffer (the loops over a block vectorise; row by row they ran 2.5x slower), so no
full-size float32 copy is made and each element is read and written as few times as possible.
Module-level functions: numba caches them on disk.
"""
from __future__ import annotations

import numba
import numpy as np

jit = numba.njit(cache=True, boundscheck=False, nogil=True)

_BLOCK = 64  # rows widened at a time: a few KB, in L1


@jit
def _widen(bits, r0, n, wide):
    """Rows r0 .. r0+n of the bfloat16 bits into wide[:n] (uint32 whose float32 view is the values)."""
    for i in range(n):
        for j in range(bits.shape[1]):
            wide[i, j] = np.uint32(bits[r0 + i, j]) << 16


@jit
def _narrow(wide, n, bits, r0):
    """wide[:n] (float32 bits as uint32) rounded to nearest even into rows r0 .. r0+n of `bits`."""
    for i in range(n):
        for j in range(bits.shape[1]):
            v = wide[i, j]
            if (v & 0x7FFFFFFF) > 0x7F800000:  # NaN stays NaN
                bits[r0 + i, j] = np.uint16((v >> 16) | 0x40)
            else:
                bits[r0 + i, j] = np.uint16((v + 0x7FFF + ((v >> 16) & 1)) >> 16)


@jit
def sums(x, lo, hi, s, q):
    """s += the rows' sum per channel, q += their sum of squares: float32 within a block, float64
    across blocks."""
    c = x.shape[1]
    wide = np.empty((_BLOCK, c), np.uint32)
    f = wide.view(np.float32)
    bs, bq = np.empty(c, np.float32), np.empty(c, np.float32)
    for r0 in range(lo, hi, _BLOCK):
        n = min(_BLOCK, hi - r0)
        _widen(x, r0, n, wide)
        bs[:] = 0.0
        bq[:] = 0.0
        for i in range(n):
            for j in range(c):
                v = f[i, j]
                bs[j] += v
                bq[j] += v * v
        for j in range(c):
            s[j] += bs[j]
            q[j] += bq[j]


@jit
def apply_relu(x, scale, shift, out, lo, hi):
    """out = max(x * scale + shift, 0) per channel, rounded once to bfloat16."""
    c = x.shape[1]
    wide = np.empty((_BLOCK, c), np.uint32)
    f = wide.view(np.float32)
    zero = np.float32(0.0)
    for r0 in range(lo, hi, _BLOCK):
        n = min(_BLOCK, hi - r0)
        _widen(x, r0, n, wide)
        for i in range(n):
            for j in range(c):
                y = f[i, j] * scale[j] + shift[j]
                f[i, j] = y if y > zero else zero
        _narrow(wide, n, out, r0)


@jit
def grad_sums(g, x, scale, shift, mean, rstd, lo, hi, sg, sgx):
    """sg += sum of gy, sgx += sum of gy * xhat per channel, gy being the gradient through the ReLU,
    whose mask is recomputed from x with the forward's own float32 operations."""
    c = x.shape[1]
    wx, wg = np.empty((_BLOCK, c), np.uint32), np.empty((_BLOCK, c), np.uint32)
    fx, fg = wx.view(np.float32), wg.view(np.float32)
    bs, bsx = np.empty(c, np.float32), np.empty(c, np.float32)
    zero = np.float32(0.0)
    for r0 in range(lo, hi, _BLOCK):
        n = min(_BLOCK, hi - r0)
        _widen(x, r0, n, wx)
        _widen(g, r0, n, wg)
        bs[:] = 0.0
        bsx[:] = 0.0
        for i in range(n):
            for j in range(c):
                xv = fx[i, j]
                gy = fg[i, j] if xv * scale[j] + shift[j] > zero else zero
                bs[j] += gy
                bsx[j] += gy * ((xv - mean[j]) * rstd[j])
        for j in range(c):
            sg[j] += bs[j]
            sgx[j] += bsx[j]


@jit
def grad_input(g, x, scale, shift, mean, rstd, k_gy, k_xh, k_c, gx, lo, hi):
    """gx = gamma * rstd * (gy - mean(gy) - xhat * mean(gy * xhat)) = k_gy * gy - k_xh * xhat - k_c
    per channel (k_gy = gamma * rstd, k_xh = k_gy * mean(gy * xhat), k_c = k_gy * mean(gy)), rounded
    once to bfloat16."""
    c = x.shape[1]
    wx, wg = np.empty((_BLOCK, c), np.uint32), np.empty((_BLOCK, c), np.uint32)
    fx, fg = wx.view(np.float32), wg.view(np.float32)
    zero = np.float32(0.0)
    for r0 in range(lo, hi, _BLOCK):
        n = min(_BLOCK, hi - r0)
        _widen(x, r0, n, wx)
        _widen(g, r0, n, wg)
        for i in range(n):
            for j in range(c):
                xv = fx[i, j]
                gy = fg[i, j] if xv * scale[j] + shift[j] > zero else zero
                fg[i, j] = k_gy[j] * gy - k_xh[j] * ((xv - mean[j]) * rstd[j]) - k_c[j]
        _narrow(wg, n, gx, r0)

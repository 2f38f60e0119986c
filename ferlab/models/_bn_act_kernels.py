"""numba kernels of `bn_act` (imported, and compiled, only when such a layer trains).

Arrays are (B, C) row-major; bfloat16 tensors arrive as their uint16 bits (numba has no bfloat16)
and are widened and narrowed (round to nearest even, NaN kept a NaN) here, so a call is one
dispatch. `stats` holds the batch mean and 1/std per channel; `params` = (eps, negative slope,
dropout scale, running-average factor); `keys` = (keep threshold, two 32-bit seed halves).
Module-level functions: numba caches them on disk (closures would recompile in every process).
"""
from __future__ import annotations

import numba
import numpy as np

jit = numba.njit(cache=True, boundscheck=False, nogil=True)


@jit
def keep(idx, k1, k2):
    """The keep hash of element `idx`: Wellons' 32-bit "lowbias32" of idx keyed by the seed's halves."""
    h = ((idx ^ k2) + k1) & 0xFFFFFFFF
    h ^= h >> 16
    h = (h * 0x7FEB352D) & 0xFFFFFFFF
    h ^= h >> 15
    h = (h * 0x846CA68B) & 0xFFFFFFFF
    return h ^ (h >> 16)


@jit
def widen(bits):
    wide = np.empty(bits.shape, np.uint32)
    for i in range(bits.shape[0]):
        for j in range(bits.shape[1]):
            wide[i, j] = np.uint32(bits[i, j]) << 16
    return wide.view(np.float32)


@jit
def narrow(values, bits):
    u = values.view(np.uint32)
    for i in range(u.shape[0]):
        for j in range(u.shape[1]):
            v = u[i, j]
            if (v & 0x7FFFFFFF) > 0x7F800000:
                bits[i, j] = np.uint16((v >> 16) | 0x40)
            else:
                bits[i, j] = np.uint16((v + 0x7FFF + ((v >> 16) & 1)) >> 16)


@jit
def forward_f32(x, gamma, beta, running_mean, running_var, params, keys, out, stats):
    b, c = x.shape
    eps, slope, scale, factor = params[0], params[1], params[2], params[3]
    threshold, k1, k2 = keys[0], keys[1], keys[2]
    mean, rstd = stats[0], stats[1]
    var = np.zeros(c, np.float32)
    mean[:] = 0.0
    for i in range(b):
        for j in range(c):
            mean[j] += x[i, j]
    for j in range(c):
        mean[j] /= b
    for i in range(b):  # two passes: no cancellation as in E[x^2] - E[x]^2
        for j in range(c):
            d = x[i, j] - mean[j]
            var[j] += d * d
    for j in range(c):
        rstd[j] = 1.0 / np.sqrt(var[j] / b + eps)
        running_mean[j] = (1 - factor) * running_mean[j] + factor * mean[j]
        running_var[j] = (1 - factor) * running_var[j] + factor * var[j] / (b - 1)  # unbiased, as torch's
    zero = np.float32(0.0)
    for i in range(b):
        base = np.uint64(i) * np.uint64(c)
        for j in range(c):
            y = (x[i, j] - mean[j]) * rstd[j] * gamma[j] + beta[j]
            y = y if y > zero else y * slope
            out[i, j] = y * scale if keep(base + np.uint64(j), k1, k2) >= threshold else zero


@jit
def backward_f32(g, x, gamma, beta, stats, params, keys, gx, ggamma, gbeta):
    b, c = x.shape
    slope, scale = params[1], params[2]
    threshold, k1, k2 = keys[0], keys[1], keys[2]
    mean, rstd = stats[0], stats[1]
    zero = np.float32(0.0)
    ggamma[:] = 0.0
    gbeta[:] = 0.0
    for i in range(b):  # the gradient at the BatchNorm's output, and its two sums per channel
        base = np.uint64(i) * np.uint64(c)
        for j in range(c):
            xh = (x[i, j] - mean[j]) * rstd[j]
            gy = g[i, j] * scale if keep(base + np.uint64(j), k1, k2) >= threshold else zero
            gy = gy if xh * gamma[j] + beta[j] > zero else gy * slope
            gx[i, j] = gy
            gbeta[j] += gy
            ggamma[j] += gy * xh
    for i in range(b):
        for j in range(c):
            xh = (x[i, j] - mean[j]) * rstd[j]
            gx[i, j] = gamma[j] * rstd[j] * (gx[i, j] - (gbeta[j] + xh * ggamma[j]) / b)


@jit
def forward_bf16(x, gamma, beta, running_mean, running_var, params, keys, out, stats):
    y = np.empty(x.shape, np.float32)
    forward_f32(widen(x), gamma, beta, running_mean, running_var, params, keys, y, stats)
    narrow(y, out)


@jit
def backward_bf16(g, x, gamma, beta, stats, params, keys, gx, ggamma, gbeta):
    gxf = np.empty(x.shape, np.float32)
    backward_f32(widen(g), widen(x), gamma, beta, stats, params, keys, gxf, ggamma, gbeta)
    narrow(gxf, gx)

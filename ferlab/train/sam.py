"""Sharpness-aware minimisation (SAM, Foret et al. 2021), as one more forward and backward per step.

SAM descends from the worst point of a small ball around the weights instead of from the weights:
with the batch's gradient g, it moves the weights by e = rho * g / ||g||, takes the gradient there,
moves back and lets the optimizer step with that second gradient. Flat minima generalise better,
and the paper's largest gains were on noisy labels, which FER2013 has. It costs a second forward
and backward per step, so an epoch takes about twice as long.

The second forward must not count as a batch of its own: BatchNorm's running statistics (and the
cumulative count a `momentum=None` layer averages with) are left as the first forward set them.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn


@contextmanager
def ascent(model: nn.Module, rho: float) -> Iterator[None]:
    """Inside: the weights moved by rho * g / ||g|| along their gradients (which the caller has
    just computed and may now zero), BatchNorm statistics frozen. On exit, even on error: the
    weights exactly as they were (copied back, not subtracted, so a non-finite gradient cannot
    leave them corrupted) and BatchNorm as it was. Parameters without a gradient stay put."""
    params = [p for p in model.parameters() if p.grad is not None]
    saved = [p.detach().clone() for p in params]
    with torch.no_grad():
        if params:
            grads = [p.grad for p in params]
            norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))  # ||g|| over all weights
            torch._foreach_add_(params, torch._foreach_mul(grads, rho / (norm + 1e-12)))
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    held = [(m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None) for m in norms]
    for m in norms:
        m.momentum = 0.0  # running = (1 - 0) * running + 0 * batch: unchanged
    try:
        yield
    finally:
        with torch.no_grad():
            if params:
                torch._foreach_copy_(params, saved)
        for m, (momentum, count) in zip(norms, held):
            m.momentum = momentum
            if count is not None:
                m.num_batches_tracked.copy_(count)

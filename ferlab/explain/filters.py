"""Filter visualisation: an input found by gradient ascent that excites one conv filter, with
jitter, blur and L2 decay so it shows patterns rather than high-frequency noise (Yosinski et al. 2015).

The first conv layer is linear in the pixels, so the mean of its output rises fastest along a
constant image: gradient ascent there gives flat gray squares. Its kernels (`conv_kernels`) are
the pattern each filter responds to, and are shown instead."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import Loaded
from .inputs import Capture, EvalMode, Faces, conv_layers, get_layer, load, model_input, to_images


@dataclass
class FilterImages:
    """Inputs that excite conv filters, found by gradient ascent."""

    layer: str
    filters: list[int]
    images: np.ndarray
    """(F, S, S) or (F, S, S, 3) uint8: the optimised inputs as the model sees them."""
    start_activation: np.ndarray
    """(F,) mean activation of each filter on the start image."""
    activation: np.ndarray
    """(F,) mean activation of each filter on its optimised image."""
    inputs: torch.Tensor = field(repr=False)
    """(F, C, S, S) the optimised preprocessed inputs."""

    @property
    def rose(self) -> np.ndarray:
        """(F,) bool: whether each filter's mean activation rose above its start (False flags a
        filter the ascent could not excite, e.g. one behind dead ReLUs)."""
        return self.activation > self.start_activation


@dataclass
class Kernels:
    """The weights of a conv layer's filters."""

    layer: str
    filters: list[int]
    weights: np.ndarray
    """(F, C_in, kh, kw) float32."""


def last_conv_layer(model: nn.Module) -> str:
    names = conv_layers(model)
    if not names:
        raise ValueError(f"{type(model).__name__} has no conv layers, so there are no filters to visualise")
    return names[-1]


def _filter_indices(layer: str, conv: nn.Conv2d, filters: Sequence[int] | None, default: int) -> list[int]:
    filters = list(range(min(default, conv.out_channels))) if filters is None else [int(f) for f in filters]
    bad = [f for f in filters if not 0 <= f < conv.out_channels]
    if bad or not filters:
        raise ValueError(f"filter indices {bad or filters} are not in layer {layer!r}, which has "
                         f"{conv.out_channels} filters (0-{conv.out_channels - 1})")
    return filters


def conv_kernels(model: Loaded | str | Path, layer: str | None = None,
                 filters: Sequence[int] | None = None) -> Kernels:
    """The kernels of a conv layer (default: the first one) for `filters` (default: all)."""
    loaded = load(model)
    names = conv_layers(loaded.model)
    if layer is None:
        if not names:
            raise ValueError(f"{type(loaded.model).__name__} has no conv layers, so there are no kernels to show")
        layer = names[0]
    conv = get_layer(loaded.model, layer, conv_only=True)
    filters = _filter_indices(layer, conv, filters, conv.out_channels)
    return Kernels(layer, filters, conv.weight.detach()[filters].float().numpy())


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = max(1, round(2 * sigma))
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def visualize_filters(model: Loaded | str | Path, layer: str | None = None, filters: Sequence[int] | None = None,
                      *, start: Faces | None = None, steps: int = 64, lr: float = 0.05, l2: float = 1e-2,
                      jitter: int = 1, blur_every: int = 4, blur_sigma: float = 0.5, seed: int = 0) -> FilterImages:
    """Gradient ascent on the input to maximise the mean activation of each filter of a conv layer.

    layer: a conv layer name (default: the last one); filters: channel indices (default: the first
    16). start: one face crop (or preprocessed input) to start from; default mid-gray plus a
    little noise. Regularisers: `l2` times the mean square of the input, a random shift of up to `jitter`
    pixels per step, and a Gaussian blur every `blur_every` steps (0 turns either off). Each step
    moves the input by `lr` (root-mean-square, in normalised units) along the gradient; inputs stay
    within the valid pixel range of the checkpoint's preprocessing."""
    loaded = load(model)
    net, pre = loaded.model, loaded.preprocess
    layer = layer or last_conv_layer(net)
    conv = get_layer(net, layer, conv_only=True)
    filters = _filter_indices(layer, conv, filters, 16)
    # the valid pixel range in the model's units: per channel, or per pixel with a mean image
    mean = pre.center.expand(1, pre.channels, *pre.center.shape[2:])
    std = torch.tensor(pre.std, dtype=torch.float32).view(1, -1, 1, 1).expand(1, pre.channels, 1, 1)
    lo, hi = (0 - mean) / std, (1 - mean) / std
    gen = torch.Generator().manual_seed(seed)
    n = len(filters)
    if start is None:
        x0 = (0.5 + 0.05 * torch.randn((1, pre.channels, pre.size, pre.size), generator=gen) - mean) / std
    else:
        x0 = model_input(loaded, start)[:1]
    x0 = torch.max(torch.min(x0, hi), lo).repeat(n, 1, 1, 1)  # (F, C, S, S)
    idx = torch.tensor(filters)

    def score(capture: Capture, x: torch.Tensor) -> torch.Tensor:
        net(x)
        act = capture.outputs[layer]  # (F, out_channels, h, w)
        return act[torch.arange(n), idx].flatten(1).mean(1)  # (F,)

    x = x0.clone().requires_grad_(True)
    with EvalMode(net), Capture(net, [layer]) as capture:
        with torch.no_grad():
            start_act = score(capture, x0)
        with torch.enable_grad():
            for step in range(steps):
                dx, dy = (torch.randint(-jitter, jitter + 1, (2,), generator=gen).tolist() if jitter else (0, 0))
                shifted = torch.roll(x, (dy, dx), (2, 3))
                objective = score(capture, shifted).sum() - l2 * x.pow(2).flatten(1).mean(1).sum()
                grad, = torch.autograd.grad(objective, x)
                with torch.no_grad():
                    # Normalised ascent step: each image moves by `lr` (RMS per pixel) whatever the
                    # gradient's scale, which differs by orders of magnitude between layers.
                    x += lr * grad / grad.pow(2).flatten(1).mean(1).sqrt().clamp_min(1e-12).view(-1, 1, 1, 1)
                    if blur_every and blur_sigma > 0 and (step + 1) % blur_every == 0 and step + 1 < steps:
                        x.copy_(_blur(x, blur_sigma))
                    x.copy_(torch.max(torch.min(x, hi), lo))
        with torch.no_grad():
            end_act = score(capture, x)
    xf = x.detach()
    return FilterImages(layer, filters, to_images(loaded, xf), start_act.numpy(), end_act.numpy(), xf)

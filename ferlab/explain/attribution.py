"""Attribution maps over the model's input: saliency, SmoothGrad (Simonyan et al. 2014; Smilkov
et al. 2017), Grad-CAM on the model's declared `cam_layer` (Selvaraju et al. 2017), maps of several
classes on one scale, and faces masked to their most salient pixels."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..checkpoint import Loaded
from .inputs import Capture, EvalMode, Faces, class_index, conv_layers, load, model_input, to_images


@dataclass
class Attribution:
    """Per-input maps over the model's input, each scaled to [0, 1] (0 everywhere if all-zero)."""

    maps: np.ndarray
    """(N, S, S) float32."""
    targets: list[int]
    """The class index each map explains."""
    probs: np.ndarray
    """(N, K) probabilities (calibrated by the checkpoint's temperature) on the noise-free inputs."""
    peaks: np.ndarray
    """(N,) the value each map was divided by: `maps * peaks[:, None, None]` is the raw map."""


def _targets(loaded: Loaded, logits: torch.Tensor, target: int | str | None) -> torch.Tensor:
    if target is None:
        return logits.argmax(1)
    return torch.full((logits.shape[0],), class_index(loaded, target), dtype=torch.long)


def _unit(maps: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    peak = maps.flatten(1).amax(1).clamp_min(1e-12)  # (N,)
    return (maps / peak.view(-1, 1, 1)).float().numpy(), peak.float().numpy()


def shared_scale(results: Sequence[Attribution]) -> np.ndarray:
    """Maps of the same inputs for several targets (one `Attribution` per target) on one scale:
    (T, N, S, S), where 1 is the largest raw value over all targets of that input. A class whose
    evidence is weak then shows a weak map instead of one stretched to its own peak."""
    raw = np.stack([r.maps * r.peaks[:, None, None] for r in results])  # (T, N, S, S)
    top = raw.max(axis=(0, 2, 3), keepdims=True)  # (1, N, 1, 1)
    return (raw / np.where(top > 0, top, 1.0)).astype(np.float32)


def top_pixels(maps: np.ndarray, keep: float) -> np.ndarray:
    """(N, S, S) bool masks of the round(keep * S * S) highest values of each map (at least one);
    ties are broken by position, so exactly that many pixels are kept."""
    maps = np.asarray(maps)
    if not 0 < keep <= 1:
        raise ValueError(f"keep must be a fraction in (0, 1], got {keep}")
    flat = maps.reshape(len(maps), -1)
    k = max(1, int(round(keep * flat.shape[1])))
    order = np.argsort(-flat, axis=1, kind="stable")[:, :k]
    masks = np.zeros(flat.shape, dtype=bool)
    np.put_along_axis(masks, order, True, axis=1)
    return masks.reshape(maps.shape)


@dataclass
class Masked:
    """Faces masked to their most salient pixels."""

    images: np.ndarray
    """(N, S, S) or (N, S, S, 3) uint8: what the model saw, 0 outside the mask."""
    masks: np.ndarray
    """(N, S, S) bool: the kept pixels."""
    faces: np.ndarray
    """The unmasked model inputs as uint8, like `images`."""
    saliency: Attribution


def masked_saliency(model: Loaded | str | Path, faces: Faces, target: int | str | None = None,
                    keep: float = 0.1, samples: int = 0) -> Masked:
    """Each face with only its `keep` fraction of most salient pixels (saliency of `target`, or
    SmoothGrad with `samples` > 0) left, the rest black."""
    loaded = load(model)
    x = model_input(loaded, faces)
    sal = saliency(loaded, x, target, samples=samples)
    masks = top_pixels(sal.maps, keep)
    images = to_images(loaded, x)
    shown = masks if images.ndim == 3 else masks[..., None]
    return Masked(np.where(shown, images, 0).astype(np.uint8), masks, images, sal)


class GradCAM:
    """Grad-CAM on the model's declared `cam_layer` (or another named layer) as a context manager:

        with GradCAM(loaded) as cam:
            result = cam(faces, target="happy")
    """

    def __init__(self, model: Loaded | str | Path, layer: str | None = None):
        self.loaded = load(model)
        if layer is None:
            layer = self.loaded.model.cam_layer
            if layer is None:
                raise ValueError(f"model {self.loaded.model_name!r} declares no conv layer for Grad-CAM (cam_layer is "
                                 "None): Grad-CAM needs a convolutional feature map; use saliency or smoothgrad "
                                 "instead")
        self.layer = layer
        self._capture = Capture(self.loaded.model, [layer])

    def __enter__(self) -> "GradCAM":
        self._capture.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._capture.__exit__(*exc)

    def __call__(self, faces: Faces, target: int | str | None = None) -> Attribution:
        """Maps for `target` (a class name or index; None = each input's predicted class)."""
        if not self._capture._handles:
            raise RuntimeError("use GradCAM inside a `with` block so its hooks are removed afterwards")
        model = self.loaded.model
        x = model_input(self.loaded, faces).requires_grad_(True)
        with EvalMode(model), torch.enable_grad():
            logits = model(x)
            act = self._capture.outputs[self.layer]
            if act.ndim != 4:
                raise ValueError(f"layer {self.layer!r} outputs shape {tuple(act.shape)}, not (N, C, H, W) feature "
                                 f"maps; Grad-CAM needs a conv layer such as: {', '.join(conv_layers(model))}")
            idx = _targets(self.loaded, logits, target)
            grads, = torch.autograd.grad(logits.gather(1, idx[:, None]).sum(), act)
        weights = grads.mean((2, 3), keepdim=True)  # (N, C, 1, 1): how much each channel raises the score
        cam = F.relu((weights * act.detach()).sum(1, keepdim=True))  # (N, 1, h, w)
        cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]  # (N, S, S)
        maps, peaks = _unit(cam)
        return Attribution(maps, idx.tolist(), (logits.detach() / self.loaded.temperature).softmax(1).numpy(), peaks)


def gradcam(model: Loaded | str | Path, faces: Faces, target: int | str | None = None,
            layer: str | None = None) -> Attribution:
    """Grad-CAM maps of `faces` (see `GradCAM`)."""
    with GradCAM(model, layer) as cam:
        return cam(faces, target)


def saliency(model: Loaded | str | Path, faces: Faces, target: int | str | None = None, *, samples: int = 0,
             noise: float = 0.15, seed: int = 0) -> Attribution:
    """Gradient saliency of the target logit w.r.t. the input pixels (max |grad| over channels).

    samples > 0 gives SmoothGrad: the mean |grad| over that many copies with Gaussian noise of
    std `noise` x (the input's value range) added; `seed` makes the noise repeatable."""
    loaded = load(model)
    net = loaded.model
    x = model_input(loaded, faces)
    with EvalMode(net), torch.enable_grad():
        with torch.no_grad():
            logits = net(x)
        idx = _targets(loaded, logits, target)
        if samples <= 0:
            xg = x.clone().requires_grad_(True)
            out = net(xg)
            grads, = torch.autograd.grad(out.gather(1, idx[:, None]).sum(), xg)
            sal = grads.abs()
        else:
            gen = torch.Generator().manual_seed(seed)
            sal = torch.zeros_like(x)
            for i in range(len(x)):
                sigma = noise * float(x[i].max() - x[i].min() or 1.0)
                xn = (x[i:i + 1] + sigma * torch.randn((samples, *x.shape[1:]), generator=gen)).requires_grad_(True)
                out = net(xn)  # (samples, K)
                grads, = torch.autograd.grad(out[:, idx[i]].sum(), xn)
                sal[i] = grads.abs().mean(0)
    maps, peaks = _unit(sal.amax(1))
    return Attribution(maps, idx.tolist(), (logits / loaded.temperature).softmax(1).numpy(), peaks)

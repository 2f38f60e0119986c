"""Logits of a model over uint8 images, batched, with optional test-time augmentation."""
from __future__ import annotations

from typing import get_args

import torch
import torch.nn.functional as F

from ..devices import autocast
from ..models.fold import fold_batchnorm
from ..preprocess import Preprocess
from .config import TTA


@torch.inference_mode()
def predict_logits(model: torch.nn.Module, images: torch.Tensor, preprocess: Preprocess, tta: TTA = "none",
                   batch_size: int = 256, channels_last: bool = True, amp: bool = False) -> torch.Tensor:
    """Average logits of `model` over uint8 images (N, C, H, W), with optional test-time augmentation.

    flip: the image and its mirror. flip_shift: also 1-pixel-per-16 shifts in 4 directions of both
    (10 views), the cheap cousin of ten-crop for models that see the whole 48x48 face. ten_crop:
    the four corner and the centre 40x40 crops (5/6 of the side) of both, for models trained on
    such crops (`--train-crop 40`) that take smaller inputs (global pooling).
    Batches run on the model's device (the uint8 images may live anywhere); logits come back as
    float32 on the CPU. `amp` runs the model under mixed precision (bfloat16 on CPUs: 3x faster on
    AMX), used for the per-epoch validation during training (reported final figures use fp32).
    `model` is put in eval mode and runs as a copy with its BatchNorm folded (`models.fold`), in
    channels_last with `channels_last`; a model with nothing to fold runs itself, moved to
    channels_last. The report BN CNN's batch-64 bf16 pass over 3,589 faces: 2,609 img/s as a
    checkpoint loads it, 8,341 folded (`benchmarks/eval_pass.py`).
    """
    if tta not in get_args(TTA):
        raise ValueError(f"unknown tta {tta!r}; choose one of: {', '.join(get_args(TTA))}")
    model = fold_batchnorm(model)  # eval mode; BatchNorm folded into a copy (models.fold)
    if channels_last:  # weights in the input's format too: oneDNN otherwise reorders them on every call
        model = model.to(memory_format=torch.channels_last)
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(images), batch_size):
        x = preprocess.normalize(images[i:i + batch_size].to(device, non_blocking=True))
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        views = tta_views(x, tta)
        with autocast(device, amp):
            try:
                out.append(torch.stack([model(v).float() for v in views]).mean(0).cpu())
            except RuntimeError as e:
                if tta != "ten_crop":
                    raise
                raise ValueError(f"ten_crop TTA feeds {views[0].shape[-1]}x{views[0].shape[-2]} crops, which "
                                 f"{type(model).__name__} cannot take (a network with global pooling can): "
                                 f"use --tta flip or flip_shift ({e})") from None
    return torch.cat(out)


def tta_views(x: torch.Tensor, tta: TTA) -> list[torch.Tensor]:
    """The views of a normalised batch (B, C, H, W) whose logits `tta` averages (see `predict_logits`);
    `predict --tta` and `serve --tta` take the same ones (`Recognizer(tta=...)`)."""
    views = [x]
    if tta != "none":
        views.append(x.flip(-1))
    if tta == "flip_shift":
        s = max(1, x.shape[-1] // 16)
        for v in list(views):
            p = F.pad(v, (s, s, s, s), mode="replicate")
            h, w = v.shape[-2:]
            views += [p[..., :h, s:s + w], p[..., 2 * s:, s:s + w], p[..., s:s + h, :w], p[..., s:s + h, 2 * s:]]
    if tta == "ten_crop":
        views = _ten_crops(views)
    return views


def _ten_crops(views: list[torch.Tensor]) -> list[torch.Tensor]:
    """The four corner and the centre crops, 5/6 of the side (40 of 48: the side `--train-crop 40`
    trains on), of the image and of its mirror."""
    x, mirror = views
    h, w = x.shape[-2:]
    ch, cw = round(h * 5 / 6), round(w * 5 / 6)
    corners = [(0, 0), (0, w - cw), (h - ch, 0), (h - ch, w - cw), ((h - ch) // 2, (w - cw) // 2)]
    return [v[..., i:i + ch, j:j + cw] for v in (x, mirror) for i, j in corners]

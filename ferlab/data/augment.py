"""Batched tensor augmentations for (B, C, H, W) float batches.

All geometric changes (flip, rotation, scale, shift) are folded into one affine grid and one
`grid_sample` call per batch, so augmentation costs a few percent of a training step instead of
per-image Python work.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .augment_config import AugmentConfig


def augment(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator | None = None,
            crop: int = 0) -> torch.Tensor:
    """Apply random augmentation to a normalised float batch (B, C, H, W).

    `crop` > 0 also cuts a random crop-by-crop window per image, inside the same resampling
    (so it costs nothing extra, and the network then runs on fewer pixels)."""
    b, h = x.shape[0], x.shape[-1]
    rand = lambda *s: torch.rand(*s, generator=generator, device=x.device)  # the generator lives there too
    crop = crop if 0 < crop < h else 0
    if cfg.rotate_deg or cfg.scale or cfg.shift or cfg.flip or crop:
        ang = (rand(b) * 2 - 1) * math.radians(cfg.rotate_deg)
        zoom = 1 + (rand(b) * 2 - 1) * cfg.scale
        flip = torch.where(rand(b) < cfg.flip, -1.0, 1.0)
        tx, ty = [(rand(b) * 2 - 1) * cfg.shift * 2 for _ in range(2)]  # grid units span 2 per side
        frac = crop / h if crop else 1.0  # the output grid spans `frac` of the input side
        if crop:  # window centre anywhere the window still fits
            tx, ty = tx + (rand(b) * 2 - 1) * (1 - frac), ty + (rand(b) * 2 - 1) * (1 - frac)
        cos, sin = torch.cos(ang) / zoom * frac, torch.sin(ang) / zoom * frac
        theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
        size = [b, x.shape[1], crop, crop] if crop else list(x.shape)
        grid = F.affine_grid(theta, size, align_corners=False)  # (B, H', W', 2)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if cfg.contrast or cfg.brightness:
        c = 1 + (rand(b, 1, 1, 1) * 2 - 1) * cfg.contrast
        br = (rand(b, 1, 1, 1) * 2 - 1) * cfg.brightness
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * c + mean + br
    if cfg.erase:
        h, w = x.shape[-2:]
        area = rand(b) * cfg.erase_max
        aspect = torch.exp((rand(b) * 2 - 1) * math.log(2))
        eh = (torch.sqrt(area * aspect) * h).clamp(1, h)
        ew = (torch.sqrt(area / aspect) * w).clamp(1, w)
        y0 = rand(b) * (h - eh)
        x0 = rand(b) * (w - ew)
        ys = torch.arange(h, device=x.device).view(1, h, 1)
        xs = torch.arange(w, device=x.device).view(1, 1, w)
        box = ((ys >= y0.view(b, 1, 1)) & (ys < (y0 + eh).view(b, 1, 1))
               & (xs >= x0.view(b, 1, 1)) & (xs < (x0 + ew).view(b, 1, 1)))  # (B, H, W)
        box &= (rand(b) < cfg.erase).view(b, 1, 1)
        x = x.masked_fill(box.unsqueeze(1), 0.0)  # 0 = the dataset mean after normalisation
    return x


def mix(x: torch.Tensor, y: torch.Tensor, num_classes: int, mixup: float, cutmix: float,
        generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup (alpha=`mixup`) or CutMix (alpha=`cutmix`), chosen per batch; returns soft targets."""
    target = F.one_hot(y, num_classes).float()
    if not mixup and not cutmix:
        return x, target
    use_cut = cutmix > 0 and (mixup == 0 or torch.rand(1, generator=generator, device=x.device).item() < 0.5)
    alpha = cutmix if use_cut else mixup
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    perm = torch.randperm(x.shape[0], generator=generator, device=x.device)
    if use_cut:
        h, w = x.shape[-2:]
        ch, cw = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
        cy = torch.randint(h, (1,), generator=generator, device=x.device).item()
        cx = torch.randint(w, (1,), generator=generator, device=x.device).item()
        y0, y1, x0, x1 = max(cy - ch // 2, 0), min(cy + ch // 2, h), max(cx - cw // 2, 0), min(cx + cw // 2, w)
        x = x.clone()
        x[:, :, y0:y1, x0:x1] = x[perm, :, y0:y1, x0:x1]
        lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)
    else:
        x = lam * x + (1 - lam) * x[perm]
    return x, lam * target + (1 - lam) * target[perm]

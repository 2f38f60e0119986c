"""What a camera and a codec do to the faces `ferlab predict` sees: lighting (gamma), blur and JPEG.

FER2013's faces are clean 48x48 crops; faces cut from webcam frames and phone photos are darker or
brighter in a non-linear way, soft (out of focus, or small faces scaled up) and compressed. These
act on uint8 pixels before normalisation, as the camera and the codec do, each image with its own
strength; training draws the strengths (`degrade`), the robustness benchmark fixes them.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .augment_config import AugmentConfig


def gamma(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """uint8 or float 0-255 (B, C, H, W) -> float 0-255 with pixel p mapped to 255 (p / 255) ** g[i]
    (g < 1 brightens the shadows, g > 1 darkens them)."""
    return (x.float() / 255).clamp_min_(0).pow_(g.view(-1, 1, 1, 1).to(x.device)).mul_(255)


def blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Gaussian blur of (B, C, H, W) with image i's sigma[i] in pixels (0 leaves it unchanged); float out.

    One grouped convolution per axis for the whole batch: each image-channel gets its own kernel."""
    b, c, h, w = x.shape
    sigma = sigma.to(x.device, torch.float32).clamp_min(0)
    radius = min(max(1, math.ceil(3 * float(sigma.max()))), (min(h, w) - 1) // 2 or 1)
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=torch.float32)
    k = torch.exp(-t ** 2 / (2 * sigma.clamp_min(1e-3).view(-1, 1) ** 2))  # sigma ~0: a delta kernel
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (B*C, K)
    y = x.float().reshape(1, b * c, h, w)
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="reflect"), k.view(b * c, 1, 1, -1), groups=b * c)
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="reflect"), k.view(b * c, 1, -1, 1), groups=b * c)
    return y.reshape(b, c, h, w)


def jpeg(x: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """uint8 (B, C, H, W), C = 1 or 3 (RGB) -> uint8, image i encoded and decoded as a JPEG of quality
    quality[i] (1-100) by OpenCV's libjpeg; images with quality <= 0 are left as they are."""
    if x.dtype != torch.uint8:
        raise ValueError(f"jpeg takes uint8 images, got {x.dtype}")
    q = quality.cpu().round().to(torch.int64).tolist()
    picked = [i for i, qi in enumerate(q) if qi > 0]
    if not picked:
        return x
    cpu = x[picked].cpu().permute(0, 2, 3, 1).numpy()  # (n, H, W, C)
    out = np.empty_like(cpu)
    for j, (img, qi) in enumerate(zip(cpu, (q[i] for i in picked))):
        bgr = img[..., ::-1] if img.shape[-1] == 3 else img[..., 0]  # OpenCV's colour order
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(bgr), [cv2.IMWRITE_JPEG_QUALITY, min(int(qi), 100)])
        if not ok:
            raise RuntimeError("OpenCV could not JPEG-encode a training image")
        dec = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        out[j] = dec[..., ::-1] if img.shape[-1] == 3 else dec[..., None]
    x = x.clone()
    x[picked] = torch.from_numpy(out).permute(0, 3, 1, 2).to(x.device)
    return x


def active(cfg: AugmentConfig) -> bool:
    return bool(cfg.gamma or cfg.blur or cfg.jpeg)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    return x.round().clamp_(0, 255).to(torch.uint8)


def degrade(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """uint8 (B, C, H, W) -> uint8 with `cfg`'s gamma, blur and JPEG drawn per image (lighting, then
    optics, then the codec, the order a camera applies them); unchanged when none is set."""
    if not active(cfg):
        return x
    b = x.shape[0]
    rand = lambda: torch.rand(b, generator=generator, device=x.device)  # the generator lives there too
    y = x
    if cfg.gamma:  # log-uniform in [1/(1+g), 1+g]: brightening and darkening equally likely
        y = gamma(y, torch.exp((rand() * 2 - 1) * math.log1p(cfg.gamma)))
    if cfg.blur:
        sigma = 0.3 + rand() * max(cfg.blur_sigma - 0.3, 0)
        picked = (rand() < cfg.blur).nonzero().flatten()  # blur only those: a third of the work at p=0.3
        if len(picked):
            y = y.float().index_copy(0, picked, blur(y.index_select(0, picked), sigma.index_select(0, picked)))
    y = to_uint8(y) if y.dtype != torch.uint8 else y
    if cfg.jpeg:
        quality = cfg.jpeg_quality + rand() * (95 - cfg.jpeg_quality)
        y = jpeg(y, torch.where(rand() < cfg.jpeg, quality, torch.zeros_like(quality)))
    return y

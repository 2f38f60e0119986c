"""How a face crop becomes a model input. Stored in every checkpoint so that predict, explain,
export and serve rebuild exactly what training saw."""
from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import torch


@dataclass(frozen=True)
class Preprocess:
    """Face crop -> tensor recipe."""

    size: int = 48
    """Side of the square input in pixels."""
    channels: Literal[1, 3] = 1
    """1 = grayscale (ITU-R 601 luma), 3 = RGB."""
    mean: tuple[float, ...] = (0.5,)
    """Per-channel mean subtracted after scaling pixels to [0, 1]."""
    std: tuple[float, ...] = (0.25,)
    """Per-channel std divided after subtracting the mean."""
    crop_margin: float = 0.0
    """Extra border added on each side of a detected face box, as a fraction of the box side, to
    match how the training faces were cropped (FER2013 crops are tight: 0.0 to 0.1)."""
    pixel_mean: tuple[float, ...] = ()
    """A per-pixel mean image (C*S*S values, pixels scaled to [0, 1]) subtracted instead of the
    per-channel `mean`; `std` then holds the one divisor (the third course report's centring by the
    training set's mean face and division by the largest absolute value)."""

    def __post_init__(self):
        problems = []
        if self.size < 8:
            problems.append(f"size must be >= 8, got {self.size}")
        if self.channels not in (1, 3):
            problems.append(f"channels must be 1 or 3, got {self.channels}")
        if len(self.mean) not in (1, self.channels) or len(self.std) not in (1, self.channels):
            problems.append(f"mean/std need 1 or {self.channels} values")
        if any(s <= 0 for s in self.std):
            problems.append("std values must be > 0")
        if self.pixel_mean and len(self.pixel_mean) != self.channels * self.size * self.size:
            problems.append(f"pixel_mean needs {self.channels * self.size * self.size} values (C*S*S), "
                            f"got {len(self.pixel_mean)}")
        if not -0.2 <= self.crop_margin <= 1.0:
            problems.append(f"crop_margin must be in [-0.2, 1.0], got {self.crop_margin}")
        if problems:
            raise ValueError("invalid preprocessing: " + "; ".join(problems))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocess":
        d = dict(d)
        d["mean"] = tuple(d.get("mean", (0.5,)))
        d["std"] = tuple(d.get("std", (0.25,)))
        d["pixel_mean"] = tuple(d.get("pixel_mean", ()))
        return cls(**d)

    @functools.cached_property
    def center(self) -> torch.Tensor:
        """(1, C, 1, 1) channel means, or the (1, C, S, S) mean image; built once per Preprocess."""
        if self.pixel_mean:
            return torch.tensor(self.pixel_mean, dtype=torch.float32).view(1, self.channels, self.size, self.size)
        return torch.tensor(self.mean, dtype=torch.float32).view(1, -1, 1, 1)

    @functools.cached_property
    def _affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        std = torch.tensor(self.std, dtype=torch.float32).view(1, -1, 1, 1)
        return 1.0 / (255.0 * std), self.center / std

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C, H, W) -> float32 (x / 255 - mean) / std, on the tensor's device."""
        scale, shift = (t.to(x.device) for t in self._affine)
        return x.float().mul_(scale).sub_(shift)  # two passes over the batch, not three

    def denormalize(self, x: torch.Tensor) -> np.ndarray:
        """Normalised (N, C, S, S) -> what the model saw as uint8: (N, S, S) gray or (N, S, S, 3) RGB."""
        mean = self.center
        std = torch.tensor(self.std, dtype=torch.float32).view(1, -1, 1, 1)
        img = ((x.detach().float().cpu() * std + mean) * 255).round().clamp(0, 255).to(torch.uint8)
        return img[:, 0].numpy() if img.shape[1] == 1 else img.permute(0, 2, 3, 1).numpy()

    def model_input(self, crops) -> torch.Tensor:
        """uint8 face crops (a list of HxW or HxWx3 arrays of any size) -> normalised float32 (N, C, S, S)."""
        arrays = [self.image_to_array(np.asarray(c)) for c in crops]
        if not arrays:
            return torch.zeros((0, self.channels, self.size, self.size))
        return self.normalize(torch.from_numpy(np.stack(arrays)))

    def image_to_array(self, img: np.ndarray) -> np.ndarray:
        """An HxW or HxWxC uint8 face crop (RGB order) -> (C, size, size) uint8 in this colour mode."""
        from PIL import Image  # local: keeps import of this module light for the models

        arr = np.asarray(img)
        if arr.dtype != np.uint8:
            raise ValueError(f"expected a uint8 image, got {arr.dtype}")
        if arr.ndim == 2:
            pil = Image.fromarray(arr, "L")
        elif arr.ndim == 3 and arr.shape[2] == 3:
            pil = Image.fromarray(arr, "RGB")
        elif arr.ndim == 3 and arr.shape[2] == 1:
            pil = Image.fromarray(arr[:, :, 0], "L")
        else:
            raise ValueError(f"expected an HxW or HxWx3 image, got shape {arr.shape}")
        return pil_to_array(pil, self.size, self.channels)


def to_8bit(pil):
    """A PIL image in an 8-bit mode without alpha, ready for convert("L"/"RGB").

    16/32-bit and float grayscale are scaled from the image's own range instead of clipped;
    transparent pixels become white rather than whatever colour sits under alpha 0. Used for
    training data (`pil_to_array`) and for photos at prediction (`predict.pil_to_rgb`) alike.
    """
    from PIL import Image

    if pil.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(pil, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = np.zeros_like(a) if hi <= lo else (a - lo) / (hi - lo) * 255.0
        pil = Image.fromarray(a.round().astype(np.uint8), "L")
    if pil.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (pil.mode == "P" and "transparency" in pil.info):
        rgba = pil.convert("RGBA")
        pil = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return pil


def pil_to_array(pil, size: int, channels: int) -> np.ndarray:
    """Any PIL image -> (C, size, size) uint8, converting colour mode and resizing (area-averaging)."""
    from PIL import Image

    pil = to_8bit(pil).convert("L" if channels == 1 else "RGB")
    if pil.size != (size, size):
        pil = pil.resize((size, size), Image.BILINEAR, reducing_gap=None if min(pil.size) < 2 * size else 2.0)
    arr = np.asarray(pil, dtype=np.uint8)
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1).copy()

"""Augmentation settings, the named presets and the per-run range overrides (no torch here: the
train config validates against these names when the CLI is built)."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

from ..config import option


@dataclass(frozen=True)
class AugmentConfig:
    flip: float = 0.5
    """Probability of a horizontal flip."""
    rotate_deg: float = 10.0
    """Maximum absolute rotation in degrees."""
    scale: float = 0.1
    """Zoom is drawn from [1 - scale, 1 + scale]."""
    shift: float = 0.1
    """Maximum shift as a fraction of the image side."""
    brightness: float = 0.2
    """Additive brightness jitter in normalised units times std (0 = off)."""
    contrast: float = 0.2
    """Multiplicative contrast jitter range [1 - c, 1 + c]."""
    erase: float = 0.5
    """Probability of erasing one random rectangle (random erasing / cutout)."""
    erase_max: float = 0.25
    """Maximum erased area as a fraction of the image."""
    gamma: float = 0.0
    """Lighting: gamma drawn log-uniformly from [1/(1+gamma), 1+gamma] (0 = off; data/degrade.py)."""
    blur: float = 0.0
    """Probability of a Gaussian blur (out of focus, or a small face scaled up)."""
    blur_sigma: float = 1.2
    """Largest blur sigma in pixels of the training image (drawn from [0.3, blur_sigma])."""
    jpeg: float = 0.0
    """Probability of a JPEG round trip."""
    jpeg_quality: float = 30.0
    """Lowest JPEG quality (drawn from [jpeg_quality, 95])."""

    def __post_init__(self):
        problems = [f"{k} must be >= 0" for k, v in asdict(self).items() if v < 0]
        problems += [f"{k} must be <= 1" for k in ("flip", "erase", "erase_max", "shift", "blur", "jpeg")
                     if getattr(self, k) > 1]
        if not 1 <= self.jpeg_quality <= 95:
            problems.append(f"jpeg_quality must be within 1-95, got {self.jpeg_quality}")
        if problems:
            raise ValueError("invalid augmentation: " + "; ".join(problems))


PRESETS: dict[str, AugmentConfig] = {
    "none": AugmentConfig(0, 0, 0, 0, 0, 0, 0, 0),
    # flip only: pair it with TrainConfig.train_crop, whose random window is the translation
    "flip": AugmentConfig(flip=0.5, rotate_deg=0, scale=0, shift=0, brightness=0, contrast=0, erase=0),
    "light": AugmentConfig(flip=0.5, rotate_deg=0, scale=0, shift=0.08, brightness=0, contrast=0, erase=0),
    "standard": AugmentConfig(),
    "strong": AugmentConfig(flip=0.5, rotate_deg=15, scale=0.15, shift=0.12, brightness=0.3, contrast=0.3,
                            erase=0.6, erase_max=0.3),
    # standard plus what cameras and codecs do to the faces `ferlab predict` sees (lighting, focus,
    # compression): for models that meet photos and webcams rather than FER2013's clean crops
    "photo": AugmentConfig(gamma=0.5, blur=0.3, blur_sigma=1.2, jpeg=0.3, jpeg_quality=30),
}


def preset(name: str) -> AugmentConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown augmentation preset {name!r}; choose one of: {', '.join(PRESETS)}") from None


# AugmentRanges fields named differently in AugmentConfig; the others keep their name.
_CONFIG_NAME = {"rotate": "rotate_deg", "zoom": "scale"}


@dataclass(frozen=True)
class AugmentRanges:
    """Ranges given for one run on top of a preset; None keeps the preset's value.

    The recipe of rotation +-30 deg, shift +-4.8 px, zoom 0.8-1.2 and flips on 48 px faces is
    `--rotate 30 --shift 0.1 --zoom 0.2 --flip 0.5`."""

    flip: float | None = option(None, "probability of a horizontal flip, 0-1 (default: the preset's)")
    rotate: float | None = option(None, "maximum rotation in degrees, drawn from [-rotate, +rotate], 0-180 "
                                        "(default: the preset's)", metavar="DEG")
    zoom: float | None = option(None, "zoom factor drawn from [1 - zoom, 1 + zoom] (0.2 = 0.8-1.2), below 1 "
                                      "(default: the preset's)")
    shift: float | None = option(None, "maximum shift as a fraction of the image side, 0-1 (0.1 = 4.8 px at 48 px; "
                                       "default: the preset's)", metavar="FRACTION")
    brightness: float | None = option(None, "additive brightness jitter in normalised units (0 = off; default: "
                                            "the preset's)")
    contrast: float | None = option(None, "contrast factor drawn from [1 - contrast, 1 + contrast] (0 = off; "
                                          "default: the preset's)")
    erase: float | None = option(None, "probability of random erasing (one rectangle blanked to the mean), 0-1 "
                                       "(default: the preset's)")
    gamma: float | None = option(None, "lighting: gamma drawn from [1/(1+g), 1+g] (0.5 = 0.67-1.5; 0 = off; "
                                       "default: the preset's)", metavar="G")
    blur: float | None = option(None, "probability of a Gaussian blur of sigma 0.3 to --blur-sigma pixels, 0-1 "
                                      "(default: the preset's)")
    blur_sigma: float | None = option(None, "largest blur sigma in pixels (default: the preset's)", metavar="PX")
    jpeg: float | None = option(None, "probability of a JPEG round trip of quality --jpeg-quality to 95, 0-1 "
                                      "(default: the preset's)")
    jpeg_quality: float | None = option(None, "lowest JPEG quality, 1-95 (default: the preset's)", metavar="Q")

    def __post_init__(self):
        problems = []
        for f in fields(self):
            v = getattr(self, f.name)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                problems.append(f"{f.name} must be a finite number, got {v!r}")
            elif v < 0:
                problems.append(f"{f.name} must be >= 0, got {v}")
            elif f.name in ("flip", "erase", "shift", "blur", "jpeg") and v > 1:
                problems.append(f"{f.name} must be <= 1, got {v}")
            elif f.name == "rotate" and v > 180:
                problems.append(f"rotate must be <= 180 degrees, got {v}")
            elif f.name == "jpeg_quality" and not 1 <= v <= 95:
                problems.append(f"jpeg_quality must be within 1-95, got {v}")
            elif f.name == "zoom" and v >= 1:
                problems.append(f"zoom must be < 1 (the smallest zoom factor 1 - zoom must stay positive), got {v}")
        if problems:
            raise ValueError("invalid augmentation ranges: " + "; ".join(problems))

    def given(self) -> dict[str, float]:
        """The ranges that were set, under their AugmentConfig names (rotate -> rotate_deg, zoom -> scale)."""
        return {_CONFIG_NAME.get(f.name, f.name): float(getattr(self, f.name)) for f in fields(self)
                if getattr(self, f.name) is not None}


def resolve(preset_name: str, ranges: AugmentRanges) -> AugmentConfig:
    """The preset `preset_name` with every range set in `ranges` replacing the preset's value."""
    return replace(preset(preset_name), **ranges.given())


def describe(cfg: AugmentConfig, size: int = 48) -> str:
    """One line of the values an AugmentConfig draws from, with the shift in pixels at `size`."""
    parts = [f"flip p={cfg.flip:g}", f"rotate +-{cfg.rotate_deg:g} deg",
             f"zoom {1 - cfg.scale:g}-{1 + cfg.scale:g}",
             f"shift +-{cfg.shift:g} of the side (+-{cfg.shift * size:.3g} px at {size} px)",
             f"brightness +-{cfg.brightness:g}", f"contrast {max(1 - cfg.contrast, 0):g}-{1 + cfg.contrast:g}",
             f"erase p={cfg.erase:g} (up to {cfg.erase_max:.0%} of the area)"]
    if cfg.gamma:
        parts.append(f"gamma {1 / (1 + cfg.gamma):.2g}-{1 + cfg.gamma:g}")
    if cfg.blur:
        parts.append(f"blur p={cfg.blur:g} (sigma 0.3-{cfg.blur_sigma:g} px)")
    if cfg.jpeg:
        parts.append(f"jpeg p={cfg.jpeg:g} (quality {cfg.jpeg_quality:g}-95)")
    return ", ".join(parts)

"""Augmentation settings and the named presets (no torch here: the train config validates
against these names when the CLI is built)."""
from __future__ import annotations

from dataclasses import asdict, dataclass


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

    def __post_init__(self):
        problems = [f"{k} must be >= 0" for k, v in asdict(self).items() if v < 0]
        problems += [f"{k} must be <= 1" for k in ("flip", "erase", "erase_max", "shift") if getattr(self, k) > 1]
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
}


def preset(name: str) -> AugmentConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown augmentation preset {name!r}; choose one of: {', '.join(PRESETS)}") from None

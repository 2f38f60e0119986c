"""Options of `ferlab augment-preview` (torch-free: the CLI is derived from them)."""
from __future__ import annotations

from dataclasses import dataclass

from ..config import option
from .augment_config import PRESETS, AugmentRanges


@dataclass(frozen=True)
class PreviewConfig:
    data: str = option("", "dataset: FER2013 CSV, a folder with train/val subfolders, or a folder of class folders")
    split: str = option("train", "split the faces are drawn from")
    size: int = option(48, "image side in pixels the faces are resized to, as in training")
    channels: int = option(1, "1 = grayscale, 3 = RGB")
    augment: str = option("standard", f"augmentation preset: {', '.join(PRESETS)}; --flip, --rotate, --zoom, "
                                      "--shift, --brightness, --contrast and --erase override its values")
    aug: AugmentRanges = option(factory=AugmentRanges, help="augmentation ranges over the preset")
    rows: int = option(8, "faces shown, one per row: one of each class first, then random others")
    copies: int = option(7, "augmented copies per face, beside the original")
    seed: int = option(0, "random seed of the faces picked and of the augmentation drawn")
    out: str = option("augment_preview.png", "the PNG file to write", metavar="FILE")

    def __post_init__(self):
        problems = []
        if not self.data:
            problems.append("give the dataset with --data")
        if self.augment not in PRESETS:
            problems.append(f"unknown augmentation preset {self.augment!r}; choose one of: {', '.join(PRESETS)}")
        if self.size < 8:
            problems.append(f"size must be >= 8, got {self.size}")
        if self.channels not in (1, 3):
            problems.append(f"channels must be 1 or 3, got {self.channels}")
        if self.rows < 1:
            problems.append(f"rows must be >= 1, got {self.rows}")
        if self.copies < 1:
            problems.append(f"copies must be >= 1, got {self.copies}")
        if problems:  # one line, as the CLI prints it after "error:"
            raise ValueError("invalid augment-preview options: " + "; ".join(problems))

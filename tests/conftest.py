"""Shared helpers: small datasets and checkpoints the tests make themselves, and a quiet thread setting."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch

if TYPE_CHECKING:
    from ferlab.preprocess import Preprocess

SHARED_FER = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "fer2013"

# Tests must not fight a benchmark or each other for the 2 cores.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FERLAB_CACHE", str(tmp_path / "cache"))


def synthetic_faces(n_per_class: int, classes: list[str], size: int = 48, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """Images a small CNN can tell apart: each class is a bright bar at its own position/angle,
    plus noise. Returns {class: [uint8 HxW arrays]}."""
    rng = np.random.default_rng(seed)
    out = {}
    for ci, c in enumerate(classes):
        imgs = []
        for _ in range(n_per_class):
            img = rng.normal(90, 25, (size, size))
            pos = int((ci + 0.5) * size / len(classes))
            if ci % 2:
                img[:, max(pos - 3, 0):pos + 3] += 120
            else:
                img[max(pos - 3, 0):pos + 3, :] += 120
            imgs.append(np.clip(img, 0, 255).astype(np.uint8))
        out[c] = imgs
    return out


def write_folder(root: Path, classes: list[str], n_per_class: int, size: int = 48, seed: int = 0,
                 mode: str = "L") -> Path:
    from PIL import Image

    for c, imgs in synthetic_faces(n_per_class, classes, size, seed).items():
        (root / c).mkdir(parents=True, exist_ok=True)
        for i, a in enumerate(imgs):
            Image.fromarray(a, "L").convert(mode).save(root / c / f"{i:04d}.png")
    return root


@pytest.fixture
def tiny_fer_dir(tmp_path) -> Path:
    """A Kaggle-layout dataset (train/ and val/ with the 7 FER2013 class folders)."""
    from ferlab.labels import FER2013_CLASSES

    root = tmp_path / "fer"
    write_folder(root / "train", list(FER2013_CLASSES), 24, seed=1)
    write_folder(root / "val", list(FER2013_CLASSES), 8, seed=2)
    return root


def save_checkpoint(path: Path, model: str = "fernet_tiny", preprocess: Preprocess | None = None, seed: int | None = 0,
                    model_obj: torch.nn.Module | None = None) -> Path:
    """Save a checkpoint of `model` with the FER2013 classes and `preprocess` (default: `Preprocess()`).

    The weights are `model_obj`'s when given (then `seed` is not used), else those of a fresh
    `create_model(model)` made after `torch.manual_seed(seed)` (no seeding when `seed` is None)."""
    from ferlab import checkpoint
    from ferlab.labels import FER2013_CLASSES
    from ferlab.models import create_model
    from ferlab.preprocess import Preprocess

    if model_obj is None:
        if seed is not None:
            torch.manual_seed(seed)
        model_obj = create_model(model)
    preprocess = Preprocess() if preprocess is None else preprocess
    return checkpoint.save(checkpoint.make_payload(model_obj, model, list(FER2013_CLASSES), preprocess), path)

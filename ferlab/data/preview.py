"""What an augmentation recipe does to faces: a grid with one face per row, the original first,
then augmented copies drawn exactly as training draws them (normalise, `augment`, denormalise).

`preview_grid` takes arrays and returns the image; `make_preview` is the job behind
`ferlab augment-preview` (load a split, pick faces, draw, save the PNG atomically)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..fileio import atomic_write
from ..preprocess import Preprocess
from .augment import augment
from .augment_config import AugmentConfig, resolve
from .degrade import degrade
from .loader import load
from .preview_config import PreviewConfig

#: Faces are magnified (nearest neighbour) to about this side in the grid.
TILE_PX = 96
GAP = 4
#: Extra space between the original column and the augmented copies.
SEPARATOR = 8
LABEL_W = 100
HEADER_H = 20
FONT_PX = 12


def tile_side(size: int) -> int:
    """Side in pixels of one face of side `size` in the grid (an integer magnification)."""
    return size * max(1, TILE_PX // size)


def tile_origin(row: int, col: int, size: int) -> tuple[int, int]:
    """(y, x) of the top-left pixel of face `row`, column `col` (0 = the original) in the grid."""
    step = tile_side(size) + GAP
    return HEADER_H + row * step, LABEL_W + col * step + (SEPARATOR if col else 0)


def grid_shape(rows: int, copies: int, size: int) -> tuple[int, int, int]:
    """(H, W, 3) of the grid `preview_grid` draws for `rows` faces of side `size`."""
    step = tile_side(size) + GAP
    return HEADER_H + rows * step, LABEL_W + (1 + copies) * step + SEPARATOR, 3


def preview_grid(images: torch.Tensor, labels: torch.Tensor, classes: list[str], pp: Preprocess,
                 aug: AugmentConfig, copies: int, seed: int) -> np.ndarray:
    """uint8 faces (N, C, S, S) -> an RGB uint8 grid (H, W, 3) of `grid_shape(N, copies, S)`: row i
    holds face i, its class name at the left, the original, then `copies` augmented versions.

    The copies go through `degrade`, `pp.normalize`, `augment(.., aug, generator)` and `pp.denormalize`, so
    brightness and erasing look as the model sees them; the same seed draws the same grid."""
    if images.dim() != 4 or images.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images (N, C, H, W), got {images.dtype} of shape {tuple(images.shape)}")
    if images.shape[1] != pp.channels:
        raise ValueError(f"images have {images.shape[1]} channel(s) but the preprocessing expects {pp.channels}")
    if len(labels) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if copies < 1:
        raise ValueError(f"copies must be >= 1, got {copies}")
    n, size = len(images), images.shape[-1]
    g = torch.Generator().manual_seed(seed)
    copied = degrade(images.repeat_interleave(copies, 0), aug, g)  # lighting, blur, JPEG: on the pixels
    drawn = pp.denormalize(augment(pp.normalize(copied), aug, g))  # (N*copies, S, S[, 3])
    originals = images.cpu().permute(0, 2, 3, 1).numpy()  # (N, S, S, C)
    grid = np.full(grid_shape(n, copies, size), 255, dtype=np.uint8)
    side = tile_side(size)
    for i in range(n):
        faces = [originals[i]] + [drawn[i * copies + k] for k in range(copies)]
        for col, face in enumerate(faces):
            y, x = tile_origin(i, col, size)
            grid[y:y + side, x:x + side] = _tile(face, side // size)
    return _write_labels(grid, [classes[int(c)] for c in labels], size)


def save_png(grid: np.ndarray, path: str | Path) -> Path:
    """Write an (H, W, 3) uint8 image as PNG, atomically (a failed write leaves any old file alone)."""
    from PIL import Image

    image = Image.fromarray(grid, "RGB")
    return atomic_write(path, lambda f: image.save(f, format="PNG"), "augmentation preview")


def pick_faces(labels: torch.Tensor, num_classes: int, rows: int, seed: int) -> torch.Tensor:
    """Indices of `rows` faces (fewer if there are fewer): a random one of each class in class
    order, then random others; deterministic for the seed."""
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    first = []
    for c in range(num_classes):
        of_class = order[labels[order] == c]
        if len(of_class):
            first.append(int(of_class[0]))
    taken = set(first)
    rest = [int(i) for i in order if int(i) not in taken]
    return torch.tensor((first + rest)[:rows], dtype=torch.int64)


@dataclass(frozen=True)
class Preview:
    path: Path
    augment: AugmentConfig
    """The resolved augmentation (preset plus the ranges given)."""
    classes: list[str]
    """The class of each row."""
    shape: tuple[int, int, int]


def make_preview(cfg: PreviewConfig) -> Preview:
    """Load `cfg.split` of `cfg.data`, draw the grid with the resolved augmentation, write it to `cfg.out`."""
    aug = resolve(cfg.augment, cfg.aug)
    data = load(cfg.data, cfg.split, size=cfg.size, channels=cfg.channels)
    pp = Preprocess(size=cfg.size, channels=cfg.channels)
    idx = pick_faces(data.labels, len(data.classes), cfg.rows, cfg.seed)
    grid = preview_grid(data.images[idx], data.labels[idx], data.classes, pp, aug, cfg.copies, cfg.seed)
    path = save_png(grid, cfg.out)
    return Preview(path, aug, [data.classes[int(c)] for c in data.labels[idx]], grid.shape)


def _tile(face: np.ndarray, k: int) -> np.ndarray:
    """(S, S) or (S, S, C) uint8 -> (S*k, S*k, 3) RGB, magnified by nearest neighbour."""
    face = face[..., None] if face.ndim == 2 else face
    face = np.repeat(face, 3, axis=2) if face.shape[2] == 1 else face
    return face.repeat(k, axis=0).repeat(k, axis=1)


def _write_labels(grid: np.ndarray, names: list[str], size: int) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    image = Image.fromarray(grid, "RGB")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=FONT_PX)
    side = tile_side(size)
    for col, title in ((0, "original"), (1, "augmented")):
        y, x = tile_origin(0, col, size)
        draw.text((x, y - FONT_PX - GAP), title, fill=(0, 0, 0), font=font)
    for row, name in enumerate(names):
        y, _ = tile_origin(row, 0, size)
        draw.text((GAP, y + (side - FONT_PX) // 2), _fit(draw, name, font), fill=(0, 0, 0), font=font)
    return np.asarray(image).copy()


def _fit(draw, name: str, font) -> str:
    """`name`, cut and ended with '...' when it is wider than the label column."""
    room = LABEL_W - 2 * GAP
    if draw.textlength(name, font=font) <= room:
        return name
    while name and draw.textlength(name + "...", font=font) > room:
        name = name[:-1]
    return name + "..."

"""Reading photos: files and in-memory images -> upright HxWx3 uint8 RGB, with a reason when not."""
from __future__ import annotations

import stat
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..preprocess import to_8bit

ImageInput = str | Path | np.ndarray | Image.Image


def pil_to_rgb(pil: Image.Image) -> np.ndarray:
    """Any PIL image -> HxWx3 uint8 RGB, through the same mode handling as training data
    (`ferlab.preprocess.to_8bit`: 16-bit/float scaled from their own range, transparency white)."""
    return np.asarray(to_8bit(pil).convert("RGB"), dtype=np.uint8)


def read_image(path: str | Path | BinaryIO) -> np.ndarray:
    """Read an image file (or binary file object) upright (EXIF orientation applied) as HxWx3 uint8 RGB.

    Raises ValueError saying why for files that are not images, truncated or corrupt, and for
    paths that are not regular files (a FIFO or a device would block or stream forever)."""
    if isinstance(path, (str, Path)):
        st = Path(path).stat()  # FileNotFoundError / PermissionError pass through as they are
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(21, "is a folder", str(path))
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("not a regular file (a FIFO, socket or device); pass an image file")
    try:
        with Image.open(path) as pil:
            pil.load()
            pil = ImageOps.exif_transpose(pil)
            return pil_to_rgb(pil)
    except UnidentifiedImageError:
        raise ValueError("not an image (format not recognised)") from None
    except (OSError, SyntaxError, Image.DecompressionBombError) as e:
        if isinstance(e, (FileNotFoundError, PermissionError, IsADirectoryError)):
            raise
        raise ValueError(f"unreadable image: {e}") from None


def as_rgb(image: np.ndarray | Image.Image) -> np.ndarray:
    """An in-memory image (HxW or HxWx{1,3,4} uint8 array, or PIL image) -> HxWx3 uint8 RGB."""
    if isinstance(image, Image.Image):
        return pil_to_rgb(image)
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image array, got {a.dtype}")
    if a.ndim == 2:
        return np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim == 3 and a.shape[2] == 1:
        return np.repeat(a, 3, axis=2)
    if a.ndim == 3 and a.shape[2] == 4:
        return pil_to_rgb(Image.fromarray(a, "RGBA"))
    if a.ndim == 3 and a.shape[2] == 3:
        return np.ascontiguousarray(a)
    raise ValueError(f"expected an HxW, HxWx3 or HxWx4 image, got shape {a.shape}")

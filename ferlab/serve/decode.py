"""Uploaded bytes -> an upright RGB array, bounded before any pixel is decoded.

The image's size comes from its header first (`Upload`): files over `max_pixels` are
refused there, so a 0.5 MB PNG of 177 Mpixels costs nothing. Large JPEGs are then decoded at a
reduced size (libjpeg's DCT scaling, Pillow's draft mode) that still leaves at least `WORK_SIDE`
pixels on the long side, and `Decoded` keeps the factor so boxes are reported in the pixels of
the full image.
"""
from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass
from io import BytesIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..predict.images import pil_to_rgb

#: JPEGs are decoded at the smallest DCT scale (1/2, 1/4, 1/8) that keeps this long side: the
#: detector looks at <= 960 px and face crops need far less, so nothing is lost to the model.
WORK_SIDE = 2048
FORMATS = "JPEG, PNG, BMP, WebP, GIF or TIFF"
#: EXIF orientations that swap width and height.
_TRANSPOSED = {5, 6, 7, 8}


class UploadError(Exception):
    """A request the server refuses, with the HTTP status and a message for the client."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


@dataclass
class Decoded:
    rgb: np.ndarray
    """HxWx3 uint8 RGB, upright (EXIF orientation applied), possibly reduced (see `scale`)."""
    width: int
    """Width of the full upright image: the pixels boxes are reported in."""
    height: int

    @property
    def scale(self) -> tuple[float, float]:
        """Full-image pixels per decoded pixel, along x and y (1.0 unless drafted)."""
        return self.width / self.rgb.shape[1], self.height / self.rgb.shape[0]


def mb(n: int) -> str:
    return f"{n / 2**20:.3g} MB"


class Upload:
    """An uploaded image opened lazily: its header is read, no pixel is decoded yet."""

    def __init__(self, name: str, data: bytes, max_bytes: int, max_pixels: int):
        """`UploadError` 400 for an empty file or one that is not an image, 413 over `max_bytes`
        or `max_pixels`."""
        if not data:
            raise UploadError(400, f"{name}: the upload is empty")
        if len(data) > max_bytes:
            raise UploadError(413, f"{name}: upload too large ({mb(len(data))}; the limit is {mb(max_bytes)})")
        try:
            self.pil = Image.open(BytesIO(data))
        except UnidentifiedImageError:
            raise UploadError(400, f"{name}: not an image (format not recognised); upload a {FORMATS} image") from None
        except Image.DecompressionBombError as e:
            raise UploadError(413, f"{name}: image too large ({e})") from None
        except (OSError, SyntaxError, ValueError) as e:
            raise UploadError(400, f"{name}: unreadable image: {e}; upload a {FORMATS} image") from None
        self.name = name
        self.width, self.height = w, h = self.pil.size
        if w * h > max_pixels:
            self.pil.close()
            raise UploadError(413, f"{name}: image too large ({w}x{h} = {w * h / 1e6:.1f} Mpixels; the limit is "
                                   f"{max_pixels / 1e6:.1f} Mpixels)")

    def plan(self) -> int:
        """Choose the decode size (draft mode for large JPEGs); returns the pixels decoding will hold."""
        w, h = self.width, self.height
        if self.pil.format == "JPEG" and max(w, h) > WORK_SIDE:
            f = WORK_SIDE / max(w, h)
            self.pil.draft(None, (math.ceil(w * f), math.ceil(h * f)))
        w, h = self.pil.size
        return w * h

    def decode(self) -> Decoded:
        """The upright RGB image (`UploadError` 400 when the data is truncated or corrupt)."""
        try:
            orientation = self.pil.getexif().get(0x0112, 1)
            self.pil.load()
            rgb = pil_to_rgb(ImageOps.exif_transpose(self.pil))
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            raise UploadError(400, f"{self.name}: unreadable image: {e}; upload a {FORMATS} image") from None
        finally:
            self.pil.close()
        w, h = (self.height, self.width) if orientation in _TRANSPOSED else (self.width, self.height)
        return Decoded(rgb, w, h)


def decode_base64(text: str) -> bytes:
    """A base64 string, or a `data:image/...;base64,` URL, as bytes; `UploadError` 400 if neither."""
    if text.startswith("data:"):
        _, _, text = text.partition(",")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise UploadError(400, "field 'image' is not valid base64 (send the file's bytes base64-encoded, "
                               "or a data: URL)") from None

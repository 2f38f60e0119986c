"""Where the server's images are recognised: a pool of `threads` threads, each with its own
Recognizer (its own face detector, which keeps per-call state; the model is shared), fed from
the event loop. Decoding happens in the pool too, and every decoded image holds pixels of one
`PixelBudget` until its request is answered, so peak memory stays bounded whatever arrives.
"""
from __future__ import annotations

import asyncio
import io
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .. import checkpoint
from ..checkpoint import Loaded
from ..predict.config import DetectorConfig
from ..predict.recognizer import FaceResult, Recognizer
from .decode import Decoded, Upload, UploadError

#: Images whose short side is under this are too thin for the face detector (it finds no face
#: under ~10 px); they get no face and a note that says so.
MIN_DETECT_SIDE = 20
#: The annotated PNG is drawn on a copy at most this many pixels on the long side.
ANNOTATED_SIDE = 1600
#: Per-request detector options are kept per thread for this many distinct settings.
_CACHED_DETECTORS = 4


@dataclass
class Recognised:
    record: dict
    """The JSON `Prediction`."""
    png: bytes | None = None
    """The annotated image, when asked for."""


class PixelBudget:
    """At most `total` decoded pixels alive at once; an image larger than `total` waits for all of them."""

    def __init__(self, total: int, timeout: float = 30.0):
        self.total, self.free, self.timeout = total, total, timeout
        self._cond = threading.Condition()

    @contextmanager
    def hold(self, pixels: int):
        pixels = min(pixels, self.total)
        with self._cond:
            if not self._cond.wait_for(lambda: self.free >= pixels, self.timeout):
                raise UploadError(503, "busy decoding other large images; retry shortly")
            self.free -= pixels
        try:
            yield
        finally:
            with self._cond:
                self.free += pixels
                self._cond.notify_all()


class Engine:
    """Recognition for the server: `await engine.recognise(name, data, options)`."""

    def __init__(self, model: str | Path | Loaded, detector: DetectorConfig, *, threads: int, max_bytes: int,
                 max_pixels: int, device: str = "auto", tta: str = "none"):
        self.loaded = model if isinstance(model, Loaded) else checkpoint.load(model)
        self.detector, self.max_bytes, self.max_pixels = detector, max_bytes, max_pixels
        self.budget = PixelBudget(max_pixels)
        self.device = device
        # made here so that a bad detector option or TTA name fails at startup; "auto" resolved once
        self.base = Recognizer(self.loaded, detector, device=device, tta=tta)
        self.tta = self.base.tta
        self.classes = self.base.classes
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="ferlab-recognise")

    def options(self, threshold: float | None = None, min_face: int | None = None,
                largest: bool | None = None) -> DetectorConfig:
        """The server's detector options with a request's overrides (`UploadError` 400 if invalid)."""
        given = {k: v for k, v in (("threshold", threshold), ("min_face", min_face), ("largest", largest))
                 if v is not None}
        try:
            return replace(self.detector, **given)
        except ValueError as e:
            raise UploadError(400, " ".join(str(e).split())) from None

    async def run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def recognise(self, name: str, data: bytes, options: DetectorConfig, annotate: bool = False) -> Recognised:
        return await self.run(self._recognise, name, data, options, annotate)

    async def ready(self) -> None:
        """One tiny inference through the pool (raises if the model cannot run)."""
        await self.run(self.base.classify_faces, [np.zeros((self.base.preprocess.size,) * 2 + (3,), np.uint8)])

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _recognizer(self, options: DetectorConfig) -> Recognizer:
        cache = getattr(self._local, "cache", None)
        if cache is None:
            cache = self._local.cache = OrderedDict()
        rec = cache.get(options)
        if rec is None:
            rec = cache[options] = Recognizer(self.loaded, options, device=self.device, tta=self.tta)
            while len(cache) > _CACHED_DETECTORS:
                cache.popitem(last=False)
        cache.move_to_end(options)
        return rec

    def _recognise(self, name: str, data: bytes, options: DetectorConfig, annotate: bool) -> Recognised:
        upload = Upload(name, data, self.max_bytes, self.max_pixels)
        with self.budget.hold(upload.plan()):
            image = upload.decode()
            rec = self._recognizer(options)
            faces = rec.predict(image.rgb, name=name).faces
            record = {"path": name, "width": image.width, "height": image.height,
                      "faces": [_full_size(f, image).to_dict() for f in faces], "error": None,
                      "note": None if faces else _why_no_face(image, rec, options)}
            png = _annotated_png(image, faces, rec.classes, record["note"]) if annotate else None
        return Recognised(record, png)


def error_record(name: str, error: UploadError) -> dict:
    return {"path": name, "width": None, "height": None, "faces": [], "error": error.detail, "note": None}


def _full_size(face: FaceResult, image: Decoded) -> FaceResult:
    sx, sy = image.scale
    if (sx, sy) == (1.0, 1.0):
        return face
    x, y, w, h = face.box
    marks = None if face.landmarks is None else [[round(a * sx, 1), round(b * sy, 1)] for a, b in face.landmarks]
    return replace(face, box=(round(x * sx), round(y * sy), round(w * sx), round(h * sy)), landmarks=marks)


def _why_no_face(image: Decoded, rec: Recognizer, options: DetectorConfig) -> str:
    h, w = image.rgb.shape[:2]
    if min(h, w) < MIN_DETECT_SIDE:
        return (f"image too thin for the face detector ({image.width}x{image.height} px; it needs at least "
                f"{MIN_DETECT_SIDE} px each way)")
    extra = f", min_face {options.min_face} px" if options.min_face else ""
    return f"no face found (detector {options.name}, threshold {options.threshold:g}{extra})"


def _annotated_png(image: Decoded, faces: list[FaceResult], classes: list[str], note: str | None) -> bytes:
    import cv2
    from PIL import Image

    from ..predict.annotate import draw_legend

    rgb = image.rgb
    f = min(1.0, ANNOTATED_SIDE / max(rgb.shape[:2]))
    if f < 1.0:
        rgb = cv2.resize(rgb, (max(1, round(rgb.shape[1] * f)), max(1, round(rgb.shape[0] * f))),
                         interpolation=cv2.INTER_AREA)
    boxes = [tuple(v * f for v in face.box) for face in faces]
    img = draw_legend(rgb, boxes, [face.probs for face in faces], classes, note=note)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG", compress_level=3)
    return buf.getvalue()

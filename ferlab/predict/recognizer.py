"""The Recognizer: photos (files, arrays) -> faces -> expression probabilities.

Each image goes: read (EXIF orientation applied, any colour mode -> RGB uint8) -> detect (see
`detect`) -> align (eyes level, square box enlarged by the checkpoint's crop margin, cut from the
full-resolution image) -> the checkpoint's own preprocessing -> a classifier backend -> softmax.
Inputs at most twice the model's input side (e.g. FER2013's 48x48 crops) are taken as
already-cropped faces and skip detection.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from .. import checkpoint
from ..checkpoint import Loaded
from ..devices import keep_freed_memory
from ..evaluate.tta import tta_views
from .backends import TorchClassifier, onnx_classifier
from .config import BACKENDS, PREDICT_TTA, DetectorConfig, PredictTTA
from .detect import Detector, Face, align_crop, make_detector
from .images import ImageInput, as_rgb, read_image


@dataclass
class FaceResult:
    """One face: where it is and what the model thinks of it."""

    box: tuple[int, int, int, int]
    """x, y, width, height in the original (EXIF-upright) image's pixels."""
    score: float
    """Detector confidence (1.0 when the whole image was taken as the face)."""
    landmarks: list[list[float]] | None
    """Five [x, y] points (eyes, nose, mouth corners) in original pixels, or None."""
    label: str
    """The most probable class."""
    probs: dict[str, float]
    """Probability of every class, in the checkpoint's class order."""

    def to_dict(self) -> dict:
        return {"box": list(self.box), "score": round(self.score, 4), "landmarks": self.landmarks,
                "label": self.label, "probs": {k: round(v, 5) for k, v in self.probs.items()}}


@dataclass
class ImageResult:
    """Everything found in one image; `faces` is empty (not an error) when there is no face."""

    path: str | None
    faces: list[FaceResult] = field(default_factory=list)
    error: str | None = None
    """None, or why the image could not be processed."""

    def to_dict(self) -> dict:
        return {"path": self.path, "faces": [f.to_dict() for f in self.faces], "error": self.error}


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


class Recognizer:
    """Faces and their expression probabilities from photos, with everything rebuilt from one checkpoint.

    model: None or "default" (the bundled model), a checkpoint file or run directory, a `Loaded`,
    or (with backend="onnx") a `.onnx` file written by `ferlab export`, which carries its own
    classes and preprocessing.
    detector: a `DetectorConfig`, a detector name (one of `DETECTORS`, default options) or a `Detector`.
    backend: "torch", or "onnx" (onnxruntime on `onnx_path`, or on a fresh export in a temp dir).
    align: rotate crops so the eyes are level when the detector gives landmarks.
    small_side: images whose long side is at most this are taken as face crops without detection
    (default: twice the model's input side).
    amp: mixed precision for the PyTorch backend (bfloat16 on CPUs: faster on AMX, logits less exact).
    device: where the PyTorch backend runs ('auto', 'cpu', 'cuda', 'cuda:N', 'mps'); faces of a
    batch are classified together there.
    tta: "none", "flip" (the crop and its mirror: 2x the classifier's work) or "flip_shift" (also
    1-pixel-per-16 shifts: 10x), the views `ferlab evaluate --tta` averages; "auto" takes the
    checkpoint's recorded TTA ("none" for ONNX files, which record none).
    """

    def __init__(self, model: str | Path | Loaded | None = None,
                 detector: DetectorConfig | str | Detector = "yunet", backend: Literal["torch", "onnx"] = "torch", *,
                 align: bool = True, small_side: int | None = None, batch_size: int = 64,
                 onnx_path: str | Path | None = None, amp: bool = False, device: str = "auto",
                 tta: PredictTTA = "none"):
        keep_freed_memory()
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
        if tta not in PREDICT_TTA:
            raise ValueError(f"unknown tta {tta!r}; choose one of: {', '.join(PREDICT_TTA)}")
        self.backend = backend
        self.loaded: Loaded | None = None
        if isinstance(model, (str, Path)) and str(model).lower().endswith(".onnx"):
            if backend != "onnx":
                raise ValueError(f"{model} is an ONNX file; use backend='onnx' (--backend onnx) or pass a checkpoint")
            self.classifier = onnx_classifier(model)
            self.classes, self.preprocess = self.classifier.classes, self.classifier.preprocess
            self.temperature = self.classifier.temperature
        else:
            self.loaded = model if isinstance(model, Loaded) else checkpoint.load(model or checkpoint.DEFAULT_NAME)
            self.classes, self.preprocess = list(self.loaded.classes), self.loaded.preprocess
            self.temperature = self.loaded.temperature  # the checkpoint's calibration, for every backend
            if backend == "torch":
                self.classifier = TorchClassifier(self.loaded.model, amp=amp, device=device)
            else:
                if onnx_path is None:
                    from ..export.onnx import export_onnx

                    self._tmpdir = tempfile.TemporaryDirectory(prefix="ferlab-onnx-")
                    onnx_path = export_onnx(self.loaded, Path(self._tmpdir.name) / "model.onnx")
                self.classifier = onnx_classifier(onnx_path)
                if self.classifier.classes != self.classes or self.classifier.preprocess != self.preprocess:
                    raise ValueError(f"{onnx_path} was not exported from this checkpoint (its classes or "
                                     "preprocessing differ); export it again with `ferlab export`")
        if tta == "auto":  # the checkpoint's own; ten_crop is for networks trained on 40 px crops
            recorded = self.loaded.meta.get("config", {}).get("tta", "none") if self.loaded else "none"
            tta = recorded if recorded in PREDICT_TTA else "none"
        self.tta = tta
        self.detector = detector if isinstance(detector, Detector) else make_detector(detector)
        self.align = align
        self.small_side = 2 * self.preprocess.size if small_side is None else small_side
        self.batch_size = batch_size

    # -- faces ---------------------------------------------------------------------------------

    def find_faces(self, rgb: np.ndarray) -> tuple[list[Face], list[np.ndarray]]:
        """Detected faces of an RGB image and their aligned crops (full resolution)."""
        h, w = rgb.shape[:2]
        if self.detector.whole_image or max(h, w) <= self.small_side:
            return [Face((0.0, 0.0, float(w), float(h)), 1.0, None)], [rgb]
        faces = self.detector.detect(rgb)
        return faces, [align_crop(rgb, f, self.preprocess.crop_margin, self.align) for f in faces]

    def classify_faces(self, crops: list[np.ndarray] | np.ndarray) -> np.ndarray:
        """Class probabilities (N, K), in `self.classes` order, of uint8 face crops (already cut out)."""
        x = self.preprocess.model_input(crops)
        t = self.temperature
        out = [softmax(self._logits(x[i:i + self.batch_size]) / t) for i in range(0, len(x), self.batch_size)]
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)), np.float32)

    def _logits(self, x: torch.Tensor) -> np.ndarray:
        """The classifier's logits of a normalised batch, averaged over the TTA views."""
        if self.tta == "none":
            return self.classifier(x.numpy())
        views = tta_views(x, self.tta)
        return np.mean([self.classifier(v.contiguous().numpy()) for v in views], axis=0)

    # -- images --------------------------------------------------------------------------------

    def predict(self, image: ImageInput, name: str | None = None) -> ImageResult:
        """Faces and probabilities of one image (file path, array or PIL image).

        Files that cannot be read give an `ImageResult` whose `error` says why."""
        return self.predict_batch([image], None if name is None else [name])[0]

    def predict_batch(self, images: list[ImageInput], names: list[str | None] | None = None) -> list[ImageResult]:
        """`predict` for several images, classifying all their faces in shared batches."""
        names = list(names) if names is not None else [None] * len(images)
        if len(names) != len(images):
            raise ValueError(f"got {len(images)} images but {len(names)} names")
        results, found, crops = [], [], []
        for image, name in zip(images, names):
            result = ImageResult(name if name is not None else _name_of(image))
            faces, face_crops = [], []
            try:
                rgb = read_image(image) if isinstance(image, (str, Path)) else as_rgb(image)
            except (ValueError, OSError) as e:
                if not isinstance(image, (str, Path)):
                    raise
                result.error = str(e) if isinstance(e, ValueError) else f"cannot read file: {e.strerror or e}"
            else:
                try:
                    faces, face_crops = self.find_faces(rgb)
                except Exception as e:  # one bad image must not cost the other results of the batch
                    if not isinstance(image, (str, Path)):
                        raise
                    result.error = f"face detection failed ({type(e).__name__}: {e})"
            results.append(result)
            found.append(faces)
            crops.extend(face_crops)
        probs = iter(self.classify_faces(crops))
        for result, faces in zip(results, found):
            result.faces = [self._face_result(f, next(probs)) for f in faces]
        return results

    def _face_result(self, face: Face, p: np.ndarray) -> FaceResult:
        x, y, w, h = face.box
        box = (round(x), round(y), round(w), round(h))
        marks = (None if face.landmarks is None
                 else [[round(float(a), 1), round(float(b), 1)] for a, b in face.landmarks])
        probs = {c: float(v) for c, v in zip(self.classes, p)}
        return FaceResult(box, float(face.score), marks, self.classes[int(np.argmax(p))], probs)


def _name_of(image: ImageInput) -> str | None:
    return str(image) if isinstance(image, (str, Path)) else None

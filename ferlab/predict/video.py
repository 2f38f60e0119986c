"""Videos and webcams: streaming decode, faces tracked across frames, probabilities smoothed in time.

Frames are decoded one at a time with `cv2.VideoCapture` (memory stays bounded whatever the
video's length); every `stride`-th frame goes through the Recognizer. Faces are linked to tracks
by greedy IoU matching, and each track's probabilities are an exponential moving average, so a
label does not flicker from frame to frame. Outputs: a CSV with one row per face per processed
frame, a summary JSON per video, and optionally the annotated video (mp4v).
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from tqdm import tqdm

from ..fileio import write_json
from .annotate import draw_faces
from .detect import iou

if TYPE_CHECKING:
    from .recognizer import FaceResult, Recognizer

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")


@dataclass
class Track:
    """One face followed across frames."""

    id: int
    box: tuple[int, int, int, int]
    probs: np.ndarray
    """Smoothed probabilities (K,)."""
    first_frame: int
    last_frame: int
    frames: int = 1
    prob_sum: np.ndarray | None = None
    score_sum: float = 0.0
    label_counts: dict[str, int] = field(default_factory=dict)
    missed: int = 0


class IoUTracker:
    """Greedy IoU matching of detections to live tracks, with exponential smoothing of probabilities.

    smoothing: weight of a track's history in [0, 1): smoothed = s * previous + (1 - s) * current.
    max_missed: processed frames a track may go unmatched before it is closed.
    """

    def __init__(self, classes: list[str], iou_threshold: float = 0.3, smoothing: float = 0.6, max_missed: int = 5):
        if not 0 <= smoothing < 1:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        self.classes, self.iou_threshold = classes, iou_threshold
        self.smoothing, self.max_missed = smoothing, max_missed
        self.live: list[Track] = []
        self.closed: list[Track] = []
        self._next = 1

    def update(self, frame: int, faces: list[FaceResult]) -> list[Track]:
        """Assign this frame's faces to tracks; returns the track of each face, in order."""
        pairs = sorted(((iou(f.box, t.box), i, j) for i, f in enumerate(faces) for j, t in enumerate(self.live)),
                       reverse=True)
        assigned: dict[int, Track] = {}
        taken: set[int] = set()
        for overlap, i, j in pairs:
            if overlap < self.iou_threshold:
                break
            if i in assigned or j in taken:
                continue
            assigned[i] = self.live[j]
            taken.add(j)
        for j, t in enumerate(self.live):
            if j not in taken:
                t.missed += 1
        out = []
        for i, f in enumerate(faces):
            p = np.array([f.probs[c] for c in self.classes], np.float64)
            t = assigned.get(i)
            if t is None:
                t = Track(self._next, f.box, p, frame, frame, prob_sum=np.zeros_like(p))
                self._next += 1
                self.live.append(t)
            else:
                t.probs = self.smoothing * t.probs + (1 - self.smoothing) * p
                t.box, t.last_frame, t.missed = f.box, frame, 0
                t.frames += 1
            t.prob_sum += p
            t.score_sum += f.score
            label = self.classes[int(np.argmax(t.probs))]
            t.label_counts[label] = t.label_counts.get(label, 0) + 1
            out.append(t)
        self.closed += [t for t in self.live if t.missed > self.max_missed]
        self.live = [t for t in self.live if t.missed <= self.max_missed]
        return out

    def all_tracks(self) -> list[Track]:
        return sorted(self.closed + self.live, key=lambda t: t.id)


@dataclass
class VideoResult:
    """What `process_video` did, and the files it wrote."""

    path: str
    fps: float = 0.0
    frames: int = 0
    frames_processed: int = 0
    tracks: list[dict] = field(default_factory=list)
    csv: str | None = None
    summary: str | None = None
    annotated: str | None = None
    error: str | None = None


def open_capture(source: str | Path | int) -> cv2.VideoCapture:
    """A VideoCapture on a file or a camera index; raises saying what is wrong when it cannot open."""
    cap = cv2.VideoCapture(source if isinstance(source, int) else str(source))
    if not cap.isOpened():
        cap.release()
        if isinstance(source, int):
            raise RuntimeError(f"no camera at index {source} (cv2.VideoCapture could not open it); "
                               "check that a webcam is connected and not in use, or try another --webcam index")
        raise ValueError("cannot open as a video (not a video, unsupported codec, or corrupt)")
    return cap


def process_video(recognizer: Recognizer, source: str | Path | int, out_dir: str | Path, *, stride: int = 1,
                  smoothing: float = 0.6, iou_threshold: float = 0.3, max_frames: int | None = None,
                  write_video: bool = True, name: str | None = None, progress: bool = True) -> VideoResult:
    """Run the recognizer over a video file or camera, writing `<name>_frames.csv`,
    `<name>_summary.json` and (if `write_video`) `<name>_annotated.mp4` into `out_dir`.

    A file that cannot be opened gives a result with `error` set; a missing camera raises.
    Camera capture runs until `max_frames` or Ctrl-C."""
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    label = str(source) if not isinstance(source, int) else f"webcam:{source}"
    name = name or (Path(source).stem if not isinstance(source, int) else f"webcam{source}")
    try:
        cap = open_capture(source)
    except ValueError as e:
        return VideoResult(label, error=str(e))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fps = cap.get(cv2.CAP_PROP_FPS)
    fps = fps if fps and math.isfinite(fps) and fps > 0 else 30.0
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if not isinstance(source, int) else 0
    result = VideoResult(label, fps=fps, csv=str(out_dir / f"{name}_frames.csv"),
                         summary=str(out_dir / f"{name}_summary.json"))
    classes = recognizer.classes
    tracker = IoUTracker(classes, iou_threshold, smoothing)
    writer = None
    shown: tuple[list, list, list] = ([], [], [])
    bar = tqdm(total=min(total, max_frames or total) or None, unit="frame", desc=name, disable=not progress)
    index = -1
    try:
        with open(result.csv, "w", newline="") as fh:
            rows = csv.writer(fh)
            rows.writerow(["frame", "time_s", "track", "x", "y", "w", "h", "score", "label", *classes, "raw_label"])
            while max_frames is None or index + 1 < max_frames:
                ok, bgr = cap.read()
                if not ok:
                    break
                index += 1
                bar.update(1)
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                if index % stride == 0:
                    faces = recognizer.predict(rgb).faces
                    tracks = tracker.update(index, faces)
                    result.frames_processed += 1
                    shown = ([f.box for f in faces], [dict(zip(classes, t.probs.tolist())) for t in tracks],
                             [f"#{t.id} {classes[int(np.argmax(t.probs))]} {t.probs.max():.0%}" for t in tracks])
                    for f, t in zip(faces, tracks):
                        rows.writerow([index, f"{index / fps:.3f}", t.id, *f.box, f"{f.score:.4f}",
                                       classes[int(np.argmax(t.probs))], *(f"{v:.5f}" for v in t.probs), f.label])
                if write_video:
                    if writer is None:
                        result.annotated = str(out_dir / f"{name}_annotated.mp4")
                        writer = _writer(result.annotated, fps, rgb.shape[1], rgb.shape[0])
                    frame = draw_faces(rgb, shown[0], shown[1], classes, titles=shown[2])
                    writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    except KeyboardInterrupt:
        if not isinstance(source, int):
            raise
    finally:
        bar.close()
        cap.release()
        if writer is not None:
            writer.release()
    result.frames = index + 1
    result.tracks = [_track_summary(t, classes, fps) for t in tracker.all_tracks()]
    _write_summary(result, stride, smoothing, classes)
    return result


def _writer(path: str, fps: float, w: int, h: int) -> cv2.VideoWriter:
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"cannot write the annotated video {path} (OpenCV has no mp4v encoder here?)")
    return writer


def _track_summary(t: Track, classes: list[str], fps: float) -> dict:
    mean = t.prob_sum / t.frames
    return {"id": t.id, "first_frame": t.first_frame, "last_frame": t.last_frame,
            "first_time_s": round(t.first_frame / fps, 3), "last_time_s": round(t.last_frame / fps, 3),
            "frames": t.frames, "box": list(t.box), "mean_score": round(t.score_sum / t.frames, 4),
            "label": classes[int(np.argmax(mean))],
            "mean_probs": {c: round(float(v), 5) for c, v in zip(classes, mean)},
            "label_share": {c: round(n / t.frames, 4) for c, n in sorted(t.label_counts.items())}}


def _write_summary(result: VideoResult, stride: int, smoothing: float, classes: list[str]) -> None:
    summary = {"path": result.path, "fps": result.fps, "frames": result.frames,
               "frames_processed": result.frames_processed, "stride": stride, "smoothing": smoothing,
               "classes": classes, "tracks": result.tracks, "frames_csv": result.csv,
               "annotated_video": result.annotated}
    write_json(result.summary, summary, "video summary")

"""End-to-end speed on a CPU: a photo in, its faces and expression probabilities out; videos in frames/s.

Issue 4's targets: a one-face 640x480 photo end to end in <= 25 ms, video at >= 30 frames/s, in
PyTorch and in ONNX Runtime. Unlike `ferlab.bench_infer`, which times the classifier alone, this
times what a user waits for: `Recognizer.predict` (read, detect, align, preprocess, classify) on
test photos built from public-domain images that installed packages ship, and
`ferlab.video.process_video` (decode, detect, track, classify, write the outputs) on a generated
video. Detection and decoding run in OpenCV, so `threads` sets OpenCV's, PyTorch's and ONNX
Runtime's thread counts alike.
"""
from __future__ import annotations

import contextlib
import functools
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

import cv2
import numpy as np
import torch
from PIL import Image

from ..fileio import write_json
from .kit import busy_warnings, load_model, machine, time_calls, versions
from ..checkpoint import Loaded
from ..predict.detect import align_crop
from ..export.onnx import OnnxClassifier, export_onnx
from ..predict.config import BACKENDS, DetectorConfig
from ..predict.images import read_image
from ..predict.recognizer import Recognizer, softmax
from ..predict.video import open_capture, process_video

WIDTH, HEIGHT = 640, 480
TARGET_PHOTO_MS = 25.0
TARGET_VIDEO_FPS = 30.0
#: How many faces each test photo holds (the collage tiles six face crops).
EXPECTED_FACES = {"one_face": 1, "several_faces": 6, "no_face": 0}
WARMUP_CALLS = 3
BACKGROUND = 128  # neutral grey around letterboxed photos, collage tiles and the moving face
# Square crops (y0, y1, x0, x1) around the face of each sample image, about twice YuNet's box.
ASTRONAUT_FACE = (20, 220, 123, 323)
HOPPER_FACE = (57, 397, 98, 438)


def sample_photos() -> dict[str, np.ndarray]:
    """The three 640x480 RGB test photos, by name: `one_face` (scikit-image's astronaut,
    letterboxed), `several_faces` (a collage of six face crops of the astronaut and of matplotlib's
    Grace Hopper, 96 to 200 px wide) and `no_face` (scikit-image's coffee cup, letterboxed)."""
    from skimage import data

    astronaut, hopper = data.astronaut(), _grace_hopper()
    collage = np.full((HEIGHT, WIDTH, 3), BACKGROUND, np.uint8)
    tiles = [(astronaut, ASTRONAUT_FACE, 200), (hopper, HOPPER_FACE, 150), (astronaut, ASTRONAUT_FACE, 110),
             (hopper, HOPPER_FACE, 180), (astronaut, ASTRONAUT_FACE, 130), (hopper, HOPPER_FACE, 96)]
    cell_w, cell_h = WIDTH // 3, HEIGHT // 2
    for k, (img, box, side) in enumerate(tiles):
        row, col = divmod(k, 3)
        top, left = row * cell_h + (cell_h - side) // 2, col * cell_w + (cell_w - side) // 2
        collage[top:top + side, left:left + side] = _face_tile(img, box, side)
    return {"one_face": _letterbox(astronaut), "several_faces": collage, "no_face": _letterbox(data.coffee())}


def bench_photo(model: str | Path = "default", detector: DetectorConfig | str = "yunet", backends: Sequence[str] = BACKENDS, *,
                threads: int = 2, seconds: float = 2.0, out: str | Path | None = None, device: str = "cpu") -> dict:
    """Latency of `Recognizer.predict` on each test photo (see `sample_photos`), from an in-memory RGB
    array and from a JPEG file (decoding included), for each backend; plus the one-face photo's
    stages (decode, detect, align + preprocess, classify), so a missed target says where the time goes.

    `model` is a checkpoint ref ('default', a .pt file, a run directory) or a registered model name
    (random weights: speed does not depend on them). Each measurement runs for about `seconds`
    after a warm-up. The faces found in each photo are recorded beside the expected count, and a
    mismatch is listed in `warnings`. `within_target` compares the one-face photo's median from a
    JPEG file (the true end to end) with `TARGET_PHOTO_MS`. The result, with the load average before
    and after, the thread counts and versions, is written as JSON to `out` when given, and returned.
    """
    _check(backends, threads)
    if seconds <= 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    loaded = load_model(str(model))
    photos = sample_photos()
    with _threads(threads), tempfile.TemporaryDirectory(prefix="ferlab-bench-") as tmp:
        jpegs = {name: Path(tmp) / f"{name}.jpg" for name in photos}
        for name, rgb in photos.items():
            Image.fromarray(rgb).save(jpegs[name], quality=95)
        jpeg_bytes = {name: p.stat().st_size for name, p in jpegs.items()}
        load_before = list(os.getloadavg())
        per_backend, stages, warnings = {}, None, []
        for backend, rec in _recognizers(loaded, detector, backends, threads, Path(tmp), device):
            entry = {}
            for name, rgb in photos.items():
                entry[name] = {"expected_faces": EXPECTED_FACES[name]}
                for kind, image in (("array", rgb), ("jpeg", jpegs[name])):
                    found = len(rec.predict(image).faces)
                    entry[name][kind] = {"faces": found, **_latency(functools.partial(rec.predict, image), seconds)}
                    if found != EXPECTED_FACES[name]:
                        warnings.append(f"{backend}: found {found} faces in the {name} photo ({kind}), "
                                        f"expected {EXPECTED_FACES[name]}")
            if stages is None:  # reading, detecting and cropping do not depend on the backend
                stages = _stages(rec, jpegs["one_face"], photos["one_face"], seconds)
            faces, crops = rec.find_faces(photos["one_face"])
            x = rec.preprocess.model_input(crops[:1]).numpy()  # (1, C, S, S)
            per_backend[backend] = {
                "one_face_array_ms": entry["one_face"]["array"]["latency_ms_p50"],
                "one_face_jpeg_ms": entry["one_face"]["jpeg"]["latency_ms_p50"],
                "within_target": entry["one_face"]["jpeg"]["latency_ms_p50"] <= TARGET_PHOTO_MS,
                "classify_one_face": _latency(lambda: softmax(rec.classifier(x)), seconds) if faces else None,
                "photos": entry}
        settings = _settings(threads, backends, load_before, list(os.getloadavg()), warnings)
    report = {
        "what": "Recognizer.predict end to end on 640x480 photos, from an RGB array and from a JPEG file "
                "(decoding included)",
        "model": loaded.model_name, "model_ref": str(model), "detector": _detector_name(detector),
        "target_ms": TARGET_PHOTO_MS, "photo_size": [WIDTH, HEIGHT], "jpeg_bytes": jpeg_bytes,
        "seconds_per_measurement": seconds, **settings, "one_face_stages": stages, "backends": per_backend,
    }
    if out is not None:
        write_json(out, report)
    return report


def make_test_video(path: str | Path, frames: int = 150, fps: float = 30.0) -> Path:
    """Write a 640x480 mp4v video of the astronaut's face (180 px) gliding over a grey background,
    one loop every 150 frames (at most ~11 px per frame, so a tracker can follow it)."""
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    from skimage import data

    face, side = _face_tile(data.astronaut(), ASTRONAUT_FACE, 180), 180
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (WIDTH, HEIGHT))
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {path}: OpenCV has no mp4v encoder here")
    bgr_face = cv2.cvtColor(face, cv2.COLOR_RGB2BGR)
    try:
        for i in range(frames):
            t = 2 * np.pi * i / 150  # a Lissajous path
            left = round((WIDTH - side) / 2 * (1 + 0.9 * np.sin(t)))
            top = round((HEIGHT - side) / 2 * (1 + 0.9 * np.sin(2 * t)))
            frame = np.full((HEIGHT, WIDTH, 3), BACKGROUND, np.uint8)
            frame[top:top + side, left:left + side] = bgr_face
            writer.write(frame)
    finally:
        writer.release()
    return path


def bench_video(model: str | Path = "default", detector: DetectorConfig | str = "yunet", backends: Sequence[str] = BACKENDS, *,
                threads: int = 2, frames: int = 150, repeats: int = 3, video: str | Path | None = None,
                out: str | Path | None = None, device: str = "cpu") -> dict:
    """Frames/s of `process_video` (stride 1) end to end: decoding, detection, tracking,
    classification and writing the frame CSV and summary, with and without the annotated video.

    The video is `video`, or a generated `frames`-frame 640x480 clip of one moving face (see
    `make_test_video`), whose track and per-frame detections are then checked (mismatches go to
    `warnings`). Each setting is run `repeats` times after a short warm-up; the median frames/s with
    the annotated video (what `ferlab predict clip.mp4` writes) is the headline, compared with
    `TARGET_VIDEO_FPS` in `within_target`. Decoding alone is timed too, as the ceiling. Written as
    JSON to `out` when given, and returned.
    """
    _check(backends, threads)
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    loaded = load_model(str(model))
    with _threads(threads), tempfile.TemporaryDirectory(prefix="ferlab-bench-") as tmp:
        src = Path(video) if video is not None else make_test_video(Path(tmp) / "moving_face.mp4", frames)
        load_before = list(os.getloadavg())
        decode_fps = _decode_fps(src)
        per_backend, warnings = {}, []
        for backend, rec in _recognizers(loaded, detector, backends, threads, Path(tmp), device):
            process_video(rec, src, Path(tmp) / "warmup", max_frames=WARMUP_CALLS, progress=False)
            entry = {}
            for setting, write_video in (("annotated_video", True), ("csv_only", False)):
                fps_runs = []
                for r in range(repeats):
                    start = time.perf_counter()
                    v = process_video(rec, src, Path(tmp) / "out", stride=1, write_video=write_video,
                                      progress=False, name=f"{backend}_{setting}_{r}")
                    elapsed = time.perf_counter() - start
                    if v.error is not None:
                        raise ValueError(f"{src}: {v.error}")
                    fps_runs.append(v.frames / elapsed)
                detections = sum(t["frames"] for t in v.tracks)
                entry[setting] = {"fps": round(statistics.median(fps_runs), 2),
                                  "fps_runs": [round(f, 2) for f in fps_runs], "frames": v.frames,
                                  "frames_processed": v.frames_processed, "tracks": len(v.tracks),
                                  "face_detections": detections}
                if video is None and (len(v.tracks) != 1 or detections != v.frames):
                    warnings.append(f"{backend}, {setting}: {len(v.tracks)} tracks and {detections} face "
                                    f"detections in {v.frames} frames of one moving face (expected 1 and {v.frames})")
            per_backend[backend] = {"fps": entry["annotated_video"]["fps"],
                                    "within_target": entry["annotated_video"]["fps"] >= TARGET_VIDEO_FPS, **entry}
        settings = _settings(threads, backends, load_before, list(os.getloadavg()), warnings)
    report = {
        "what": "ferlab.video.process_video end to end at stride 1: decode, detect, track, classify, write the "
                "frame CSV and summary, and (annotated_video) the annotated mp4",
        "model": loaded.model_name, "model_ref": str(model), "detector": _detector_name(detector),
        "target_fps": TARGET_VIDEO_FPS, "video": str(video) if video is not None else
        f"generated: {frames} frames {WIDTH}x{HEIGHT} mp4v, one moving face",
        "repeats": repeats, "decode_only_fps": round(decode_fps, 2),
        **settings, "backends": per_backend,
    }
    if out is not None:
        write_json(out, report)
    return report


# ---------------------------------------------------------------------------------------------


def _check(backends: Sequence[str], threads: int) -> None:
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown or not backends:
        raise ValueError(f"unknown or no backend(s) {list(backends)}; choose from: {', '.join(BACKENDS)}")
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    prev_torch, prev_cv2 = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(n)
    cv2.setNumThreads(n)
    try:
        yield
    finally:
        torch.set_num_threads(prev_torch)
        cv2.setNumThreads(prev_cv2)


def _recognizers(loaded: Loaded, detector: DetectorConfig | str, backends: Sequence[str], threads: int,
                 tmp: Path, device: str = "cpu") -> Iterator[tuple[str, Recognizer]]:
    for backend in backends:
        if backend == "torch":
            yield backend, Recognizer(loaded, detector, "torch", device=device)
        elif backend == "onnx":
            path = export_onnx(loaded, tmp / "model.onnx")
            rec = Recognizer(loaded, detector, "onnx", onnx_path=path)
            # The Recognizer opens its session with the default thread count; time the one asked for.
            rec.classifier = OnnxClassifier(path, threads=threads)
            yield backend, rec
        else:
            raise ValueError(f"unknown backend {backend!r}; choose from: {', '.join(BACKENDS)}")


def _latency(fn: Callable, seconds: float) -> dict:
    t = time_calls(fn, seconds, WARMUP_CALLS) * 1e3
    return {"latency_ms_p50": round(float(np.median(t)), 3), "latency_ms_p90": round(float(np.percentile(t, 90)), 3),
            "calls": len(t)}


def _stages(rec: Recognizer, jpeg: Path, rgb: np.ndarray, seconds: float) -> dict:
    """Median ms of each step `predict` takes on the one-face photo, apart from classification."""
    faces = rec.detector.detect(rgb)
    out = {"decode_jpeg": _latency(lambda: read_image(jpeg), seconds),
           "detect": _latency(lambda: rec.detector.detect(rgb), seconds)}
    if faces:
        out["align_preprocess"] = _latency(
            lambda: rec.preprocess.model_input([align_crop(rgb, faces[0], rec.preprocess.crop_margin, rec.align)]), seconds)
    return out


def _decode_fps(src: Path) -> float:
    cap = open_capture(src)
    n, start = 0, time.perf_counter()
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)  # process_video converts every frame too
            n += 1
    finally:
        cap.release()
    return n / (time.perf_counter() - start)


def _settings(threads: int, backends: Sequence[str], load_before: list[float], load_after: list[float],
              warnings: list[str]) -> dict:
    return {"threads": threads, "torch_threads": torch.get_num_threads(), "opencv_threads": cv2.getNumThreads(),
            "onnx_intra_op_threads": threads, "backends_run": list(backends),
            "load_avg_before": load_before, "load_avg_after": load_after,
            "warnings": busy_warnings(load_before, load_after, threads) + warnings,
            "machine": machine(), "versions": {**versions(), "opencv": cv2.__version__}}


def _grace_hopper() -> np.ndarray:
    from matplotlib import cbook

    return read_image(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def _face_tile(img: np.ndarray, box: tuple[int, int, int, int], side: int) -> np.ndarray:
    y0, y1, x0, x1 = box
    return cv2.resize(img[y0:y1, x0:x1], (side, side), interpolation=cv2.INTER_AREA)


def _letterbox(rgb: np.ndarray) -> np.ndarray:
    """`rgb` scaled to fit WIDTH x HEIGHT, centred on grey."""
    h, w = rgb.shape[:2]
    scale = min(WIDTH / w, HEIGHT / h)
    nw, nh = round(w * scale), round(h * scale)
    canvas = np.full((HEIGHT, WIDTH, 3), BACKGROUND, np.uint8)
    top, left = (HEIGHT - nh) // 2, (WIDTH - nw) // 2
    canvas[top:top + nh, left:left + nw] = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA)
    return canvas


def _detector_name(detector: DetectorConfig | str) -> str:
    return detector if isinstance(detector, str) else detector.name

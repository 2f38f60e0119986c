"""The `ferlab predict` job: files, folders, videos, webcam, demo -> annotated images, JSON, CSV.

Records are written as they are produced (`outputs`), and a file that fails for any reason
becomes that file's error record while the batch goes on.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..fileio import printable, unique_name
from ..labels import canonical
from .annotate import draw_faces
from .config import PredictConfig
from .images import as_rgb, read_image
from .outputs import FaceCsv, JsonRecords, LabelledCsv
from .recognizer import ImageResult, Recognizer
from .video import VIDEO_SUFFIXES, process_video


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
    warnings: list[str] = field(default_factory=list)
    """Problems that did not stop the job (an annotated image that could not be saved)."""

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.labelled if self.labelled else None

    @property
    def exit_code(self) -> int:
        """1 when no input could be used at all (every one an error), else 0."""
        return 1 if self.records and self.errors == len(self.records) else 0


@dataclass
class _Item:
    name: str
    source: Path | np.ndarray
    root: Path | None = None
    truth: str | None = None


def gather(inputs: tuple[str, ...] | list[str]) -> list[tuple[Path, Path | None]]:
    """(file, the folder given on the command line or None) for each input; folders are walked
    recursively in sorted order, skipping hidden files and anything that is not a regular file.
    Missing paths are kept (they become errors)."""
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
    from skimage import data

    hopper = Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    return [_Item("skimage.data.astronaut", data.astronaut()), _Item(str(hopper), hopper),
            _Item("skimage.data.chelsea", data.chelsea())]


def run(config: PredictConfig) -> PredictReport:
    """Predict on every input of `config`, writing the annotated images, JSON and CSV files it asks for."""
    out = Path(config.out) if config.out else (Path("ferlab-demo") if config.demo else None)
    recognizer = Recognizer(config.model, config.detector, config.backend, onnx_path=config.onnx, amp=config.amp,
                            device=config.device, tta=config.tta)
    items = demo_items() if config.demo else []
    for f, root in gather(config.inputs):
        truth = None
        if root is not None:
            parts = f.relative_to(root).parts
            if len(parts) >= 2 and canonical(parts[0]) in recognizer.classes:
                truth = canonical(parts[0])
        items.append(_Item(printable(f), f, root, truth))
    report = PredictReport()
    videos = [it for it in items if isinstance(it.source, Path) and it.source.suffix.lower() in VIDEO_SUFFIXES]
    images = [it for it in items if it not in videos]
    video_out = out or Path("ferlab-predict")
    used_names: set[str] = set()

    json_path = Path(config.json) if config.json else (out / "predictions.json" if out is not None else None)
    streams: list = []
    records = JsonRecords(json_path) if json_path is not None else None
    faces_csv = FaceCsv(Path(config.csv), recognizer.classes) if config.csv else None
    labelled_csv = None
    streams += [s for s in (records, faces_csv) if s is not None]

    def add(record: dict) -> None:
        report.records.append(record)
        for s in (records, faces_csv):
            if s is not None:
                s.add(record)

    try:
        with tqdm(total=len(images), unit="img", desc="predict", disable=not config.progress or not images) as bar:
            for start in range(0, len(images), config.batch_size):
                chunk = images[start:start + config.batch_size]
                for it, res in zip(chunk, recognizer.predict_batch([it.source for it in chunk],
                                                                   [it.name for it in chunk])):
                    add(res.to_dict())
                    report.errors += res.error is not None
                    report.no_face += res.error is None and not res.faces
                    if out is not None and res.error is None:
                        _annotate(recognizer, it, res, out, used_names, report)
                    if it.truth is not None and res.error is None:
                        if labelled_csv is None:
                            labelled_csv = LabelledCsv(Path(config.labelled_csv) if config.labelled_csv
                                                       else (out or Path(".")) / "labelled_predictions.csv")
                            streams.append(labelled_csv)
                        predicted = max(res.faces, key=lambda f: f.box[2] * f.box[3]).label if res.faces else ""
                        labelled_csv.add(it.name, it.truth, predicted, len(res.faces))
                        report.labelled += 1
                        report.correct += predicted == it.truth
                bar.update(len(chunk))
        for it in videos:
            v = process_video(recognizer, it.source, video_out, stride=config.stride, smoothing=config.smoothing,
                              max_frames=config.max_frames, progress=config.progress,
                              name=unique_name(it.source.stem, used_names))
            add(_video_record(v))
            report.errors += v.error is not None
            report.written += [p for p in (v.csv, v.summary, v.annotated) if p and v.error is None]
        if config.webcam is not None:
            v = process_video(recognizer, config.webcam, video_out, stride=config.stride, smoothing=config.smoothing,
                              max_frames=config.max_frames, progress=config.progress)
            add(_video_record(v))
            report.written += [p for p in (v.csv, v.summary, v.annotated) if p]
    finally:
        for s in streams:
            s.close()
            report.written.append(str(s.path))
    return report


def _annotate(recognizer: Recognizer, item: _Item, res: ImageResult, out: Path, used: set[str],
              report: PredictReport) -> None:
    """Save the annotated image; a failure (a full disk) is a warning, not the end of the job."""
    try:
        report.annotated.append(str(_save_annotated(recognizer, item, res, out, used)))
    except (OSError, ValueError) as e:
        msg = f"{item.name}: could not save the annotated image ({e})"
        report.warnings.append(msg)
        print(f"warning: {msg}", file=sys.stderr)


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
    return {"path": printable(v.path), "faces": faces, "error": v.error,
            "video": None if v.error else {"fps": v.fps, "frames": v.frames, "frames_processed": v.frames_processed,
                                           "frames_csv": v.csv, "summary": v.summary, "annotated": v.annotated}}

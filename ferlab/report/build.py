"""`ferlab report`: a run directory -> one self-contained HTML file with its config, data, curves,
per-class metrics, confusion matrices, calibration, mistakes, explanations and the command that
reproduces it. Every number is computed here from the checkpoint and the dataset; the figures
are drawn by `ferlab.figures` from arrays."""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from .. import __version__, checkpoint, data
from ..checkpoint import Loaded
from ..evaluate.calibration import reliability
from ..evaluate.metrics import metrics
from ..evaluate.tta import predict_logits
from ..explain.attribution import gradcam, saliency
from ..explain.inputs import to_images
from ..figures import (gallery_figure, overlay, plot_class_curves, plot_confusion_pair, plot_curves,
                       plot_reliability, stage_starts)
from .. import history
from ..train.config import read_file
from .command import changed_options, train_command
from .config import ReportConfig
from .gallery import examples, mistakes
from .render import png_data, render


def run_config(run_dir: Path, loaded: Loaded) -> dict:
    """The run's resolved training config: config.yaml beside the checkpoint, else the copy in it."""
    path = run_dir / "config.yaml"
    return read_file(path) if path.exists() else dict(loaded.meta.get("config") or {})


def load_split(train_cfg: dict, data_path: str, split: str, loaded: Loaded, skip_bad: bool) -> tuple[data.FaceData, str]:
    """The faces of `split` in the checkpoint's label set, as the run saw them: a run that held out
    `val_fraction` of its training split gets that same held-out part back (same seed)."""
    pp = loaded.preprocess
    kw = dict(size=pp.size, channels=pp.channels, classes=loaded.classes, skip_bad=skip_bad)
    fraction = float(train_cfg.get("val_fraction") or 0.0)
    if split == "val" and fraction:
        name = train_cfg.get("train_split") or "train"
        held_out = data.stratified_split(data.load(data_path, name, **kw), fraction, int(train_cfg.get("seed", 0)))[1]
        return held_out, f"{name}[{fraction:g}]"
    name = (train_cfg.get("val_split") or "val") if split == "val" else "test"
    return data.load(data_path, name, **kw), name


def _faces(images: torch.Tensor) -> np.ndarray:
    """uint8 (N, C, H, W) -> (N, H, W) gray or (N, H, W, 3) RGB for display."""
    a = images.numpy()
    return a[:, 0] if a.shape[1] == 1 else a.transpose(0, 2, 3, 1)


def _counts(loaded: Loaded, run_dir: Path, split_name: str, faces: data.FaceData) -> dict[str, dict[str, int]]:
    """{split: {class: images}}: training counts recorded in the checkpoint, validation counts from
    the run's evaluation when the report is on another split, and the reported split's own."""
    counts: dict[str, dict[str, int]] = {}
    recorded = (loaded.meta.get("metrics") or {}).get("class_counts")
    if recorded:
        counts["train"] = {c: int(recorded.get(c, 0)) for c in loaded.classes}
    val_eval = run_dir / "eval_val.json"
    if split_name != "val" and val_eval.exists():
        per_class = json.loads(val_eval.read_text()).get("per_class", {})
        counts["val"] = {c: int(per_class.get(c, {}).get("support", 0)) for c in loaded.classes}
    counts[split_name] = faces.class_counts()
    return counts


def _explanations(loaded: Loaded, faces: data.FaceData, probs: np.ndarray, per_class: int, method: str):
    """Gallery rows: a few faces per class with the map of their predicted class laid over them."""
    picks = examples(faces.labels.numpy(), len(loaded.classes), per_class)
    idx = [i for k in range(len(loaded.classes)) for i in picks[k]]
    if not idx:
        return [], method
    if method == "gradcam" and loaded.model.cam_layer is None:
        method = "saliency"
    x = loaded.preprocess.normalize(faces.images[idx])
    maps = (gradcam(loaded, x) if method == "gradcam" else saliency(loaded, x)).maps
    shown = {i: overlay(img, m) for i, img, m in zip(idx, to_images(loaded, x), maps)}
    rows = []
    for k, c in enumerate(loaded.classes):
        tiles = []
        for i in picks[k]:
            p = int(probs[i].argmax())
            tiles.append((shown[i], f"pred {loaded.classes[p]} {probs[i, p]:.0%}", "tab:green" if p == k else "tab:red"))
        rows.append((c, tiles))
    return rows, method


def build_report(cfg: ReportConfig) -> tuple[Path, dict]:
    """Write the HTML report of run `cfg.run` on `cfg.split`; returns its path and the metrics."""
    run_dir = Path(cfg.run)
    if not run_dir.is_dir():
        raise NotADirectoryError(f"{run_dir} is not a run directory; pass the folder `ferlab train` wrote "
                                 "(runs/<name>/ with config.yaml, metrics.csv and best.pt)")
    loaded = checkpoint.load(run_dir)
    train_cfg = run_config(run_dir, loaded)
    data_path = cfg.data or train_cfg.get("data")
    if not data_path:
        raise ValueError(f"{run_dir}'s config names no dataset; pass it with --data PATH")
    if not Path(data_path).exists():
        raise FileNotFoundError(f"dataset {data_path} ({'--data' if cfg.data else 'from the run config'}) does not "
                                "exist here; pass the dataset with --data PATH")
    faces, split_name = load_split(train_cfg, data_path, cfg.split, loaded, cfg.skip_bad)
    tta = cfg.tta or train_cfg.get("tta") or "none"
    logits = predict_logits(loaded.model, faces.images, loaded.preprocess, tta)
    t = loaded.temperature
    probs = (logits / t).softmax(1).numpy()
    y = faces.labels.numpy()
    m = metrics(y, logits.argmax(1).numpy(), loaded.classes)
    curves = {"uncalibrated": reliability(logits.softmax(1).numpy(), y)}
    if t != 1.0:
        curves[f"temperature {t:.2f}"] = reliability(probs, y)
    meta = loaded.meta.get("metrics") or {}
    rows = history.read(run_dir / "metrics.csv") if (run_dir / "metrics.csv").exists() else []
    best_epoch = meta.get("best_epoch")
    title = f"{loaded.model_name} on {split_name}"
    shown = _faces(faces.images)

    wrong = mistakes(probs, y, cfg.mistakes)
    gallery = [(f"{c}\n({len(np.flatnonzero((y == k) & (probs.argmax(1) != k)))} wrong)",
                [(shown[i], f"-> {loaded.classes[int(probs[i].argmax())]} {probs[i].max():.0%}") for i in wrong[k]])
               for k, c in enumerate(loaded.classes)]
    explained, method = _explanations(loaded, faces, probs, cfg.faces, cfg.method) if cfg.faces else ([], cfg.method)

    with tempfile.TemporaryDirectory(prefix="ferlab-report-") as tmp:
        tmp = Path(tmp)
        figs = {}
        if rows:
            figs["curves"] = plot_curves(rows, tmp / "curves.png", title=loaded.model_name,
                                         best_epoch=int(best_epoch) if best_epoch else None)
            if all(f"val_recall_{c}" in rows[0] for c in loaded.classes):
                figs["class_curves"] = plot_class_curves(rows, loaded.classes, tmp / "class_curves.png")
        figs["confusion"] = plot_confusion_pair(m, tmp / "confusion.png", title=f"{title}: accuracy {m['accuracy']:.3f}")
        figs["reliability"] = plot_reliability(list(curves.items()), tmp / "reliability.png",
                                               title=f"calibration on {split_name}")
        if cfg.mistakes:
            figs["mistakes"] = gallery_figure(gallery, tmp / "mistakes.png",
                                              title="most confident mistakes per true class (-> predicted, confidence)")
        if explained:
            figs["explanations"] = gallery_figure(explained, tmp / "explanations.png",
                                                  title=f"{method} of the predicted class (green: right, red: wrong)")
        images = {k: png_data(p) for k, p in figs.items()}
        out = Path(cfg.out) if cfg.out else run_dir / f"report_{cfg.split}.html"
        changed = changed_options(train_cfg)
        render("report.html.j2", out, title=f"ferlab report: {run_dir.name}", run=run_dir.name, run_dir=str(run_dir),
               model=loaded.model_name, split=split_name, data=str(data_path), tta=tta, m=m, meta=meta,
               best_epoch=best_epoch, epochs=len(rows), stages=stage_starts(rows), images=images,
               config=[(k, v, k in changed) for k, v in train_cfg.items()], counts=_counts(loaded, run_dir,
                                                                                            split_name, faces),
               classes=loaded.classes, temperature=t, curves=curves, calibration=loaded.meta.get("calibration"),
               method=method, mistakes_per_class=cfg.mistakes, faces_per_class=cfg.faces,
               skipped=faces.skipped, command=train_command(train_cfg), checkpoint=loaded.path,
               version=__version__, generated=time.strftime("%Y-%m-%d %H:%M"))
    return out, m


def run(cfg: ReportConfig) -> tuple[Path, dict]:
    return build_report(cfg)

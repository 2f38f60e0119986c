"""Metrics, confusion matrices, evaluation of checkpoints on a split, and run comparison."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from . import checkpoint, data
from .preprocess import Preprocess

TTA = Literal["none", "flip", "flip_shift"]


@torch.inference_mode()
def predict_logits(model: torch.nn.Module, images: torch.Tensor, preprocess: Preprocess, tta: TTA = "none",
                   batch_size: int = 256, channels_last: bool = True, bf16: bool = False) -> torch.Tensor:
    """Average logits of `model` over uint8 images (N, C, H, W), with optional test-time augmentation.

    flip: the image and its mirror. flip_shift: also 1-pixel-per-16 shifts in 4 directions of both
    (10 views), the cheap cousin of ten-crop for models that see the whole 48x48 face.
    `bf16` runs the model under bfloat16 autocast: 3x faster on AMX CPUs, used for the per-epoch
    validation during training (reported final figures use fp32).
    """
    if tta not in ("none", "flip", "flip_shift"):
        raise ValueError(f"unknown tta {tta!r}; choose one of: none, flip, flip_shift")
    model.eval()
    out = []
    for i in range(0, len(images), batch_size):
        x = preprocess.normalize(images[i:i + batch_size])
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        views = [x]
        if tta != "none":
            views.append(x.flip(-1))
        if tta == "flip_shift":
            s = max(1, x.shape[-1] // 16)
            for v in list(views):
                p = F.pad(v, (s, s, s, s), mode="replicate")
                h, w = v.shape[-2:]
                views += [p[..., :h, s:s + w], p[..., 2 * s:, s:s + w], p[..., s:s + h, :w], p[..., s:s + h, 2 * s:]]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out.append(torch.stack([model(v).float() for v in views]).mean(0))
    return torch.cat(out)


def metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix
    (rows = true class, columns = predicted)."""
    k = len(classes)
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    cm = np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k)
    tp = np.diag(cm).astype(float)
    support = cm.sum(1)
    predicted = cm.sum(0)
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(k), where=(precision + recall) > 0)
    present = support > 0
    return {
        "n": int(len(y_true)),
        "accuracy": float(tp.sum() / max(len(y_true), 1)),
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_class": {c: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                          "support": int(support[i])} for i, c in enumerate(classes)},
        "classes": list(classes),
        "confusion": cm.tolist(),
    }


def write_confusion_csv(m: dict, path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["true \\ predicted", *m["classes"]])
        for c, row in zip(m["classes"], m["confusion"]):
            w.writerow([c, *row])


def evaluate(ref: str | Path, data_path: str | Path, split: str = "val", tta: TTA | None = None,
             out_dir: str | Path | None = None, json_path: str | Path | None = None,
             skip_bad: bool = False) -> dict:
    """Evaluate a checkpoint ('default', a .pt file or a run directory) on a dataset split.

    Writes eval_<split>.json, confusion_<split>.csv and .png into `out_dir` (default: the run
    directory for a run, else nothing) and the JSON also to `json_path` when given.
    """
    loaded = checkpoint.load(ref)
    pp = loaded.preprocess
    ds = data.load(data_path, split, size=pp.size, channels=pp.channels, skip_bad=skip_bad)
    # Map the dataset's classes into the checkpoint's label set, by name, never by position.
    idx = torch.tensor([loaded.classes.index(c) if c in loaded.classes else -1 for c in ds.classes])
    if (idx < 0).any():
        missing = [c for c, i in zip(ds.classes, idx.tolist()) if i < 0]
        raise ValueError(f"dataset classes {missing} are not among the model's classes {loaded.classes}")
    y_true = idx[ds.labels].numpy()
    if tta is None:
        tta = loaded.meta.get("config", {}).get("tta", "none")
    logits = predict_logits(loaded.model, ds.images, pp, tta)
    m = metrics(y_true, logits.argmax(1).numpy(), loaded.classes)
    m.update({"split": split, "data": str(data_path), "checkpoint": loaded.path, "tta": tta,
              "skipped": [list(s) for s in ds.skipped]})
    if out_dir is None and Path(str(ref)).is_dir():
        out_dir = Path(ref)
    if out_dir is not None:
        from .report import plot_confusion

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"eval_{split}.json").write_text(json.dumps(m, indent=1))
        write_confusion_csv(m, out_dir / f"confusion_{split}.csv")
        plot_confusion(m, out_dir / f"confusion_{split}.png", title=f"{loaded.model_name} on {split}")
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(m, indent=1))
    return m


def format_metrics(m: dict) -> str:
    lines = [f"accuracy {m['accuracy']:.4f}   macro-F1 {m['macro_f1']:.4f}   n={m['n']}",
             f"{'class':<10} {'precision':>9} {'recall':>7} {'f1':>6} {'support':>8}"]
    for c, r in m["per_class"].items():
        lines.append(f"{c:<10} {r['precision']:>9.3f} {r['recall']:>7.3f} {r['f1']:>6.3f} {r['support']:>8d}")
    return "\n".join(lines)


def compare(runs: list[str | Path], out: str | Path | None = None) -> list[dict]:
    """Side-by-side rows for run directories: model, params, epochs, minutes, best val accuracy,
    val/test accuracy and macro-F1 from evaluations if present. Writes CSV when `out` is given."""
    rows = []
    for r in runs:
        r = Path(r)
        ck = checkpoint.read(r)
        meta_metrics = ck.get("metrics", {})
        row = {"run": r.name, "model": ck["model"]["name"], "params": meta_metrics.get("params"),
               "epochs": meta_metrics.get("epochs_run"), "minutes": meta_metrics.get("train_minutes"),
               "val_acc": meta_metrics.get("val_acc"), "val_macro_f1": meta_metrics.get("val_macro_f1")}
        for split in ("val", "test"):
            f = r / f"eval_{split}.json"
            if f.exists():
                e = json.loads(f.read_text())
                row[f"{split}_acc_eval"] = e["accuracy"]
                row[f"{split}_macro_f1_eval"] = e["macro_f1"]
                row[f"{split}_tta"] = e.get("tta")
        rows.append(row)
    if out:
        keys = list(dict.fromkeys(k for row in rows for k in row))
        with open(out, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)
    return rows


def format_table(rows: list[dict]) -> str:
    if not rows:
        return "(no runs)"
    keys = list(dict.fromkeys(k for row in rows for k in row))
    fmt = lambda v: "-" if v is None else (f"{v:.4f}" if isinstance(v, float) and v < 1 else
                                           f"{v:.1f}" if isinstance(v, float) else str(v))
    cells = [[fmt(row.get(k)) for k in keys] for row in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths))
    return "\n".join([line(keys), line(["-" * w for w in widths])] + [line(c) for c in cells])

"""Runs side by side: architecture, parameters, epochs, minutes, train and validation accuracy,
per-class F1, and their validation curves overlaid in one figure."""
from __future__ import annotations

import csv
import json
from pathlib import Path

from .. import checkpoint
from ..figures import plot_compare
from .. import history


def _history(run: Path) -> list[dict]:
    path = run / "metrics.csv"
    return history.read(path) if path.exists() else []


def _val_f1(run: Path) -> dict[str, float]:
    """Per-class F1 of the run's final validation (eval_val.json), {} when it has none."""
    f = run / "eval_val.json"
    if not f.exists():
        return {}
    return {c: r["f1"] for c, r in json.loads(f.read_text()).get("per_class", {}).items()}


def compare(runs: list[str | Path], out: str | Path | None = None) -> list[dict]:
    """Side-by-side rows for run directories: model, params, epochs, minutes, train accuracy at the
    best epoch, best val accuracy, val/test accuracy and macro-F1 from evaluations if present, and
    the val F1 of each class (`f1_<class>`). Writes CSV when `out` is given."""
    rows = []
    for r in runs:
        r = Path(r)
        ck = checkpoint.read(r)
        meta_metrics = ck.get("metrics", {})
        epochs = _history(r)
        best = meta_metrics.get("best_epoch")
        at_best = next((e for e in epochs if e["epoch"] == best), epochs[-1] if epochs else {})
        row = {"run": r.name, "model": ck["model"]["name"], "params": meta_metrics.get("params"),
               "epochs": meta_metrics.get("epochs_run"), "minutes": meta_metrics.get("train_minutes"),
               "train_acc": at_best.get("train_acc"), "val_acc": meta_metrics.get("val_acc"),
               "val_macro_f1": meta_metrics.get("val_macro_f1")}
        for split in ("val", "test"):
            f = r / f"eval_{split}.json"
            if f.exists():
                e = json.loads(f.read_text())
                row[f"{split}_acc_eval"] = e["accuracy"]
                row[f"{split}_macro_f1_eval"] = e["macro_f1"]
                row[f"{split}_tta"] = e.get("tta")
        row.update({f"f1_{c}": v for c, v in _val_f1(r).items()})
        rows.append(row)
    if out:
        keys = list(dict.fromkeys(k for row in rows for k in row))
        with open(out, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)
    return rows


def plot(runs: list[str | Path], out: str | Path) -> Path:
    """One PNG: the runs' validation accuracy (train dashed) and loss per epoch overlaid, and
    their per-class validation F1 side by side."""
    paths = [Path(r) for r in runs]
    f1 = {p.name: _val_f1(p) for p in paths}
    return plot_compare([(p.name, _history(p)) for p in paths], out, f1={k: v for k, v in f1.items() if v} or None,
                        title="runs compared on validation")


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

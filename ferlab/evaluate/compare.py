"""Runs side by side: architecture, parameters, epochs, minutes and the accuracy of each."""
from __future__ import annotations

import csv
import json
from pathlib import Path

from .. import checkpoint


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

"""A run's `metrics.csv`: one row per epoch (the fixed `FIELDS`, then validation precision and recall per
class). The only writer and reader of the file. `stage` is 1 while fine-tuning trains the head
alone (`--freeze-epochs`), else 2."""
from __future__ import annotations

import csv
from pathlib import Path

FIELDS = ["epoch", "stage", "train_loss", "train_acc", "val_loss", "val_acc", "val_macro_f1", "lr", "seconds", "elapsed",
          "images_per_s", "side"]


def columns(classes: list[str]) -> list[str]:
    return FIELDS + [f"val_{k}_{c}" for c in classes for k in ("precision", "recall")]


def start(path: str | Path, classes: list[str] = ()) -> None:
    with open(path, "w", newline="") as f:
        csv.writer(f).writerow(columns(list(classes)))


def append(path: str | Path, row: dict) -> None:
    """Write `row` under the file's own header (runs started by older versions have fewer columns)."""
    with open(path, newline="") as f:
        header = next(csv.reader(f), FIELDS)
    with open(path, "a", newline="") as f:
        csv.writer(f).writerow([row.get(k, "") for k in header])


def read(path: str | Path) -> list[dict]:
    """Rows as dicts of floats (None for empty cells)."""
    with open(path, newline="") as f:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]


def truncate(path: str | Path, epochs: int) -> int:
    """Keep the header and the rows of epochs 1..`epochs`; returns how many rows were dropped.

    A run killed after writing an epoch's row but before saving last.pt would otherwise repeat
    that epoch's row when it resumes."""
    path = Path(path)
    if not path.exists():
        start(path)
        return 0
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header, body = (rows[0], rows[1:]) if rows else (FIELDS, [])
    keep = [r for r in body if r and _number(r[0]) is not None and _number(r[0]) <= epochs]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(keep)
    return len(body) - len(keep)


def _number(v):
    if v in ("", None):
        return None
    try:
        return float(v)
    except ValueError:
        return None

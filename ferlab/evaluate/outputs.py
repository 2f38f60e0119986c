"""The one writer of an evaluation's files: `eval_<split>.json`, `confusion_<split>.csv` and `.png`."""
from __future__ import annotations

import csv
from pathlib import Path

from ..fileio import write_json
from ..figures import plot_confusion, plot_reliability


def write_confusion_csv(m: dict, path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["true \\ predicted", *m["classes"]])
        for c, row in zip(m["classes"], m["confusion"]):
            w.writerow([c, *row])


def write_evaluation(m: dict, out_dir: str | Path, split: str, title: str = "") -> list[Path]:
    """Write the metrics JSON (strict: no NaN), the confusion CSV and its PNG into `out_dir`, and the
    reliability diagram when `m` has reliability curves ({label: bins})."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [write_json(out_dir / f"eval_{split}.json", m), out_dir / f"confusion_{split}.csv",
             out_dir / f"confusion_{split}.png"]
    write_confusion_csv(m, paths[1])
    plot_confusion(m, paths[2], title=title)
    if m.get("reliability"):
        paths.append(plot_reliability(list(m["reliability"].items()), out_dir / f"reliability_{split}.png",
                                      title=f"calibration: {title}"))
    return paths

"""Knowledge distillation (issue 12): record finished runs side by side as JSON.

The runs themselves are plain CLI runs (a teacher file, then `ferlab train --teacher`), because a
100-epoch run is the unit a user repeats; this script only collects what they wrote:

    .venv/bin/ferlab teacher default --data ../shared/datasets/fer2013 --out runs/teacher_default.npz --amp
    .venv/bin/ferlab train --recipe tiny --data ../shared/datasets/fer2013 --teacher runs/teacher_default.npz \\
        --name tiny_kd --out runs
    .venv/bin/python benchmarks/distill.py runs/tiny_kd ... --baseline tiny --out benchmarks/results/distill_tiny.json

Each entry: the run's distillation settings, its best epoch's val accuracy, the final val accuracy
with the recorded TTA and macro-F1 (from `eval_val.json`, fp32), ECE before and after the fitted
temperature, images/s and minutes; the baseline is a bundled checkpoint's recorded figures.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ferlab import checkpoint, history  # noqa: E402


def run_entry(run: Path) -> dict:
    cfg = checkpoint.load(run).meta["config"]
    rows = history.read(run / "metrics.csv")
    ev = json.loads((run / "eval_val.json").read_text())
    best = max(rows, key=lambda r: r["val_acc"])
    return {
        "run": str(run), "arch": cfg.get("arch", cfg.get("model")), "epochs": len(rows),
        "teacher": cfg.get("teacher", ""), "distill": cfg.get("distill"), "distill_temperature": cfg.get("distill_temperature"),
        "best_epoch": int(best["epoch"]), "best_val_acc": best["val_acc"],
        "val_acc_tta": ev["accuracy"], "tta": ev["tta"], "val_macro_f1_tta": ev["macro_f1"],
        "calibration": ev.get("calibration"),
        "images_per_s_median": sorted(r["images_per_s"] for r in rows)[len(rows) // 2],
        "minutes": rows[-1]["elapsed"] / 60,  # metrics.csv keeps seconds
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--baseline", default="tiny", help="bundled checkpoint to compare with, or a `ferlab bench train` "
                                                      "JSON (a run whose checkpoint is gone)")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "distill_tiny.json")
    a = p.parse_args()
    if a.baseline.endswith(".json"):
        row = json.loads(Path(a.baseline).read_text())
        baseline = {"name": a.baseline, "val_acc": row["best_val_acc"], "val_acc_tta": row["val_acc_tta"],
                    "tta": row["tta"]}
    else:
        base = checkpoint.load(a.baseline).meta
        baseline = {"name": a.baseline, "val_acc": base["metrics"].get("val_acc"),
                    "val_acc_tta": base["metrics"].get("val_acc_tta"), "tta": base["config"].get("tta")}
    out = {
        "issue": 12, "command": [sys.executable, *sys.argv], "written": time.strftime("%Y-%m-%d %H:%M:%S"),
        "split": "val (FER2013 PublicTest)", "loadavg_at_write": list(os.getloadavg()),
        "baseline": baseline,
        "runs": [run_entry(r) for r in a.runs],
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=1) + "\n")
    for r in out["runs"]:
        print(f"{r['run']}: distill {r['distill']} T {r['distill_temperature']}: best val {r['best_val_acc']:.4f}, "
              f"{r['tta']} {r['val_acc_tta']:.4f}, macro-F1 {r['val_macro_f1_tta']:.3f}, {r['minutes']:.1f} min")
    print(f"baseline {a.baseline}: {out['baseline']}")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()

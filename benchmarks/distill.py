"""Knowledge distillation (issue 12): record finished runs side by side as JSON.

The runs themselves are plain CLI runs (a teacher file, then `ferlab train --teacher`), because a
100-epoch run is the unit a user repeats; this script only collects what they wrote:

    .venv/bin/ferlab teacher default --data ../shared/datasets/fer2013 --out runs/teacher_default.npz --amp
    .venv/bin/ferlab train --recipe tiny --data ../shared/datasets/fer2013 --teacher runs/teacher_default.npz \\
        --name tiny_kd --out runs
    .venv/bin/python benchmarks/distill.py runs/tiny_kd ... --baseline tiny --out benchmarks/results/distill_tiny.json

Each entry: the run's distillation settings, learning rate and seed, its best epoch's val accuracy,
the final val accuracy with the recorded TTA and macro-F1 (from `eval_val.json`, fp32), ECE before
and after the fitted temperature, images/s and minutes; the baseline is a bundled checkpoint's
recorded figures. `seed_groups` gathers the runs whose configs differ only in seed and name, with
the mean, minimum and maximum of each accuracy over the group: the figures the README quotes "over
four seeds".
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
from ferlab.train import config as config_mod  # noqa: E402


# Config keys that make two runs seeds of one setting rather than two settings.
_SEED_KEYS = ("seed", "name", "out")
_FIGURES = ("best_val_acc", "val_acc_tta", "val_macro_f1_tta")


def run_config(run: Path) -> dict:
    return checkpoint.read(run)["config"]  # the validated payload: no model is built to read it


def run_entry(run: Path, cfg: dict | None = None) -> dict:
    cfg = cfg if cfg is not None else run_config(run)
    rows = history.read(run / "metrics.csv")
    ev = json.loads((run / "eval_val.json").read_text())
    best = max(rows, key=lambda r: r["val_acc"])
    return {
        "run": str(run), "arch": cfg.get("arch", cfg.get("model")), "epochs": len(rows),
        "teacher": cfg.get("teacher", ""), "distill": cfg.get("distill"), "distill_temperature": cfg.get("distill_temperature"),
        "lr": cfg.get("lr"), "seed": cfg.get("seed"),
        "best_epoch": int(best["epoch"]), "best_val_acc": best["val_acc"],
        "val_acc_tta": ev["accuracy"], "tta": ev["tta"], "val_macro_f1_tta": ev["macro_f1"],
        "calibration": ev.get("calibration"),
        "images_per_s_median": sorted(r["images_per_s"] for r in rows)[len(rows) // 2],
        "minutes": rows[-1]["elapsed"] / 60,  # metrics.csv keeps seconds
    }


def seed_groups(entries: list[dict], configs: list[dict]) -> list[dict]:
    """Runs whose configs agree but for `_SEED_KEYS`, in first-seen order, with each figure's mean,
    min and max over the group. Options added since a run was saved count as their defaults."""
    groups: dict[str, list[dict]] = {}
    defaults = config_mod.build().to_dict()  # a key a run's config predates counts as its default
    for entry, cfg in zip(entries, configs):
        full = {**defaults, **cfg}
        key = json.dumps({k: v for k, v in full.items() if k not in _SEED_KEYS}, sort_keys=True, default=str)
        groups.setdefault(key, []).append(entry)
    out = []
    for members in groups.values():
        row = {"runs": [m["run"] for m in members], "seeds": [m["seed"] for m in members], "n": len(members)}
        for f in _FIGURES:
            values = [m[f] for m in members]
            row[f] = {"mean": sum(values) / len(values), "min": min(values), "max": max(values)}
        out.append(row)
    return out


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
        base = checkpoint.read(a.baseline)
        baseline = {"name": a.baseline, "val_acc": base["metrics"].get("val_acc"),
                    "val_acc_tta": base["metrics"].get("val_acc_tta"), "tta": base["config"].get("tta")}
    out = {
        "issue": 12, "command": [sys.executable, *sys.argv], "written": time.strftime("%Y-%m-%d %H:%M:%S"),
        "split": "val (FER2013 PublicTest)", "loadavg_at_write": list(os.getloadavg()),
        "baseline": baseline,
    }
    configs = [run_config(r) for r in a.runs]
    out["runs"] = [run_entry(r, c) for r, c in zip(a.runs, configs)]
    out["seed_groups"] = seed_groups(out["runs"], configs)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=1) + "\n")
    for r in out["runs"]:
        print(f"{r['run']}: distill {r['distill']} T {r['distill_temperature']}: best val {r['best_val_acc']:.4f}, "
              f"{r['tta']} {r['val_acc_tta']:.4f}, macro-F1 {r['val_macro_f1_tta']:.3f}, {r['minutes']:.1f} min")
    for g in out["seed_groups"]:
        if g["n"] > 1:
            print(f"seeds {g['seeds']} of {g['runs'][0]}: mean best val {g['best_val_acc']['mean']:.4f}, "
                  f"with TTA {g['val_acc_tta']['mean']:.4f}, macro-F1 {g['val_macro_f1_tta']['mean']:.3f}")
    print(f"baseline {a.baseline}: {out['baseline']}")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()

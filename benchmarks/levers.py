"""One switch at a time: the effect of each training lever on val accuracy, against one baseline.

    .venv/bin/python benchmarks/levers.py --data ../shared/datasets/fer2013 --recipe tiny --epochs 20 \
        --out benchmarks/results/levers_tiny.json

Every variant is the baseline recipe with one change (same seed, same epochs), so a row's
difference from the baseline row is that lever's effect in this budget. One seed per row: on
FER2013's 3,589 val faces, differences under about 0.7 points are within run-to-run noise.
Render with `python benchmarks/table.py --levers benchmarks/results/levers_tiny.json`.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from ferlab import history
from ferlab.train import config
from ferlab.fileio import write_json
from ferlab.train import fit

#: lever -> overrides of the baseline recipe
VARIANTS: dict[str, dict] = {
    "baseline": {},
    "AdamW (lr 2e-3, wd 0.05) instead of SGD-Nesterov": dict(optimizer="adamw", lr=2e-3, weight_decay=0.05),
    "cosine instead of one-cycle": dict(schedule="cosine"),
    "no label smoothing": dict(label_smoothing=0.0),
    "mixup 0.2": dict(mixup=0.2),
    "CutMix 1.0": dict(cutmix=1.0),
    "class-weighted loss": dict(balance="weights"),
    "balanced sampler": dict(balance="sampler"),
    "oversampling with augmented copies (to the largest class)": dict(balance="oversample"),
    "no EMA": dict(ema=0.0),
    "light augmentation": dict(augment="light"),
}


def run(data: str, recipe: str, epochs: int, runs_dir: str, only: list[str] | None) -> list[dict]:
    rows = []
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for i, (lever, overrides) in enumerate(VARIANTS.items()):
        if only and lever not in only and lever != "baseline":
            continue
        cfg = config.build(recipe, data=data, epochs=epochs, out=runs_dir, name=f"lever-{stamp}-{i}", **overrides)
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        run_dir = fit(cfg, log=lambda m: None)
        minutes = (time.perf_counter() - t0) / 60
        ev = json.loads((Path(run_dir) / "eval_val.json").read_text())
        hist = history.read(Path(run_dir) / "metrics.csv")
        row = {"lever": lever, "overrides": overrides, "best_val_acc": max(r["val_acc"] for r in hist),
               "val_acc_tta": ev["accuracy"], "val_macro_f1_tta": ev["macro_f1"], "tta": ev["tta"],
               "minutes": minutes, "loadavg_before": load, "run_dir": str(run_dir)}
        rows.append(row)
        print(f"{lever:55s} best {row['best_val_acc']:.4f}  tta {row['val_acc_tta']:.4f}  "
              f"macro-F1 {row['val_macro_f1_tta']:.4f}  {minutes:.1f} min  load {load:.1f}", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--recipe", default="tiny")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--runs", default="runs")
    ap.add_argument("--only", nargs="*", help="levers to run (the baseline always runs)")
    ap.add_argument("--out", default="benchmarks/results/levers_tiny.json")
    args = ap.parse_args()
    rows = run(args.data, args.recipe, args.epochs, args.runs, args.only)
    write_json(args.out, {"recipe": args.recipe, "epochs": args.epochs, "base_config": config.recipe(args.recipe),
                "levers": rows})


if __name__ == "__main__":
    main()

"""Fit the calibration temperature of the bundled models on FER2013 val and store it in them.

    .venv/bin/python benchmarks/calibrate_bundled.py --data ../shared/datasets/fer2013 \
        --out benchmarks/results/calibration.json

Each model is scored on `val` with the TTA recorded in its checkpoint; the temperature that
minimises the NLL of those logits is written into `ferlab/weights/<name>.pt` (nothing else in
the file changes) and the ECE (15 bins) before and after goes to the JSON. Models not named in
`--models` keep their entry in an existing JSON (and their file is not rewritten), so
recalibrating one bundled model leaves the other as it was.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from ferlab import checkpoint, data
from ferlab.evaluate.calibration import calibrate
from ferlab.evaluate.tta import predict_logits
from ferlab.fileio import write_json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--models", nargs="+", default=["default", "tiny"])
    ap.add_argument("--out", default="benchmarks/results/calibration.json")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    out = Path(args.out)
    kept = json.loads(out.read_text())["models"] if out.exists() else {}
    res = {"split": "val", "loadavg_before": os.getloadavg(), "date": time.strftime("%Y-%m-%d %H:%M"),
           "models": {name: cal for name, cal in kept.items() if name not in args.models}}
    for name in args.models:
        path = checkpoint.resolve(name)
        payload = checkpoint.read(path)
        loaded = checkpoint.build(payload, str(path))
        pre = loaded.preprocess
        val = data.load(args.data, "val", size=pre.size, channels=pre.channels, classes=loaded.classes)
        tta = payload.get("config", {}).get("tta", "none")
        logits = predict_logits(loaded.model, val.images, pre, tta)
        cal = calibrate(logits, val.labels, "val")
        cal["tta"] = tta
        cal["accuracy"] = float((logits.argmax(1) == val.labels).float().mean())
        cal["date"] = res["date"]
        payload["calibration"] = cal
        checkpoint.save(payload, path)
        res["models"][name] = cal
        print(name, {k: round(v, 4) if isinstance(v, float) else v for k, v in cal.items()}, flush=True)
    res["loadavg_after"] = os.getloadavg()
    write_json(args.out, res)


if __name__ == "__main__":
    main()

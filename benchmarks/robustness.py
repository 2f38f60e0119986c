"""Val accuracy of checkpoints on faces degraded the ways photos and detectors degrade them.

FER2013's faces are clean, tightly cropped 48x48 images; the faces `ferlab predict` cuts from photos
and webcam frames are lit differently, soft, compressed and cropped by a detector whose boxes move.
Each condition applies one fixed degradation to every val face (no randomness, so models compare on
the same images). Severities beyond the `photo` preset's training ranges are marked (`beyond_photo`):
they test what a model does with what it never saw. No TTA, fp32, as `onnx_accuracy.py`.

    .venv/bin/python benchmarks/robustness.py default tiny runs/x \\
        --data ../shared/datasets/fer2013 --out benchmarks/results/robustness.json
"""
from __future__ import annotations

import argparse
import math
import os
import platform
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ferlab import checkpoint, data
from ferlab.data.degrade import blur, gamma, jpeg, to_uint8
from ferlab.evaluate import predict_logits
from ferlab.evaluate.metrics import metrics
from ferlab.fileio import write_json


def _full(x: torch.Tensor, v: float) -> torch.Tensor:
    return torch.full((len(x),), float(v))


def _affine(x: torch.Tensor, shift: float = 0.0, zoom: float = 1.0, degrees: float = 0.0) -> torch.Tensor:
    """The crop a detector box moved by `shift` of the side (right and down), `zoom` times as large
    (> 1: a looser box, the face smaller) and turned `degrees`; borders repeat the edge pixels."""
    a = math.radians(degrees)
    theta = torch.tensor([[math.cos(a) * zoom, -math.sin(a) * zoom, 2 * shift],
                          [math.sin(a) * zoom, math.cos(a) * zoom, 2 * shift]]).expand(len(x), 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return to_uint8(F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border", align_corners=False))


def _lowres(x: torch.Tensor, side: int) -> torch.Tensor:
    """A face `side` pixels wide in the photo, scaled up to the model's size as the preprocessing does."""
    small = F.interpolate(x.float(), size=(side, side), mode="area")
    return to_uint8(F.interpolate(small, size=x.shape[-2:], mode="bilinear", align_corners=False))


# name -> (degradation of uint8 (N, C, H, W), beyond the `photo` preset's training ranges?)
CONDITIONS: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], bool]] = {
    "clean": (lambda x: x, False),
    "gamma_0.67": (lambda x: to_uint8(gamma(x, _full(x, 1 / 1.5))), False),
    "gamma_1.5": (lambda x: to_uint8(gamma(x, _full(x, 1.5))), False),
    "gamma_2.5": (lambda x: to_uint8(gamma(x, _full(x, 2.5))), True),
    "blur_1.0": (lambda x: to_uint8(blur(x, _full(x, 1.0))), False),
    "blur_2.0": (lambda x: to_uint8(blur(x, _full(x, 2.0))), True),
    "lowres_20px": (lambda x: _lowres(x, 20), True),
    "jpeg_30": (lambda x: jpeg(x, _full(x, 30)), False),
    "jpeg_10": (lambda x: jpeg(x, _full(x, 10)), True),
    "box_shift_8pct": (lambda x: _affine(x, shift=0.08), False),
    "box_loose_1.2": (lambda x: _affine(x, zoom=1.2), True),
    "box_tight_0.85": (lambda x: _affine(x, zoom=0.85), True),
    "rotate_15": (lambda x: _affine(x, degrees=15), True),
    "camera": (lambda x: jpeg(to_uint8(blur(gamma(x, _full(x, 1.5)), _full(x, 1.0))), _full(x, 40)), False),
}


def robustness(ref: str, images: torch.Tensor, y: np.ndarray, classes: list[str]) -> dict:
    """Accuracy and macro-F1 of checkpoint `ref` under every condition, and their mean over the
    degraded ones (the clean figure excluded)."""
    loaded = checkpoint.load(ref)
    if list(loaded.classes) != classes:
        raise SystemExit(f"{ref} predicts {loaded.classes}, the others {classes}: compare models of one label set")
    pp = loaded.preprocess
    if (pp.size, pp.channels) != (images.shape[-1], images.shape[1]):
        raise SystemExit(f"{ref} takes {pp.size} px with {pp.channels} channel(s), the first model "
                         f"{images.shape[-1]} px with {images.shape[1]}: compare models of one input size")
    rows = {}
    for name, (fn, beyond) in CONDITIONS.items():
        pred = predict_logits(loaded.model, fn(images), loaded.preprocess).argmax(1).numpy()
        m = metrics(y, pred, classes)
        rows[name] = {"accuracy": round(float(m["accuracy"]), 4), "macro_f1": round(float(m["macro_f1"]), 4),
                      "beyond_photo": beyond}
        print(f"{ref:>40s} {name:>15s} {rows[name]['accuracy']:.4f}", flush=True)
    degraded = [r["accuracy"] for k, r in rows.items() if k != "clean"]
    return {"conditions": rows, "mean_degraded_accuracy": round(float(np.mean(degraded)), 4),
            "drop_from_clean": round(rows["clean"]["accuracy"] - float(np.mean(degraded)), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="checkpoints: 'default', 'tiny', .pt files or run directories")
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--out", default="benchmarks/results/robustness.json")
    args = ap.parse_args()
    first = checkpoint.load(args.models[0])
    pp, classes = first.preprocess, list(first.classes)
    split = data.load(args.data, args.split, size=pp.size, channels=pp.channels, classes=classes)
    load_before = os.getloadavg()
    res = {m: robustness(m, split.images, split.labels.numpy(), classes) for m in args.models}
    write_json(args.out, {"split": args.split, "data": args.data, "faces": len(split.labels), "tta": "none",
                          "precision": "fp32", "models": res, "machine": platform.processor() or platform.machine(),
                          "load_average": {"before": load_before, "after": os.getloadavg()}})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

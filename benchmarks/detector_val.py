"""Val accuracy through `ferlab predict`'s own path: YuNet detection, eye alignment, the crop margin.

FER2013's faces were framed by whoever built the dataset; on a photo, `ferlab predict` frames each
face from YuNet's box (square, eyes level, widened by the checkpoint's `crop_margin`). This puts
every val face, scaled up 3x (48 -> 144 px: YuNet needs more than 48 px), in the middle of a canvas
twice its size with the edges repeated, detects it with YuNet (threshold 0.75, as `predict`), cuts
the crop as `predict` does at several margins, and scores the checkpoints on the faces found,
next to their score on the same faces as FER2013 framed them. It also records where YuNet's box
lies relative to FER2013's frame. fp32; no TTA unless `--tta` (as `predict --tta`).

    .venv/bin/python benchmarks/detector_val.py default tiny --data ../shared/datasets/fer2013 \\
        --out benchmarks/results/detector_val.json
"""
from __future__ import annotations

import argparse
import os
import time

import cv2
import numpy as np
import torch

from ferlab import checkpoint, data, labels
from ferlab.evaluate import predict_logits
from ferlab.fileio import write_json
from ferlab.predict.detect import Face, align_crop, make_detector

SCALE = 3  # 48 -> 144 px


def detect_all(images: torch.Tensor) -> tuple[list[int], list[np.ndarray], list[Face]]:
    """Indices, canvases and YuNet faces of the val faces found (the best box whose centre lies in
    the face's frame), with `predict`'s detector settings."""
    det = make_detector("yunet")
    idx, canvases, faces = [], [], []
    for i, face in enumerate(images[:, 0].numpy()):
        side = face.shape[0] * SCALE
        big = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
        pad = side // 2
        rgb = np.repeat(cv2.copyMakeBorder(big, pad, pad, pad, pad, cv2.BORDER_REPLICATE)[..., None], 3, -1)
        inside = [f for f in det.detect(rgb)
                  if pad <= f.box[0] + f.box[2] / 2 <= pad + side and pad <= f.box[1] + f.box[3] / 2 <= pad + side]
        if inside:
            idx.append(i)
            canvases.append(rgb)
            faces.append(max(inside, key=lambda f: f.score))
    return idx, canvases, faces


def box_stats(faces: list[Face], side: int) -> dict:
    """YuNet's box relative to FER2013's frame: centre offset and size as fractions of the frame
    side (5th, 25th, 50th, 75th, 95th percentiles)."""
    pad = side // 2
    b = np.array([f.box for f in faces], dtype=np.float64)
    cols = {"centre_x": (b[:, 0] + b[:, 2] / 2 - pad) / side - 0.5, "centre_y": (b[:, 1] + b[:, 3] / 2 - pad) / side - 0.5,
            "longer_side": np.maximum(b[:, 2], b[:, 3]) / side}
    return {k: [round(float(v), 3) for v in np.percentile(c, [5, 25, 50, 75, 95])] for k, c in cols.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="checkpoints: 'default', 'tiny', .pt files or run directories")
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--margins", type=float, nargs="+", default=[-0.05, 0.0, 0.1, 0.2])
    ap.add_argument("--tta", default="none", choices=["none", "flip", "flip_shift"])
    ap.add_argument("--out", default="benchmarks/results/detector_val.json")
    args = ap.parse_args()
    load_before, t0 = os.getloadavg(), time.perf_counter()
    split = data.load(args.data, args.split, size=48, channels=1)
    idx, canvases, faces = detect_all(split.images)
    if not idx:
        raise SystemExit(f"YuNet found no face in the {len(split.labels)} {args.split} images of {args.data}: "
                         "this benchmark needs face crops")
    res = {"split": args.split, "faces": len(split.labels), "detected": len(idx),
           "detection_rate": round(len(idx) / len(split.labels), 4), "box": box_stats(faces, 48 * SCALE),
           "detect_seconds": round(time.perf_counter() - t0, 1), "tta": args.tta, "precision": "fp32", "models": {}}
    print(f"YuNet found {len(idx)} of {len(split.labels)} faces; box {res['box']}", flush=True)
    for ref in args.models:
        loaded = checkpoint.load(ref)
        pp = loaded.preprocess
        if (pp.size, pp.channels) != (48, 1):
            raise SystemExit(f"{ref} takes {pp.size} px with {pp.channels} channel(s): this benchmark takes 48 px gray")
        # the split's classes mapped into the checkpoint's by name, as `evaluate` does
        y = torch.tensor(labels.index_map(split.classes, loaded.classes))[split.labels[idx]].numpy()
        acc = lambda imgs: round(float((predict_logits(loaded.model, imgs, pp, args.tta).argmax(1).numpy() == y).mean()), 4)
        row = {"crop_margin": pp.crop_margin, "fer_framing": acc(split.images[idx]), "margins": {}}
        for margin in args.margins:
            crops = [align_crop(c, f, margin) for c, f in zip(canvases, faces)]
            row["margins"][f"{margin:g}"] = acc(torch.from_numpy(np.stack([pp.image_to_array(c) for c in crops])))
        res["models"][ref] = row
        print(ref, row, flush=True)
    res["load_average"] = {"before": load_before, "after": os.getloadavg()}
    write_json(args.out, res)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

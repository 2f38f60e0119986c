"""Does a small ensemble pay? Val accuracy of each checkpoint and of every combination of them
(class probabilities averaged), with the same test-time augmentation.

    .venv/bin/python benchmarks/ensemble.py runs/default runs/default_v2 --data ../shared/datasets/fer2013 \
        --tta flip_shift --out benchmarks/results/ensemble.json
"""
from __future__ import annotations

import argparse
import itertools
import os

import torch

from ferlab import checkpoint, data
from ferlab.fileio import write_json
from ferlab.evaluate import predict_logits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+", help="run folders, .pt files or bundled names")
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--tta", default="flip_shift")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/ensemble.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    probs, labels, singles = {}, None, {}
    for ref in args.checkpoints:
        loaded = checkpoint.load(ref)
        split = data.load(args.data, args.split, size=loaded.preprocess.size, channels=loaded.preprocess.channels,
                          classes=list(loaded.classes))
        if labels is not None and not torch.equal(labels, split.labels):
            raise SystemExit(f"{ref}: its preprocessing/classes give a different {args.split} split; "
                             "ensemble members must share classes and faces")
        labels = split.labels
        probs[ref] = predict_logits(loaded.model, split.images, loaded.preprocess, args.tta).softmax(1)
        singles[ref] = (probs[ref].argmax(1) == labels).float().mean().item()
        print(f"{ref}: {singles[ref]:.4f}", flush=True)
    combos = []
    for k in range(2, len(args.checkpoints) + 1):
        for members in itertools.combinations(args.checkpoints, k):
            acc = (sum(probs[m] for m in members).argmax(1) == labels).float().mean().item()
            combos.append({"members": list(members), "accuracy": acc,
                           "gain_over_best_member": acc - max(singles[m] for m in members)})
            print(f"{' + '.join(members)}: {acc:.4f}", flush=True)
    write_json(args.out, {"split": args.split, "tta": args.tta, "loadavg": os.getloadavg(), "singles": singles,
                "ensembles": combos})


if __name__ == "__main__":
    main()

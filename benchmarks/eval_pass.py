"""Images/s of an evaluation pass (`predict_logits`) with and without BatchNorm folding
(`ferlab/models/fold.py`), on the networks with BatchNorm, in one process (issue 14).

    .venv/bin/python benchmarks/eval_pass.py --out benchmarks/results/eval_pass.json

3,589 random uint8 faces (val's size), batch 64, bfloat16 autocast, channels_last input, the model
as a checkpoint loads it (NCHW weights). `folded` is what `predict_logits` does now (fold, then
channels_last weights); `as loaded` runs the model unchanged. Alternating passes, medians, with
the load average.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

import ferlab.evaluate.tta as tta
from ferlab.fileio import write_json
from ferlab.models import create_model
from ferlab.preprocess import Preprocess

NETS = ("seed_cnn_bn", "seed_dense_bn", "fernet_tiny", "fernet_s")


def compare(arch: str, repeats: int) -> dict:
    model = create_model(arch).eval()
    s = model.input_size
    images = torch.randint(0, 256, (3589, model.in_chans, s, s), dtype=torch.uint8)
    pp = Preprocess(size=s, channels=model.in_chans, mean=(0.5,) * model.in_chans, std=(0.25,) * model.in_chans)
    real = tta.fold_batchnorm
    ways = {"folded": real, "as loaded": lambda m: m.eval()}
    runs = {k: [] for k in ways}
    for r in range(repeats):
        for name in (list(ways) if r % 2 == 0 else list(ways)[::-1]):
            tta.fold_batchnorm = ways[name]
            try:
                # channels_last=False: the unfolded model keeps its NCHW weights (True would convert them)
                cl = name == "folded"
                t = time.perf_counter()
                tta.predict_logits(model, images, pp, batch_size=64, channels_last=cl, amp=True)
                runs[name].append(len(images) / (time.perf_counter() - t))
            finally:
                tta.fold_batchnorm = real
    med = {k: statistics.median(v) for k, v in runs.items()}
    return {"images_per_s": {k: {"median": med[k], "runs": v} for k, v in runs.items()},
            "speedup": med["folded"] / med["as loaded"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("archs", nargs="*", default=list(NETS))
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="benchmarks/results/eval_pass.json")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    res = {"issue": 14, "command": ["benchmarks/eval_pass.py", *sys.argv[1:]], "threads": a.threads,
           "repeats": a.repeats, "torch": torch.__version__, "loadavg_before": os.getloadavg(),
           "written": time.strftime("%Y-%m-%d %H:%M:%S"), "networks": {}}
    for arch in a.archs:
        res["networks"][arch] = r = compare(arch, a.repeats)
        print(f"{arch}: folded {r['images_per_s']['folded']['median']:.0f} img/s, as loaded "
              f"{r['images_per_s']['as loaded']['median']:.0f} img/s ({r['speedup']:.2f}x)", flush=True)
    res["loadavg_after"] = os.getloadavg()
    write_json(a.out, res)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()

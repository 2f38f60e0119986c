"""Seconds per CPU epoch of the reports' ImageNet backbones, against the reports' 200-2,457 s.

    .venv/bin/python benchmarks/backbone_epoch.py --out benchmarks/results/backbone_epoch.json

Each setting trains real steps of the registered model (random data of the report's input size,
batch 32 as the reports' Keras code, SGD, the loop's precision and memory format) after a
warm-up, and projects seconds per epoch of FER2013 `train` (28,709 faces). `frozen` is fine-tuning
stage 1 (`--freeze-epochs`): the body runs forward only, in eval mode.
"""
from __future__ import annotations

import argparse
import os

import torch

from ferlab.fileio import write_json
from ferlab.models import count_params, create_model
from ferlab.train import config
from ferlab.train.finetune import apply_stage, hold_batchnorm, param_groups
from train_step import images_per_s  # benchmarks/ is on sys.path when a script here runs

#: (name, side, channels, head, what the report measured)
SETTINGS = [("vgg16", 100, 3, "dense1024", "VGG16 + GAP + Dense 1024 at 100x100x3 (report: 53.2 %)"),
            ("efficientnet_b2", 96, 3, "conv128", "EfficientNetB2 + Conv 128 + Dense 128 at 96x96x3 (report: "
                                                   "2,457 s per CPU epoch)"),
            ("vgg19", 48, 3, "linear", "VGG19 at 48x48x3 (report: 63.3 % test)")]
TRAIN_SIZE = 28_709


def rate(name, side, chans, head, amp: bool, frozen: bool, batch: int, steps: int) -> float:
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, in_chans=chans, input_size=side, head=head)
    model = model.to(memory_format=torch.channels_last)
    cfg = config.build(data="x", arch=name, freeze_epochs=1 if frozen else 0, epochs=2, lr=0.01)
    apply_stage(model, cfg, 1)
    model.train()
    hold_batchnorm(model, cfg)
    opt = torch.optim.SGD(param_groups(model, cfg), lr=0.01, momentum=0.9)
    x = torch.randn(batch, chans, side, side).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 7, (batch,))
    return images_per_s(model, opt, x, y, amp, steps, warmup=2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--out", default="benchmarks/results/backbone_epoch.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    res = {"threads": args.threads, "batch": args.batch, "steps": args.steps, "train_size": TRAIN_SIZE,
           "torch": str(torch.__version__), "loadavg_before": os.getloadavg(), "models": []}
    for name, side, chans, head, about in SETTINGS:
        row = {"model": name, "input": f"{side}x{side}x{chans}", "head": head, "about": about,
               "params": count_params(create_model(name, in_chans=chans, input_size=side, head=head))}
        for amp in (False, True):
            for frozen in (False, True):
                key = f"{'bf16' if amp else 'fp32'}{'_frozen' if frozen else ''}"
                r = rate(name, side, chans, head, amp, frozen, args.batch, args.steps)
                row[f"{key}_img_s"] = r
                row[f"{key}_s_per_epoch"] = TRAIN_SIZE / r
        print({k: (round(v) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
        res["models"].append(row)
    res["loadavg_after"] = os.getloadavg()
    write_json(args.out, res)


if __name__ == "__main__":
    main()

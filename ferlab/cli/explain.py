"""`ferlab explain`: saliency, Grad-CAM, activations and filter images of a checkpoint, as PNG figures."""
from __future__ import annotations

import argparse

from ..explain.config import ExplainConfig
from .options import add_options, build


def add_parsers(subparsers) -> None:
    p = subparsers.add_parser(
        "explain", help="show what a model looks at: saliency, Grad-CAM, masked saliency, activations, filters",
        description="Find the faces in each image or folder of images (detection and alignment as in `ferlab "
                    "predict`; small images are taken as face crops) and write PNG figures per face and method. "
                    "--method filters needs no image: without one it starts from mid-gray (the first conv layer "
                    "shows its kernels).")
    add_options(p, ExplainConfig)
    p.set_defaults(func=_explain)


def _explain(args: argparse.Namespace) -> int:
    from ..explain.job import run

    cfg = build(args, ExplainConfig)
    report = run(cfg)
    for line in report.messages:
        print(line)
    for path in report.written:
        print(f"wrote {path}")
    print(f"{len(report.written)} figure(s) in {cfg.out}")
    return 1 if report.errors else 0

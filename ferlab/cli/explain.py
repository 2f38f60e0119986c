"""`ferlab explain`: saliency, Grad-CAM, activations and filter images of a checkpoint, as PNG figures."""
from __future__ import annotations

import argparse

from ..detect import DETECTORS
from ..explain import ALL_CLASSES, METHODS, ExplainConfig, run


def add_parsers(subparsers) -> None:
    p = subparsers.add_parser(
        "explain", help="show what a model looks at: saliency, Grad-CAM, activations, filter images",
        description="Find the faces in each image (detection and alignment as in `ferlab predict`; small "
                    "images are taken as face crops) and write one PNG figure per face and method. "
                    "--method filters needs no image: without one it starts from mid-gray.")
    p.add_argument("images", nargs="*", metavar="IMAGE", help="photos or face crops")
    p.add_argument("--model", default="default",
                   help="checkpoint file, run directory or 'default' (default: %(default)s)")
    p.add_argument("--method", default="gradcam", choices=METHODS,
                   help="saliency: input gradient; smoothgrad: gradient averaged over noisy copies; gradcam: class "
                        "map on the model's Grad-CAM layer; activations: feature maps; filters: inputs that excite "
                        "conv filters (default: %(default)s)")
    p.add_argument("--layer", metavar="NAME", help="gradcam: layer (default: the model's cam_layer); activations: "
                   "one layer (default: every conv layer); filters: a conv layer (default: the last). Names as in "
                   "`ferlab summary MODEL`")
    p.add_argument("--target", metavar="CLASS", help=f"class to explain, or '{ALL_CLASSES}' for one panel per class "
                   "(default: the predicted class)")
    p.add_argument("--out", metavar="DIR", default="ferlab-explain", help="folder for the PNGs (default: %(default)s)")
    p.add_argument("--detector", default="yunet", choices=DETECTORS, help="face detector (default: %(default)s)")
    p.add_argument("--samples", type=int, default=25, help="smoothgrad: noisy copies (default: %(default)s)")
    p.add_argument("--filters", metavar="LIST", type=_index_list, help="filters: indices such as 0-7,12 "
                   "(default: the first 16)")
    p.add_argument("--steps", type=int, default=64, help="filters: gradient ascent steps (default: %(default)s)")
    p.set_defaults(func=_explain)


def _index_list(text: str) -> tuple[int, ...]:
    out = []
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            out += range(int(lo), int(hi or lo) + 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of indices such as 0-7,12") from None
    return tuple(out)


def _explain(args: argparse.Namespace) -> int:
    report = run(ExplainConfig(images=tuple(args.images), model=args.model, method=args.method, layer=args.layer,
                               target=args.target, out=args.out, detector=args.detector, samples=args.samples,
                               filters=args.filters, steps=args.steps))
    for line in report.messages:
        print(line)
    for path in report.written:
        print(f"wrote {path}")
    print(f"{len(report.written)} figure(s) in {args.out}")
    return 1 if report.errors else 0

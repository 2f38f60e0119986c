"""`ferlab augment-preview`: a PNG grid of faces and augmented copies, to check a recipe before training."""
from __future__ import annotations

import argparse

from ..data.preview_config import PreviewConfig
from .options import add_options, build


def add_parsers(subparsers) -> None:
    p = subparsers.add_parser(
        "augment-preview", help="show what an augmentation recipe does to faces, as a PNG grid",
        description="Draw faces of a dataset split, one per row (one of each class first), each followed by "
                    "augmented copies made exactly as training makes them: the --augment preset with the "
                    "given ranges on top, e.g. --rotate 30 --shift 0.1 --zoom 0.2 --flip 0.5 for rotation "
                    "+-30 deg, shift +-4.8 px at 48 px, zoom 0.8-1.2 and flips.")
    add_options(p, PreviewConfig)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..data.augment_config import describe
    from ..data.preview import make_preview

    cfg = build(args, PreviewConfig)
    result = make_preview(cfg)
    h, w, _ = result.shape
    print(f"wrote {result.path} ({w}x{h} px: {len(result.classes)} faces x (original + {cfg.copies} augmented); "
          f"rows: {', '.join(result.classes)})")
    given = ", ".join(f"--{k.replace('_', '-')} {v:g}" for k, v in vars(cfg.aug).items() if v is not None)
    over = f" with {given}" if given else ""
    print(f"augmentation {cfg.augment}{over}: {describe(result.augment, cfg.size)}")
    return 0

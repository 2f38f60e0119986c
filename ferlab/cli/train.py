"""`ferlab train`."""
from __future__ import annotations

from ..train.config import RECIPES, TrainConfig
from .options import add_options, given


def add_parsers(sub) -> None:
    p = sub.add_parser("train", help="train a model; writes runs/<name>/ with checkpoints, metrics and plots",
                       description="Train a model. Options come from --recipe, then --config FILE, then flags.")
    p.add_argument("--recipe", choices=sorted(RECIPES), help="named recipe (default reproduces the bundled model)")
    p.add_argument("--config", metavar="FILE", help="YAML or JSON file of options")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last.pt (flags such as --epochs "
                                                       "override its saved config)")
    add_options(p, TrainConfig)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..train import config, loop

    overrides = given(args, TrainConfig)
    if args.resume:
        run_dir = loop.resume(args.resume, **overrides)
    else:
        cfg = config.build(args.recipe, args.config, **overrides)
        if not cfg.data:
            raise ValueError("no dataset: pass --data PATH (a FER2013 CSV or an image folder)")
        run_dir = loop.fit(cfg)
    print(f"run directory: {run_dir}")
    return 0

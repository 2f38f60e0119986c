"""`ferlab train`."""
from __future__ import annotations

from ..train.config import RECIPES, TeacherConfig, TrainConfig
from .options import add_options, build, given


def add_parsers(sub) -> None:
    p = sub.add_parser("train", help="train a model; writes runs/<name>/ with checkpoints, metrics and plots",
                       description="Train a model. Options come from --recipe, then --config FILE, then flags.")
    p.add_argument("--recipe", choices=sorted(RECIPES),
                   help="named recipe (default trains the bundled model: 120 epochs, then the 8-epoch polish "
                        "stage; README: The bundled models)")
    p.add_argument("--config", metavar="FILE", help="YAML or JSON file of options")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last.pt (flags such as --epochs "
                                                       "override its saved config)")
    add_options(p, TrainConfig)
    p.set_defaults(func=run)
    t = sub.add_parser("teacher", help="write a teacher's soft labels on a training split, for train --teacher",
                       description="Average the logits of one or more checkpoints over a split and write them, "
                                   "keyed by image, to an .npz that `ferlab train --teacher FILE` distils from.")
    add_options(t, TeacherConfig)
    t.set_defaults(func=run_teacher)


def run(args) -> int:
    from ..train import config, distributed, loop

    overrides = given(args, TrainConfig)
    if args.resume:
        run_dir = loop.resume(args.resume, **overrides)
    else:
        cfg = config.build(args.recipe, args.config, **overrides)
        if not cfg.data:
            raise ValueError("no dataset: pass --data PATH (a FER2013 CSV or an image folder)")
        run_dir = loop.fit(cfg)
    if distributed.launched_as_main():  # under torchrun every rank returns here
        print(f"run directory: {run_dir}")
    return 0


def run_teacher(args) -> int:
    from ..train import teacher

    cfg = build(args, TeacherConfig)
    out = teacher.write(list(cfg.models), cfg.data, cfg.split, cfg.out, tta=cfg.tta, device=cfg.device,
                        amp=cfg.amp)
    print(f"wrote {out}")
    return 0

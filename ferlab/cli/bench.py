"""`ferlab bench train` and `ferlab bench infer`: figures written to JSON files."""
from __future__ import annotations

from ..config import RECIPES


def add_parsers(sub) -> None:
    p = sub.add_parser("bench", help="reproducible speed/accuracy benchmarks writing JSON")
    bsub = p.add_subparsers(dest="bench", metavar="WHAT")
    bsub.required = True
    t = bsub.add_parser("train", help="train a recipe; val accuracy at time points, images/s, GFLOP/s vs peak")
    t.add_argument("--recipe", default="fast", choices=sorted(RECIPES), help="recipe to train (default: fast)")
    t.add_argument("--data", required=True, help="dataset with train and val splits")
    t.add_argument("--minutes", type=float, default=0.0, help="wall-clock budget in minutes (0 = the recipe's epochs)")
    t.add_argument("--epochs", type=int, help="override the recipe's epochs")
    t.add_argument("--model", help="override the recipe's model")
    t.add_argument("--name", default="", help="run name under --runs")
    t.add_argument("--runs", default="runs", help="parent folder of run directories")
    t.add_argument("--out", default="benchmarks/results/train.json", help="JSON file to write")
    t.set_defaults(func=run_train)

    i = bsub.add_parser("infer", help="faces/s of classification at batch 1 and 64, PyTorch and ONNX Runtime")
    i.add_argument("models", nargs="*", default=["default"], help="checkpoints or registered model names "
                   "(default: the bundled model)")
    i.add_argument("--threads", type=int, default=2, help="threads (default: 2)")
    i.add_argument("--seconds", type=float, default=3.0, help="seconds per measurement")
    i.add_argument("--out", default="benchmarks/results/infer.json", help="JSON file to write")
    i.set_defaults(func=run_infer)


def run_train(args) -> int:
    import json

    from ..bench import bench_train

    overrides = {k: v for k, v in (("epochs", args.epochs), ("model", args.model)) if v is not None}
    r = bench_train(args.recipe, args.data, args.out, budget_minutes=args.minutes, runs_dir=args.runs,
                    name=args.name, **overrides)
    print(json.dumps({k: r[k] for k in ("model", "epochs_run", "train_minutes", "images_per_s_median", "train_gflops",
                                        "fraction_of_peak", "val_acc_at_minutes", "best_val_acc", "val_acc_tta")},
                     indent=1))
    print(f"written: {args.out}")
    return 0


def run_infer(args) -> int:
    import json

    from ..bench_infer import bench_infer

    r = bench_infer(args.models, threads=args.threads, seconds=args.seconds, out=args.out)
    print(json.dumps(r, indent=1, default=str)[:4000])
    print(f"written: {args.out}")
    return 0

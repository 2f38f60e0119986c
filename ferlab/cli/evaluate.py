"""`ferlab evaluate` and `ferlab compare`."""
from __future__ import annotations


def add_parsers(sub) -> None:
    p = sub.add_parser("evaluate", help="accuracy, macro-F1, per-class metrics and confusion matrix of a model")
    p.add_argument("model", metavar="RUN_OR_CKPT", help="run directory, checkpoint file, or 'default'")
    p.add_argument("--data", required=True, help="dataset (FER2013 CSV or image folder)")
    p.add_argument("--split", default="val", help="split to evaluate: train, val, test or all (default: val)")
    p.add_argument("--tta", choices=["none", "flip", "flip_shift"], help="test-time augmentation "
                   "(default: the one recorded in the checkpoint)")
    p.add_argument("--json", metavar="FILE", help="also write the metrics JSON here")
    p.add_argument("--out", metavar="DIR", help="write eval/confusion files here (default: the run directory)")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable images and list them")
    p.set_defaults(func=run_evaluate)

    c = sub.add_parser("compare", help="side-by-side table of runs")
    c.add_argument("runs", nargs="+", metavar="RUN_DIR")
    c.add_argument("--csv", metavar="FILE", help="also write the table as CSV")
    c.set_defaults(func=run_compare)


def run_evaluate(args) -> int:
    from ..evaluate import evaluate, format_metrics

    m = evaluate(args.model, args.data, args.split, tta=args.tta, out_dir=args.out, json_path=args.json,
                 skip_bad=args.skip_bad)
    print(f"{args.model} on {args.split} (tta {m['tta']}):")
    print(format_metrics(m))
    return 0


def run_compare(args) -> int:
    from ..evaluate import compare, format_table

    print(format_table(compare(args.runs, args.csv)))
    return 0

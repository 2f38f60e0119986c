"""`ferlab evaluate` and `ferlab compare`."""
from __future__ import annotations

from ..evaluate.config import CompareConfig, EvaluateConfig
from .options import add_options, build


def add_parsers(sub) -> None:
    p = sub.add_parser("evaluate", help="accuracy, macro-F1, per-class metrics and confusion matrix of a model")
    add_options(p, EvaluateConfig)
    p.set_defaults(func=run_evaluate)
    c = sub.add_parser("compare", help="side-by-side table of runs; --html/--png: overlaid validation curves, "
                                       "per-class F1")
    add_options(c, CompareConfig)
    c.set_defaults(func=run_compare)


def run_evaluate(args) -> int:
    from ..evaluate.job import run
    from ..evaluate.metrics import format_metrics

    cfg = build(args, EvaluateConfig)
    m = run(cfg)
    print(f"{cfg.model} on {cfg.split} (tta {m['tta']}):")
    print(format_metrics(m))
    return 0


def run_compare(args) -> int:
    from ..evaluate.compare import compare, format_table

    cfg = build(args, CompareConfig)
    rows = compare(list(cfg.runs), cfg.csv)
    print(format_table(rows))
    if cfg.png:
        from ..evaluate.compare import plot

        print(f"wrote {plot(list(cfg.runs), cfg.png)}")
    if cfg.html:
        from ..report.compare import write_compare_html

        print(f"wrote {write_compare_html(list(cfg.runs), rows, cfg.html)}")
    return 0

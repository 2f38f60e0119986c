"""`ferlab report`: one self-contained HTML page about a training run."""
from __future__ import annotations

from ..report.config import ReportConfig
from .options import add_options, build


def add_parsers(sub) -> None:
    p = sub.add_parser("report", help="HTML report of a run: config, data, curves, per-class metrics, confusion, "
                                      "calibration, mistakes, explanations",
                       description="Evaluate a run's best.pt on a split of its dataset and write one HTML file "
                                   "with every figure embedded (it opens offline).")
    add_options(p, ReportConfig)
    p.set_defaults(func=run_report)


def run_report(args) -> int:
    from ..report.build import run

    cfg = build(args, ReportConfig)
    path, m = run(cfg)
    print(f"{cfg.run} on {cfg.split}: accuracy {m['accuracy']:.4f}  macro-F1 {m['macro_f1']:.4f}  n={m['n']}")
    print(f"wrote {path}")
    return 0

"""`ferlab compare --html`: the comparison table of runs and their overlaid validation curves as
one self-contained HTML page."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from .. import __version__
from ..evaluate.compare import plot
from .render import png_data, render

_HEADINGS = {"run": "run", "model": "model", "params": "parameters", "epochs": "epochs", "minutes": "minutes",
             "train_acc": "train acc (best epoch)", "val_acc": "val acc (best epoch)",
             "val_macro_f1": "val macro-F1", "val_acc_eval": "val acc (final, TTA)",
             "val_macro_f1_eval": "val macro-F1 (final)", "val_tta": "val TTA", "test_acc_eval": "test acc",
             "test_macro_f1_eval": "test macro-F1", "test_tta": "test TTA"}


def _cell(key: str, value) -> str:
    if value is None:
        return "-"
    if key == "params":
        return f"{int(value):,}"
    if key == "minutes":
        return f"{value:.1f}"
    if isinstance(value, float):
        return f"{value:.4f}" if "acc" in key else f"{value:.3f}"
    return str(value)


def write_compare_html(runs: list[str | Path], rows: list[dict], path: str | Path) -> Path:
    """Write the page for `rows` (as `evaluate.compare.compare` returns them for `runs`)."""
    keys = list(dict.fromkeys(k for row in rows for k in row))
    main = [k for k in keys if not k.startswith("f1_")]
    f1 = [k for k in keys if k.startswith("f1_")]
    with tempfile.TemporaryDirectory(prefix="ferlab-compare-") as tmp:
        figure = png_data(plot(runs, Path(tmp) / "compare.png"))
        return render("compare.html.j2", path, title=f"ferlab compare: {', '.join(r['run'] for r in rows)}",
                      figure=figure,
                      headings=[_HEADINGS.get(k, k) for k in main],
                      table=[[_cell(k, row.get(k)) for k in main] for row in rows],
                      f1_classes=[k[3:] for k in f1],
                      f1_table=[[row["run"]] + [_cell(k, row.get(k)) for k in f1] for row in rows],
                      version=__version__, generated=time.strftime("%Y-%m-%d %H:%M"))

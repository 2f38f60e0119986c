"""Options of `ferlab evaluate` and `ferlab compare` (torch-free: the CLI is derived from them)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..config import check, option

#: Test-time augmentations of a whole-dataset pass (`evaluate.tta.predict_logits`), named once here
#: (torch-free) for evaluate, report, train and teacher; predict and serve have their own set
#: (`predict.config.PredictTTA`: no ten_crop, plus auto).
TTA = Literal["none", "flip", "flip_shift", "ten_crop"]


@dataclass(frozen=True)
class EvaluateConfig:
    model: str = option("", "checkpoint: a run directory, a .pt file, or a bundled model ('default', 'tiny')",
                        positional=True, metavar="MODEL")
    data: str = option("", "dataset: FER2013 CSV or an image folder")
    split: str = option("val", "split to evaluate: train, val, test or all")
    tta: TTA | None = option(
        None, "test-time augmentation (default: the one recorded in the checkpoint)")
    json: str | None = option(None, "also write the metrics JSON to this file", metavar="FILE")
    out: str | None = option(None, "folder for eval_<split>.json and confusion files (default: the run "
                                   "directory when MODEL is a run)", metavar="DIR")
    skip_bad: bool = option(False, "skip unreadable images and list them")
    device: str = option("auto", "where to run the model: auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps")

    def __post_init__(self):
        problems = []
        if not self.model:
            problems.append("name the checkpoint to evaluate (a run directory, a .pt file, or 'default')")
        if not self.data:
            problems.append("give the dataset with --data PATH (a FER2013 CSV or an image folder)")
        check(self, problems, "evaluate options")


@dataclass(frozen=True)
class CompareConfig:
    runs: tuple[str, ...] = option((), "run directories to put side by side", positional=True, metavar="RUN")
    csv: str | None = option(None, "also write the table as CSV to this file", metavar="FILE")
    html: str | None = option(None, "also write a self-contained HTML page (table, overlaid validation curves, "
                                    "per-class F1) to this file", metavar="FILE")
    png: str | None = option(None, "also write the overlaid validation curves and per-class F1 as PNG to this file",
                             metavar="FILE")

    def __post_init__(self):
        problems = [] if self.runs else ["name at least one run directory"]
        if self.html and not self.html.lower().endswith((".html", ".htm")):
            problems.append(f"html must be an .html file, got {self.html!r}")
        if self.png and not self.png.lower().endswith(".png"):
            problems.append(f"png must be a .png file, got {self.png!r}")
        check(self, problems, "compare options")

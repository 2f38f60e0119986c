"""Options of `ferlab report` (torch-free: the CLI is derived from them)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..config import check, option
from ..evaluate.config import TTA


@dataclass(frozen=True)
class ReportConfig:
    run: str = option("", "run directory (holds config.yaml, metrics.csv and best.pt)", positional=True, metavar="RUN")
    split: Literal["val", "test"] = option("val", "split the metrics, galleries and calibration are computed on")
    out: str | None = option(None, "the HTML file (default: RUN/report_<split>.html)", metavar="FILE.html")
    data: str | None = option(None, "dataset (default: the data path in the run's config)", metavar="PATH")
    tta: TTA | None = option(
        None, "test-time augmentation (default: the one recorded in the checkpoint)")
    mistakes: int = option(6, "mistakes gallery: the most confident mistakes shown per true class", metavar="N")
    faces: int = option(3, "explanations: faces shown per class", metavar="N")
    method: Literal["gradcam", "saliency"] = option(
        "gradcam", "explanations: gradcam, or saliency (used anyway for models without a Grad-CAM layer)")
    skip_bad: bool = option(False, "skip unreadable images and list them")

    def __post_init__(self):
        problems = []
        if not self.run:
            problems.append("name the run directory to report on")
        if self.mistakes < 0 or self.faces < 0:
            problems.append(f"mistakes and faces must be >= 0, got {self.mistakes} and {self.faces}")
        if self.out is not None and not self.out.lower().endswith((".html", ".htm")):
            problems.append(f"out must be an .html file, got {self.out!r}")
        check(self, problems, "report options")

"""Options of `ferlab explain` (torch-free: the CLI is derived from them)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..config import check, index_list, option
from ..predict.config import DetectorConfig

METHODS = ("saliency", "smoothgrad", "gradcam", "activations", "filters")
ALL_CLASSES = "all"


@dataclass(frozen=True)
class ExplainConfig:
    images: tuple[str, ...] = option((), "photos or face crops; photos go through detection and alignment as in "
                                         "`ferlab predict`", positional=True, metavar="IMAGE")
    model: str = option("default", "checkpoint: a run directory, a .pt file, or a bundled model ('default', 'tiny')")
    method: Literal["saliency", "smoothgrad", "gradcam", "activations", "filters"] = option(
        "gradcam", "saliency: input gradient; smoothgrad: gradient averaged over noisy copies; gradcam: class map "
                   "on the model's Grad-CAM layer; activations: feature maps; filters: inputs that excite conv "
                   "filters")
    layer: str | None = option(None, "gradcam: layer (default: the model's cam_layer); activations: one layer "
                                     "(default: every conv layer); filters: a conv layer (default: the last). Names "
                                     "as in `ferlab summary MODEL`", metavar="NAME")
    target: str | None = option(None, f"class to explain, or '{ALL_CLASSES}' for one panel per class (default: the "
                                      "predicted class)", metavar="CLASS")
    out: str = option("ferlab-explain", "folder for the PNG figures", metavar="DIR")
    detector: DetectorConfig = option(factory=DetectorConfig, help="face detection")
    samples: int = option(25, "smoothgrad: noisy copies")
    filters: tuple[int, ...] | None = option(None, "filters: indices such as 0-7,12 (default: the first 16)",
                                             parse=index_list, metavar="LIST")
    steps: int = option(64, "filters: gradient ascent steps")

    def __post_init__(self):
        problems = []
        if self.method != "filters" and not self.images:
            problems.append(f"method {self.method!r} needs at least one image")
        if self.samples < 1:
            problems.append(f"samples must be >= 1, got {self.samples}")
        if self.steps < 1:
            problems.append(f"steps must be >= 1, got {self.steps}")
        check(self, problems, "explain options")

"""Options of `ferlab explain` (torch-free: the CLI is derived from them)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..config import check, index_list, option
from ..predict.config import DetectorConfig

METHODS = ("saliency", "smoothgrad", "gradcam", "masked", "activations", "filters")
ALL_CLASSES = "all"


@dataclass(frozen=True)
class ExplainConfig:
    images: tuple[str, ...] = option((), "photos, face crops, or folders of them (searched recursively; in "
                                         "<class>/<file> folders the true class is shown); photos go through "
                                         "detection and alignment as in `ferlab predict`", positional=True,
                                     metavar="IMAGE")
    model: str = option("default", "checkpoint: a run directory, a .pt file, or a bundled model ('default', 'tiny')")
    method: Literal["saliency", "smoothgrad", "gradcam", "masked", "activations", "filters"] = option(
        "gradcam", "saliency: input gradient; smoothgrad: gradient averaged over noisy copies; gradcam: class map "
                   "on the model's Grad-CAM layer; masked: the face masked to its most salient pixels (--keep); "
                   "activations: feature maps; filters: inputs that excite conv filters (the first conv layer: "
                   "its kernels)")
    layer: str | None = option(None, "gradcam: layer (default: the model's cam_layer); activations: one layer "
                                     "(default: every conv layer); filters: a conv layer (default: the last). Names "
                                     "as in `ferlab summary MODEL`", metavar="NAME")
    target: str | None = option(None, f"class to explain, or '{ALL_CLASSES}' for one panel per class on one shared "
                                      "scale (default: the predicted class)", metavar="CLASS")
    out: str = option("ferlab-explain", "folder for the PNG figures", metavar="DIR")
    detector: DetectorConfig = option(factory=DetectorConfig, help="face detection")
    samples: int = option(25, "smoothgrad: noisy copies")
    keep: float = option(0.1, "masked: fraction of the pixels kept, the most salient ones (0-1]")
    channels: tuple[int, ...] | None = option(None, "activations: channel indices such as 0-15 (default: every "
                                                    "channel, 64 per figure)", parse=index_list, metavar="LIST")
    filters: tuple[int, ...] | None = option(None, "filters: indices such as 0-7,12 (default: the first 16; "
                                                   "for the first conv layer, all its kernels)",
                                             parse=index_list, metavar="LIST")
    steps: int = option(64, "filters: gradient ascent steps")
    per_folder: int = option(0, "folders: explain at most this many images of each subfolder (e.g. of each class), "
                                "in name order (0 = all)", metavar="N")

    def __post_init__(self):
        problems = []
        if self.method != "filters" and not self.images:
            problems.append(f"method {self.method!r} needs at least one image")
        if self.samples < 1:
            problems.append(f"samples must be >= 1, got {self.samples}")
        if self.steps < 1:
            problems.append(f"steps must be >= 1, got {self.steps}")
        if not 0 < self.keep <= 1:
            problems.append(f"keep must be a fraction in (0, 1], got {self.keep}")
        if self.per_folder < 0:
            problems.append(f"per_folder must be >= 0, got {self.per_folder}")
        check(self, problems, "explain options")

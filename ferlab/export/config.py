"""Options of `ferlab export` (torch-free: the CLI is derived from them)."""
from __future__ import annotations

from dataclasses import dataclass

from ..config import check, option

FORMATS = ("onnx",)
QUANTIZATIONS = ("int8",)


@dataclass(frozen=True)
class ExportConfig:
    model: str = option("default", "checkpoint: a run directory, a .pt file, or a bundled model ('default', 'tiny')",
                        positional=True, metavar="MODEL")
    format: str = option("onnx", f"output format, one of: {', '.join(FORMATS)}")
    onnx: str | None = option(None, "the ONNX file to write (default: beside the checkpoint, e.g. best.onnx / "
                                    "best.int8.onnx; the bundled models go to the current folder)",
                              aliases=("--out",), metavar="FILE")
    quantize: str | None = option(None, f"quantize weights and activations: {', '.join(QUANTIZATIONS)} (static, "
                                        "random calibration)", metavar="MODE")
    opset: int = option(17, "ONNX opset version")

    def __post_init__(self):
        problems = []
        if self.format not in FORMATS:
            problems.append(f"unknown export format {self.format!r}; choose one of: {', '.join(FORMATS)}")
        if self.quantize is not None and self.quantize not in QUANTIZATIONS:
            problems.append(f"unknown quantization {self.quantize!r}; choose one of: {', '.join(QUANTIZATIONS)}")
        check(self, problems, "export options")

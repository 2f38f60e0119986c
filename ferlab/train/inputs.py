"""What a run trains on: the two splits in the run's label set, the preprocessing recorded in its
checkpoints, and each epoch's sample order."""
from __future__ import annotations

import sys
from dataclasses import replace

import torch

from .. import data
from ..data.sampling import epoch_size as oversampled_size, oversample
from ..preprocess import Preprocess
from . import distributed
from .config import TrainConfig
from .job import Job


def load_data(cfg: TrainConfig, size: int, channels: int,
              classes: list[str] | None = None) -> tuple[data.FaceData, data.FaceData]:
    """Train and validation splits with `--class-map` applied, then restricted to `classes`
    (default: `cfg.classes`, else every class). Classes without a single training image are
    refused: they cannot be learnt."""
    want = list(classes or cfg.classes)
    mapping = data.parse_class_map(cfg.class_map) if cfg.class_map else ()
    raw = data.load(cfg.data, cfg.train_split, size=size, channels=channels, skip_bad=cfg.skip_bad)
    train = data.relabel(raw, mapping, want, what=f"the {cfg.train_split!r} split of {cfg.data}")
    if cfg.val_fraction:
        train, val = data.stratified_split(train, cfg.val_fraction, cfg.seed)
    else:
        val = data.load(cfg.data, cfg.val_split, size=size, channels=channels, skip_bad=cfg.skip_bad)
        val_map = [(o, n) for o, n in mapping if o in val.classes]
        present = {dict(val_map).get(c, c) for c in val.classes}
        shared = [c for c in train.classes if c in present]
        if not shared:
            raise data.BadInputError(f"the {cfg.val_split!r} split of {cfg.data} has none of the training classes "
                                     f"{train.classes}; it holds {val.classes}")
        # the run's label set, even where val lacks a class (its support is then 0)
        val = data.relabel(val, val_map, shared, what=f"the {cfg.val_split!r} split")
        val = replace(val, labels=torch.tensor([train.classes.index(shared[i]) for i in val.labels.tolist()],
                                               dtype=torch.int64), classes=train.classes)
    dropped = sorted(set(raw.classes) - set(dict(mapping)) - set(train.classes))
    if dropped:
        print(f"classes left out (not in --classes): {', '.join(dropped)}", file=sys.stderr)
    for d in (raw, val):
        for path, why in d.skipped:
            print(f"skipped {path}: {why}", file=sys.stderr)
    empty = [c for c, n in train.class_counts().items() if n == 0]
    if empty:
        raise data.BadInputError(f"class(es) {empty} have no training images in {cfg.data}; add images or leave "
                                 f"them out with --classes {','.join(c for c in train.classes if c not in empty)}")
    return train, val


def preprocess_for(cfg: TrainConfig, size: int, channels: int, spec, init: dict | None) -> Preprocess:
    """The input recipe: --mean/--std when given, else the --init checkpoint's, else the architecture's."""
    if init is not None:
        base = Preprocess.from_dict(init["preprocess"])
        keep = base.size == size and base.channels == channels
        mean, std = (cfg.mean, cfg.std) if cfg.mean else (base.mean, base.std) if keep else spec.normalization(channels)
        return Preprocess(size=size, channels=channels, mean=mean, std=std,
                          crop_margin=cfg.crop_margin or base.crop_margin,
                          pixel_mean=base.pixel_mean if keep and not cfg.mean else ())
    mean, std = (cfg.mean, cfg.std) if cfg.mean else spec.normalization(channels)
    return Preprocess(size=size, channels=channels, mean=mean, std=std, crop_margin=cfg.crop_margin)


def pixel_maxabs(pp: Preprocess, images: torch.Tensor) -> Preprocess:
    """`pp` centred on the mean face of uint8 `images` (N, C, S, S) and scaled by the largest
    absolute value left, so that the training inputs lie in [-1, 1]."""
    mean = torch.zeros(images.shape[1:], dtype=torch.float64)
    for i in range(0, len(images), 4096):  # in chunks: a float copy of all of FER2013 is 265 MB
        mean += images[i:i + 4096].double().sum(0)
    mean = (mean / len(images) / 255).float()
    peak = max(float((images[i:i + 4096].float() / 255 - mean).abs().max()) for i in range(0, len(images), 4096))
    return replace(pp, pixel_mean=tuple(mean.flatten().tolist()), mean=(0.0,), std=(max(peak, 1e-6),))


def epoch_size(labels: torch.Tensor, num_classes: int, cfg: TrainConfig) -> int:
    """Samples per epoch (all ranks): the split, or the split grown by oversampling."""
    if cfg.balance != "oversample":
        return len(labels)
    return oversampled_size(labels.cpu(), num_classes, cfg.oversample_to)


def epoch_order(job: Job) -> torch.Tensor:
    """This rank's sample indices for the next epoch (a shard of one shared permutation)."""
    n = len(job.labels)
    labels = job.labels.cpu()
    if job.cfg.balance == "sampler":
        counts = torch.bincount(labels, minlength=job.num_classes).float()
        order = torch.multinomial((1.0 / counts)[labels], n, replacement=True, generator=job.g_order)
    elif job.cfg.balance == "oversample":
        order = oversample(labels, job.num_classes, job.cfg.oversample_to, job.g_order)
    else:
        order = torch.randperm(n, generator=job.g_order)
    return distributed.shard(order, job.ctx).to(job.ctx.device)

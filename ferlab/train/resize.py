"""`--progressive`: progressive resizing. The first epochs train on smaller inputs, which cost
about the square of the side, so a time budget holds more epochs; the side rises linearly to the
full one, where the last quarter of the run trains (and where the model is evaluated)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .config import TrainConfig

#: Fraction of the run after which every epoch trains at full size: the low-lr end of the cosine
#: then adapts the filters and BatchNorm statistics to the size the model is evaluated at.
RAMP_END = 0.75
#: Share of an epoch's time that does not shrink with the input (optimizer, EMA, validation at full
#: size): FerNet-S epochs at 32 and 40 pixels took 0.55 and 0.76 of a 48-pixel epoch, which
#: 0.2 + 0.8 x (side / 48)^2 matches (Intel AMX machine, 2026-12-07).
FIXED_SHARE = 0.2


def side(cfg: TrainConfig, full: int, epoch: int, epochs: int) -> int:
    """Training input side of `epoch` (1-based) of `epochs`: `cfg.progressive` at the first, rising linearly
    to `full` at RAMP_END of the run, in steps of 4 pixels (rounded: full size may come an epoch
    earlier)."""
    if not cfg.progressive or cfg.progressive >= full:
        return cfg.train_crop if 0 < cfg.train_crop < full else full  # --train-crop's windows, if any
    ramp = max(1.0, RAMP_END * epochs - 1)
    grown = cfg.progressive + min(1.0, (epoch - 1) / ramp) * (full - cfg.progressive)
    return min(full, 4 * round(grown / 4))


def cost(side_: int, full: int) -> float:
    """An epoch at `side_` in units of a full-size epoch's time."""
    return FIXED_SHARE + (1 - FIXED_SHARE) * (side_ / full) ** 2


def epochs_cost(cfg: TrainConfig, full: int, first: int, last: int, epochs: int) -> float:
    """Epochs `first`..`last` of a run of `epochs`, in full-size epochs' time."""
    return sum(cost(side(cfg, full, e, epochs), full) for e in range(first, last + 1))


def shrink(x: torch.Tensor, side_: int) -> torch.Tensor:
    """The batch resampled to side x side; antialiased, as a camera's smaller image would be."""
    if side_ >= x.shape[-1]:
        return x
    return F.interpolate(x, size=(side_, side_), mode="bilinear", antialias=True, align_corners=False)

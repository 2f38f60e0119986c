"""`Job`: everything one training epoch needs, built once by `loop.fit`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..preprocess import Preprocess
from . import distributed
from .config import TrainConfig
from .state import TrainState


@dataclass
class Job:
    """Everything one epoch needs; `images`/`labels` are the training split on the training device."""

    cfg: TrainConfig
    ctx: distributed.Context
    model: torch.nn.Module
    """The model being trained (DistributedDataParallel-wrapped in a distributed run)."""
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    ema: torch.optim.swa_utils.AveragedModel | None
    pp: Preprocess
    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    class_weights: torch.Tensor | None
    g_order: torch.Generator
    """CPU generator of the epoch permutation: the same seed on every rank."""
    g_aug: torch.Generator
    """Augmentation generator, on the device, seeded per rank."""
    state: TrainState
    teacher: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    """`--teacher`: (batch, its indices into `images`) -> the teacher's logits (`teacher.prepare`)."""
    precision: str = "autocast"
    """`precision.choose`'s answer: how the steps use bfloat16 ("autocast", "matmul" or "off")."""

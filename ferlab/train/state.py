"""The training loop's state: what `last.pt` stores so that a resumed run continues exactly."""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch


@dataclass
class TrainState:
    epoch: int = 0
    """Epochs finished."""
    step: int = 0
    """Optimizer steps taken."""
    total_steps: int = 0
    """Steps of the learning-rate schedule (cosine)."""
    warmup_steps: int = 0
    schedule_start: int = 0
    """Step at which the current schedule began (> 0 after `--restart-schedule`)."""
    best: float | None = None
    """Best value of the monitored metric so far (the one in best.pt)."""
    best_epoch: int = 0
    bad_epochs: int = 0
    """Epochs since the monitored metric last improved."""
    elapsed: float = 0.0
    """Seconds of training and validation, summed over epochs (resumes included)."""
    planned_epochs: int = 0
    """With `fit_budget`: the epochs the time budget allows, where the cosine ends (0 = `epochs`)."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainState":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def rng_state(order: torch.Generator, aug: torch.Generator) -> dict:
    """Every random stream a run draws from, in types that `torch.load(weights_only=True)` reads:
    the epoch permutation, the augmentation generator (on the training device), torch's global
    CPU (and CUDA) streams, numpy's and Python's."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    out = {"order": order.get_state(), "aug": aug.get_state(), "torch": torch.get_rng_state(),
           "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                     "has_gauss": int(has_gauss), "gauss": float(gauss)},
           "python": random.getstate()}
    if aug.device.type == "cuda":
        out["cuda"] = torch.cuda.get_rng_state(aug.device)
    return out


def set_rng_state(state: dict, order: torch.Generator, aug: torch.Generator) -> None:
    order.set_state(state["order"])
    aug.set_state(state["aug"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and aug.device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], aug.device)
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))

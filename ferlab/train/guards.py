"""Guards that stop a run which cannot succeed, with a diagnosis: output heads that cannot
produce logits, NaN/inf losses and weights, validation stuck at chance level, a follow-up stage
whose directory is taken."""
from __future__ import annotations

from pathlib import Path

import torch

from ..models import FERModel
from .config import TrainConfig, follow_up


class TrainingDiverged(RuntimeError):
    """The loss or the weights became NaN/inf; the message carries a diagnosis."""


class BadHeadError(ValueError):
    """The model's output layer cannot produce logits for cross-entropy."""


def check_head(model: FERModel, name: str) -> None:
    """Refuse heads that make cross-entropy training fail (the reports' ReLU output layer)."""
    if model.head_activation is not None:
        raise BadHeadError(
            f"model {name!r} ends in a {model.head_activation} activation. Cross-entropy needs raw logits "
            "(any real value); a ReLU output clips them at 0, gradients die and the loss goes to NaN or "
            "stays flat. Remove the output activation (ferlab applies softmax itself), or pick another "
            "model from `ferlab models`.")


def check_logits(logits: torch.Tensor, num_classes: int) -> None:
    """Probe the first batch: wrong width, or rows that already are probabilities."""
    if logits.ndim != 2 or logits.shape[1] != num_classes:
        raise BadHeadError(f"model output has shape {tuple(logits.shape)}, expected (batch, {num_classes})")
    if logits.shape[0] > 1 and (logits >= 0).all() and torch.allclose(logits.sum(1), torch.ones(len(logits)),
                                                                       atol=1e-3):
        raise BadHeadError("model output rows already sum to 1 (a softmax head); cross-entropy applies "
                           "log-softmax itself, so a softmax head trains poorly. Output raw logits.")


def diagnose_divergence(what: str, epoch: int, lr: float, cfg: TrainConfig) -> str:
    """`what` went NaN/inf (the loss at a step, or the weights after an epoch): why, and what to try."""
    return (f"{what} became NaN/inf at epoch {epoch} (lr {lr:.3g}). Likely causes: learning rate "
            f"too high for {cfg.optimizer} (try --lr {cfg.lr / 10:g}); an output activation on the model head; "
            "inputs not normalised; bf16/fp16 overflow in a custom layer (try --no-amp). The run stopped; "
            "best.pt, if any, holds the last good (finite) weights.")


def chance_warning(val_acc: float, val_labels: torch.Tensor, num_classes: int, epochs: int) -> str | None:
    majority = torch.bincount(val_labels, minlength=num_classes).max().item() / max(len(val_labels), 1)
    chance = max(1.0 / num_classes, majority)
    if val_acc <= chance + 0.01:
        return (f"validation accuracy {val_acc:.3f} is at chance level ({chance:.3f}) after {epochs} epochs. "
                "Likely causes: preprocessing at prediction differs from training (size, colour mode, "
                "scaling); frozen or mismatched BatchNorm statistics; labels in a different order than the "
                "images (check class folders / CSV codes); learning rate far too high or too low.")
    return None


def holds_run(run_dir: Path) -> bool:
    return (run_dir / "last.pt").exists() or (run_dir / "best.pt").exists()


def refuse_taken_follow_up(cfg: TrainConfig, run_dir) -> None:
    # Checked before the first stage, not after it: a taken <run>_<stage> would otherwise stop the
    # job only once the first stage's hours of training are spent. (A run without --name gets a
    # fresh timestamped name, so its follow-up's directory cannot be taken.)
    if not cfg.then or not (run_dir or cfg.name):
        return
    first = Path(run_dir) if run_dir else Path(cfg.out) / cfg.name
    nxt = follow_up(cfg, first)
    nxt_dir = Path(nxt.out) / nxt.name
    if holds_run(nxt_dir):
        raise FileExistsError(f"{nxt_dir} already holds a run, and --then {cfg.then} would write its stage there "
                              f"after {first.name}; resume that stage with `ferlab train --resume {nxt_dir}`, "
                              "move it away, or pass --then '' to stop after the first stage")

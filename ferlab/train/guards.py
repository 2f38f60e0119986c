"""Guards that stop a run which cannot succeed, with a diagnosis: output heads that cannot
produce logits, NaN/inf losses and weights, validation stuck at chance level."""
from __future__ import annotations

import torch

from ..models import FERModel
from .config import TrainConfig


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

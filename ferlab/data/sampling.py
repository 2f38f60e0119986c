"""Class balancing by oversampling: the index list of one training epoch in which every minority
class is topped up with repeats of its own images.

The repeats become augmented copies, not duplicates, because augmentation is drawn per batch on
the fly. This differs from a balanced sampler (`torch.utils.data.WeightedRandomSampler`), which
draws with replacement and keeps the epoch size, so some images are never seen in an epoch: here
every image is seen at least once and the epoch grows to the sum of the per-class counts.
"""
from __future__ import annotations

import torch


def epoch_counts(labels: torch.Tensor, num_classes: int, target: int) -> list[int]:
    """Images per class in one oversampled epoch: max(own count, target); target 0 = the largest class's count."""
    counts = _class_counts(labels, num_classes)
    if target < 0:
        raise ValueError(f"oversampling target must be >= 0 (0 = the largest class's count), got {target}")
    empty = [c for c, n in enumerate(counts) if n == 0]
    if empty:
        raise ValueError(f"cannot oversample: class index(es) {empty} have no images; remove the class or add images")
    goal = target or max(counts)
    return [max(n, goal) for n in counts]


def epoch_size(labels: torch.Tensor, num_classes: int, target: int) -> int:
    """Length of one oversampled epoch (the same every epoch, so schedules can count steps ahead)."""
    return sum(epoch_counts(labels, num_classes, target))


def oversample(labels: torch.Tensor, num_classes: int, target: int, generator: torch.Generator) -> torch.Tensor:
    """Shuffled int64 indices into `labels` for one epoch: every index once, plus repeats that bring
    each class below `target` to exactly `target` entries (classes at or above it keep their count;
    target 0 = the largest class's count).

    Repeats cycle through fresh random permutations of the class, so no image is repeated k + 1
    times before every image of its class is repeated k times. The repeats are augmented copies:
    augmentation is applied per batch on the fly, so two copies of a face differ. Unlike a
    balanced sampler (drawing with replacement, epoch size unchanged), no image is left out and
    the epoch grows to `epoch_size(...)`. `generator` is a CPU generator; the result is
    deterministic for its state."""
    counts = epoch_counts(labels, num_classes, target)
    labels = labels.cpu()
    parts = [torch.arange(len(labels))]
    for c, want in enumerate(counts):
        idx = torch.nonzero(labels == c).flatten()
        extra = want - len(idx)
        if extra <= 0:
            continue
        cycles = -(-extra // len(idx))
        parts += [idx[torch.randperm(len(idx), generator=generator)] for _ in range(cycles)]
        # the last cycle is cut short: its images are the ones repeated once more
        parts[-1] = parts[-1][: extra - (cycles - 1) * len(idx)]
    out = torch.cat(parts)
    return out[torch.randperm(len(out), generator=generator)]


def _class_counts(labels: torch.Tensor, num_classes: int) -> list[int]:
    if labels.dim() != 1 or labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"labels must be a 1-D integer tensor, got {labels.dtype} of shape {tuple(labels.shape)}")
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got {int(labels.min())}..{int(labels.max())}")
    return torch.bincount(labels.cpu(), minlength=num_classes).tolist()

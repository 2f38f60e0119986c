"""`FaceData`, what every dataset source becomes, and the error that names unusable inputs."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class FaceData:
    images: torch.Tensor
    """uint8 (N, C, H, W)."""
    labels: torch.Tensor
    """int64 (N,), indices into `classes`."""
    classes: list[str]
    paths: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(file, reason) for inputs skipped with skip_bad."""
    source: str = ""

    def __len__(self) -> int:
        return len(self.labels)

    def class_counts(self) -> dict[str, int]:
        counts = torch.bincount(self.labels, minlength=len(self.classes)).tolist()
        return dict(zip(self.classes, counts))

    def subset(self, idx: torch.Tensor) -> "FaceData":
        paths = [self.paths[i] for i in idx.tolist()] if self.paths else []
        return FaceData(self.images[idx], self.labels[idx], self.classes, paths, [], self.source)


class BadInputError(ValueError):
    """Input files that cannot be used; the message names them and the fix."""


def bad_files_error(bad: list[tuple[str, str]]) -> BadInputError:
    shown = "\n".join(f"  {p}: {why}" for p, why in bad[:10])
    more = f"\n  ... and {len(bad) - 10} more" if len(bad) > 10 else ""
    return BadInputError(f"{len(bad)} unusable input(s):\n{shown}{more}\n"
                         "fix or remove them, or pass --skip-bad to skip them (they are then listed)")


def stratified_split(data: FaceData, fraction: float, seed: int) -> tuple[FaceData, FaceData]:
    """Hold out `fraction` of each class (deterministic for a seed): (train, val)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"val fraction must be in (0, 1), got {fraction}")
    g = torch.Generator().manual_seed(seed)
    val_idx = []
    for c in range(len(data.classes)):
        idx = torch.nonzero(data.labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        val_idx.append(idx[: int(round(len(idx) * fraction))])
    val = torch.cat(val_idx).sort().values
    mask = torch.ones(len(data), dtype=torch.bool)
    mask[val] = False
    return data.subset(torch.nonzero(mask).flatten()), data.subset(val)

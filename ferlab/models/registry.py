"""Model registry: every architecture is created by name through one uniform call."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn


class FERModel(nn.Module):
    """Interface every registered model implements.

    `forward_features` maps the input to the last spatial (or flat) feature tensor,
    `forward_head` maps that to class scores. `cam_layer` names the module whose output
    Grad-CAM should use, so explainers need no per-architecture code.
    """

    cam_layer: str | None = None
    #: None for a proper logits head. Anything else (e.g. "relu") marks a head that cannot
    #: produce negative logits, which the training guards refuse.
    head_activation: str | None = None

    def __init__(self, num_classes: int, in_chans: int, input_size: int):
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.input_size = input_size

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@dataclass(frozen=True)
class ModelSpec:
    name: str
    factory: Callable[..., FERModel]
    input_size: int
    in_chans: int
    num_classes: int
    description: str
    known_bad: bool = False


_REGISTRY: dict[str, ModelSpec] = {}


def register(name: str, *, input_size: int, in_chans: int, num_classes: int = 7, description: str,
             known_bad: bool = False):
    """Class/function decorator adding a model factory under `name` (duplicates are an error)."""

    def deco(factory):
        if name in _REGISTRY:
            raise ValueError(f"model name {name!r} is already registered")
        _REGISTRY[name] = ModelSpec(name, factory, input_size, in_chans, num_classes, description, known_bad)
        return factory

    return deco


def list_models(include_known_bad: bool = True) -> list[str]:
    return sorted(n for n, s in _REGISTRY.items() if include_known_bad or not s.known_bad)


def get_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(list_models())}") from None


def create_model(name: str, num_classes: int | None = None, in_chans: int | None = None,
                 input_size: int | None = None) -> FERModel:
    """Build a registered model; arguments left as None take the architecture's defaults."""
    spec = get_spec(name)
    model = spec.factory(
        num_classes=spec.num_classes if num_classes is None else num_classes,
        in_chans=spec.in_chans if in_chans is None else in_chans,
        input_size=spec.input_size if input_size is None else input_size,
    )
    model.model_name = name
    return model


def count_params(model: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)

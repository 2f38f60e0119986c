"""Model registry: every architecture is created by name through one uniform call."""
from __future__ import annotations

from dataclasses import dataclass, field
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
    #: Top-level modules that form the head: trained alone in stage 1 of fine-tuning (`--freeze-epochs`);
    #: every other parameter is the body.
    head_modules: tuple[str, ...] = ("head",)
    #: The final layer, one output row per class: `--init` keeps the rows of classes whose names match.
    classifier: str = "head"
    #: The body's stages from input to output, as module names (`--unfreeze N` trains the last N);
    #: empty = each top-level module of the body is a stage.
    stage_names: tuple[str, ...] = ()

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

    def set_drop_path(self, rate: float) -> None:
        """Stochastic depth for training (`--drop-path`): drop residual branches per sample, up to
        `rate` in the last block. A training-time regularizer: in eval mode the model is unchanged,
        so checkpoints need not record it. Only architectures with residual blocks implement it."""
        raise ValueError(f"{type(self).__name__} has no residual blocks for stochastic depth; --drop-path applies to "
                         "the FerNet models (`ferlab models`)")

    def is_head(self, param_name: str) -> bool:
        return param_name.split(".", 1)[0] in self.head_modules

    def body_stages(self) -> list[list[str]]:
        """Parameter names of the body, one list per stage, from the input side to the output side."""
        names = self.stage_names or tuple(n for n, m in self.named_children()
                                          if n not in self.head_modules and any(True for _ in m.parameters()))
        params = [n for n, _ in self.named_parameters() if not self.is_head(n)]
        stages = [[p for p in params if p == s or p.startswith(s + ".")] for s in names]
        covered = {p for st in stages for p in st}
        if covered != set(params):  # a stage list that misses parameters would leave them frozen for ever
            raise ValueError(f"{type(self).__name__}.stage_names miss parameters {sorted(set(params) - covered)[:3]}")
        return [st for st in stages if st]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    factory: Callable[..., FERModel]
    input_size: int
    in_chans: int
    num_classes: int
    description: str
    known_bad: bool = False
    #: the normalisation a checkpoint records unless --mean/--std say otherwise (1 or 3 values)
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.25,)
    #: options the factory takes beyond the uniform three, with their choices (e.g. a head)
    options: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def normalization(self, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(mean, std) for `channels` input channels: RGB statistics averaged for grayscale."""
        def fit(v):
            if len(v) == channels or len(v) == 1:
                return tuple(v)
            return (round(sum(v) / len(v), 4),) if channels == 1 else tuple(v[:1]) * channels
        return fit(self.mean), fit(self.std)


_REGISTRY: dict[str, ModelSpec] = {}


def register(name: str, *, input_size: int, in_chans: int, num_classes: int = 7, description: str,
             known_bad: bool = False, mean: tuple[float, ...] = (0.5,), std: tuple[float, ...] = (0.25,),
             options: dict[str, tuple[str, ...]] | None = None):
    """Class/function decorator adding a model factory under `name` (duplicates are an error)."""

    def deco(factory):
        if name in _REGISTRY:
            raise ValueError(f"model name {name!r} is already registered")
        _REGISTRY[name] = ModelSpec(name, factory, input_size, in_chans, num_classes, description, known_bad,
                                    tuple(mean), tuple(std), dict(options or {}))
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
                 input_size: int | None = None, **options) -> FERModel:
    """Build a registered model; arguments left as None take the architecture's defaults.
    `options` (such as a backbone's `head`) are checked against what the architecture declares."""
    spec = get_spec(name)
    options = {k: v for k, v in options.items() if v not in (None, "")}
    for key, value in options.items():
        if key not in spec.options:
            raise ValueError(f"model {name!r} takes no option {key!r}"
                             + (f"; its options: {', '.join(spec.options)}" if spec.options else ""))
        if value not in spec.options[key]:
            raise ValueError(f"model {name!r}: {key} must be one of {', '.join(spec.options[key])}, got {value!r}")
    model = spec.factory(
        num_classes=spec.num_classes if num_classes is None else num_classes,
        in_chans=spec.in_chans if in_chans is None else in_chans,
        input_size=spec.input_size if input_size is None else input_size,
        **options,
    )
    model.model_name = name
    model.options = options
    return model


def count_params(model: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)

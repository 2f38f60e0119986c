"""What every explainer shares: face crops -> model input, class names -> indices, layers by name,
and the hooks (`Capture`) and eval-mode guard that the explainers run under."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import checkpoint
from ..checkpoint import Loaded
from ..labels import canonical

Faces = torch.Tensor | np.ndarray | Sequence[np.ndarray]


def load(model: Loaded | str | Path) -> Loaded:
    """A `Loaded` as is, or a checkpoint reference ('default', a .pt file, a run directory) loaded."""
    return model if isinstance(model, Loaded) else checkpoint.load(model)


def model_input(loaded: Loaded, faces: Faces) -> torch.Tensor:
    """Face crops or preprocessed inputs -> float32 (N, C, S, S) in the checkpoint's preprocessing.

    `faces`: one uint8 crop (HxW or HxWx3, any size), a list or stacked array (N, H, W[, 3]) of
    them, or a float tensor/array (C, S, S) or (N, C, S, S) that is already preprocessed."""
    pre = loaded.preprocess
    if isinstance(faces, (torch.Tensor, np.ndarray)) and np.dtype(_dtype(faces)).kind == "f":
        x = torch.as_tensor(faces, dtype=torch.float32)
        x = x[None] if x.ndim == 3 else x
        if x.ndim != 4 or tuple(x.shape[1:]) != (pre.channels, pre.size, pre.size):
            raise ValueError(f"a preprocessed input must be (N, {pre.channels}, {pre.size}, {pre.size}) for this "
                             f"checkpoint, got {tuple(x.shape)}; pass uint8 face crops to have them prepared")
        return x.detach()
    if isinstance(faces, torch.Tensor):
        raise ValueError(f"expected a float tensor of preprocessed inputs, got {faces.dtype}; pass uint8 crops "
                         "as numpy arrays")
    single = isinstance(faces, np.ndarray) and (faces.ndim == 2 or (faces.ndim == 3 and faces.shape[2] in (1, 3)))
    crops = [faces] if single else list(faces)
    if not crops:
        raise ValueError("no face crops given")
    return pre.model_input(crops)


def _dtype(a: torch.Tensor | np.ndarray) -> np.dtype:
    return a.dtype if isinstance(a, np.ndarray) else torch.empty(0, dtype=a.dtype).numpy().dtype


def to_images(loaded: Loaded, x: torch.Tensor) -> np.ndarray:
    """Preprocessed (N, C, S, S) -> what the model saw as uint8: (N, S, S) gray or (N, S, S, 3) RGB."""
    return loaded.preprocess.denormalize(x)


def class_index(loaded: Loaded, target: int | str) -> int:
    """A class name (or index) of the checkpoint -> its index; unknown names list the choices."""
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        if not 0 <= target < len(loaded.classes):
            raise ValueError(f"class index {target} out of range; the model has {len(loaded.classes)} classes: "
                             f"{', '.join(loaded.classes)}")
        return int(target)
    name = canonical(str(target))
    if name not in loaded.classes:
        raise ValueError(f"unknown class {target!r}; choose one of: {', '.join(loaded.classes)}")
    return loaded.classes.index(name)


def conv_layers(model: nn.Module) -> list[str]:
    """Names of the model's 2-D convolutions, in forward-definition order."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def get_layer(model: nn.Module, name: str, *, conv_only: bool = False) -> nn.Module:
    """The sub-module called `name`; unknown names (or non-conv ones with `conv_only`) list the choices."""
    modules = dict(model.named_modules())
    choices = conv_layers(model) if conv_only else [n for n in modules if n]
    if name not in choices:
        kind = "conv layer" if conv_only else "layer"
        raise ValueError(f"unknown {kind} {name!r} of {type(model).__name__}; choose one of: "
                         f"{', '.join(choices) or '(none: the model has no conv layers)'}")
    return modules[name]


class Capture:
    """Context manager recording the outputs of named layers during forward passes.

    The recorded tensor stays in the autograd graph (gradients w.r.t. it are exact), and the
    layer passes a clone on, so an in-place op downstream (``ReLU(inplace=True)``) can neither
    change what was recorded nor break its gradient."""

    def __init__(self, model: nn.Module, layers: Sequence[str]):
        self.model = model
        self.layers = list(layers)
        self.modules = {name: get_layer(model, name) for name in self.layers}
        self.outputs: dict[str, torch.Tensor] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> "Capture":
        try:
            for name, module in self.modules.items():
                self._handles.append(module.register_forward_hook(self._hook(name)))
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _hook(self, name: str):
        def hook(module, inputs, output):
            if not isinstance(output, torch.Tensor):
                raise ValueError(f"layer {name!r} returns {type(output).__name__}, not a tensor; choose another layer")
            self.outputs[name] = output
            return output.clone()

        return hook


class EvalMode:
    """Run a model in eval mode (dropout off, BatchNorm statistics frozen) and restore its mode after."""

    def __init__(self, model: nn.Module):
        self.model = model

    def __enter__(self):
        # Per module: a model training with some layers deliberately in eval mode keeps them so.
        self.modes = [(m, m.training) for m in self.model.modules()]
        self.model.eval()

    def __exit__(self, *exc):
        for m, mode in self.modes:
            m.training = mode

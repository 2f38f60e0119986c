"""Feature maps of named layers (default: every conv layer), and how a layer's channels are split
over figures."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from ..checkpoint import Loaded
from .inputs import Capture, EvalMode, Faces, conv_layers, load, model_input


class Activations:
    """Feature maps of named layers (default: every conv layer) as a context manager:

        with Activations(loaded, ["stem.0"]) as acts:
            maps = acts(faces)   # {"stem.0": (N, C, h, w)}
    """

    def __init__(self, model: Loaded | str | Path, layers: Sequence[str] | str | None = None):
        self.loaded = load(model)
        if isinstance(layers, str):
            layers = [layers]
        if layers is None:
            layers = conv_layers(self.loaded.model)
            if not layers:
                raise ValueError(f"model {self.loaded.model_name!r} has no conv layers; name a layer to record")
        self._capture = Capture(self.loaded.model, layers)

    def __enter__(self) -> "Activations":
        self._capture.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._capture.__exit__(*exc)

    def __call__(self, faces: Faces) -> dict[str, torch.Tensor]:
        if not self._capture._handles:
            raise RuntimeError("use Activations inside a `with` block so its hooks are removed afterwards")
        model = self.loaded.model
        with EvalMode(model), torch.no_grad():
            self._capture.outputs.clear()
            model(model_input(self.loaded, faces))
        out = {}
        for name in self._capture.layers:
            a = self._capture.outputs.get(name)
            if a is None:
                raise ValueError(f"layer {name!r} is not used by the model's forward pass")
            if a.ndim != 4:
                raise ValueError(f"layer {name!r} outputs shape {tuple(a.shape)}, not (N, C, H, W) feature maps; "
                                 f"choose a conv layer: {', '.join(conv_layers(model))}")
            out[name] = a
        return out


def channel_pages(total: int, channels: Sequence[int] | None = None, per_page: int = 64) -> list[list[int]]:
    """The channels to show of a layer with `total` channels (default: all), in pages of at most
    `per_page`; unknown indices are an error naming the layer's range."""
    chosen = list(range(total)) if channels is None else [int(c) for c in channels]
    bad = [c for c in chosen if not 0 <= c < total]
    if bad or not chosen:
        raise ValueError(f"channel indices {bad or chosen} are not in a layer with {total} channels (0-{total - 1})")
    return [chosen[i:i + per_page] for i in range(0, len(chosen), per_page)]


def activations(model: Loaded | str | Path, faces: Faces, layers: Sequence[str] | str | None = None
                ) -> dict[str, torch.Tensor]:
    """Feature maps {layer: (N, C, h, w)} of `faces` (see `Activations`)."""
    with Activations(model, layers) as acts:
        return acts(faces)

"""The `ferlab explain` job: photos -> faces (as `ferlab predict` finds them) -> PNG figures."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..checkpoint import Loaded
from ..figures import activation_figure, attribution_figure, filter_figure
from ..fileio import safe_name, unique_name
from ..predict.images import read_image
from ..predict.recognizer import Recognizer
from .feature_maps import activations
from .attribution import GradCAM, gradcam, saliency
from .config import ALL_CLASSES, METHODS, ExplainConfig
from .filters import FilterImages, last_conv_layer, visualize_filters
from .inputs import class_index, get_layer, load, model_input, to_images


@dataclass
class ExplainReport:
    written: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    """One line per image: faces found, no face, or why it could not be read."""
    errors: int = 0


def run(config: ExplainConfig) -> ExplainReport:
    """Explain every face in `config.images` with `config.method`, writing PNG figures into `config.out`."""
    loaded = load(config.model)
    _check(loaded, config)
    out, report, used = Path(config.out), ExplainReport(), set()
    if config.method == "filters" and not config.images:
        result = visualize_filters(loaded, config.layer, config.filters, steps=config.steps)
        report.written.append(str(_filter_figure(result, out / f"filters_{safe_name(result.layer)}.png")))
        return report
    rec = Recognizer(loaded, config.detector)
    for image in config.images:
        try:
            rgb = read_image(image)
        except (ValueError, OSError) as e:
            report.errors += 1
            report.messages.append(f"{image}: error: {e}")
            continue
        _, crops = rec.find_faces(rgb)
        report.messages.append(f"{image}: {len(crops)} face(s)" if crops else f"{image}: no face found")
        stem = unique_name(safe_name(Path(image).stem), used)
        for i, crop in enumerate(crops):
            report.written += [str(p) for p in explain_face(loaded, crop, config, out / f"{stem}_face{i}")]
    return report


def explain_face(loaded: Loaded, crop: np.ndarray, config: ExplainConfig, prefix: Path) -> list[Path]:
    """Figures for one uint8 face crop; files are named `<prefix>_<method>[_<layer>].png`."""
    x = model_input(loaded, crop)
    image = to_images(loaded, x)[0]
    method = config.method
    if method in ("saliency", "smoothgrad", "gradcam"):
        targets = [None] if config.target is None else (
            list(range(len(loaded.classes))) if config.target == ALL_CLASSES else [config.target])
        maps = []
        for t in targets:
            if method == "gradcam":
                a = gradcam(loaded, x, t, config.layer)
            else:
                a = saliency(loaded, x, t, samples=config.samples if method == "smoothgrad" else 0)
            k = a.targets[0]
            maps.append((f"{loaded.classes[k]} ({a.probs[0, k]:.0%})", a.maps[0]))
        probs = dict(zip(loaded.classes, a.probs[0].tolist()))
        layer = f" on {config.layer or loaded.model.cam_layer}" if method == "gradcam" else ""
        return [attribution_figure(image, maps, f"{prefix}_{method}.png", probs,
                                   title=f"{method}{layer} - {loaded.model_name}")]
    if method == "activations":
        acts = activations(loaded, x, config.layer)
        return [activation_figure(name, a[0].numpy(), f"{prefix}_activations_{safe_name(name)}.png")
                for name, a in acts.items()]
    if method == "filters":
        result = visualize_filters(loaded, config.layer, config.filters, start=x, steps=config.steps)
        return [_filter_figure(result, f"{prefix}_filters_{safe_name(result.layer)}.png")]
    raise ValueError(f"unknown method {method!r}; choose one of: {', '.join(METHODS)}")


def _check(loaded: Loaded, config: ExplainConfig) -> None:
    """Fail before any image is read when the layer, class or filter choice cannot work for this model."""
    model = loaded.model
    if config.target is not None and config.target != ALL_CLASSES:
        class_index(loaded, config.target)
    if config.method == "gradcam" and config.layer is None and model.cam_layer is None:
        GradCAM(loaded)  # raises the explanation
    if config.layer is not None:
        get_layer(model, config.layer, conv_only=config.method == "filters")
    if config.method == "filters" and config.layer is None:
        last_conv_layer(model)


def _filter_figure(result: FilterImages, path) -> Path:
    return filter_figure(result.layer, result.filters, result.images, result.start_activation, result.activation, path)

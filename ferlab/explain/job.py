"""The `ferlab explain` job: photos, face crops and folders -> faces (as `ferlab predict` finds
them) -> PNG figures."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..checkpoint import Loaded
from ..data.folders import IMAGE_EXTS
from ..figures import activation_figure, attribution_figure, filter_figure, kernel_figure, masked_figure
from ..fileio import printable, safe_name, unique_name
from ..labels import canonical
from ..predict.images import read_image
from ..predict.job import gather
from ..predict.recognizer import Recognizer
from .attribution import GradCAM, gradcam, masked_saliency, saliency, shared_scale
from .config import ALL_CLASSES, METHODS, ExplainConfig
from .feature_maps import activations, channel_pages
from .filters import FilterImages, Kernels, conv_kernels, last_conv_layer, visualize_filters
from .inputs import class_index, conv_layers, get_layer, load, model_input, to_images

#: Feature maps per activation figure; a layer with more channels is split over several files.
CHANNELS_PER_FIGURE = 64


@dataclass
class ExplainReport:
    written: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    """One line per image: faces found, no face, or why it could not be read."""
    errors: int = 0


@dataclass(frozen=True)
class Item:
    """One image to explain: its file, the stem of its figures and its class when the folder says."""

    path: Path
    stem: str
    truth: str | None = None


def items(inputs: tuple[str, ...] | list[str], classes: list[str], per_folder: int = 0) -> list[Item]:
    """The images of `inputs` (folders walked recursively in name order for image files, at most
    `per_folder` of each subfolder when > 0). A file under a folder given as `<class>/<file>` (or a folder
    named after a class) gets that class as its truth; figures of files found in folders are
    named after their path below the folder, so same-named files of two classes stay apart."""
    out, used, taken = [], set(), {}
    for f, root in gather(inputs):
        truth, stem = None, f.stem
        if root is not None:
            if f.suffix.lower() not in IMAGE_EXTS:
                continue  # a folder's notes and CSVs; a file named on the command line is tried as it is
            if per_folder:
                taken[f.parent] = taken.get(f.parent, 0) + 1
                if taken[f.parent] > per_folder:
                    continue
            rel = f.relative_to(root)
            parts = rel.parts
            if len(parts) >= 2 and canonical(parts[0]) in classes:
                truth = canonical(parts[0])
            elif len(parts) == 1 and canonical(root.name) in classes:
                truth = canonical(root.name)
            stem = "_".join([*parts[:-1], f.stem])
        out.append(Item(f, unique_name(safe_name(stem), used), truth))
    return out


def run(config: ExplainConfig) -> ExplainReport:
    """Explain every face in `config.images` with `config.method`, writing PNG figures into `config.out`."""
    loaded = load(config.model)
    _check(loaded, config)
    out, report = Path(config.out), ExplainReport()
    if config.method == "filters" and not config.images:
        layer = config.layer or last_conv_layer(loaded.model)
        report.written.append(str(_filters(loaded, config, layer, None, out / f"filters_{safe_name(layer)}.png")))
        return report
    rec = Recognizer(loaded, config.detector)
    for item in items(config.images, loaded.classes, config.per_folder):
        name = printable(item.path)
        try:
            rgb = read_image(item.path)
        except (ValueError, OSError) as e:
            report.errors += 1
            report.messages.append(f"{name}: error: {e}")
            continue
        _, crops = rec.find_faces(rgb)
        report.messages.append(f"{name}: {len(crops)} face(s)" if crops else f"{name}: no face found")
        for i, crop in enumerate(crops):
            report.written += [str(p) for p in explain_face(loaded, crop, config, out / f"{item.stem}_face{i}",
                                                            truth=item.truth)]
    return report


def explain_face(loaded: Loaded, crop: np.ndarray, config: ExplainConfig, prefix: Path,
                 truth: str | None = None) -> list[Path]:
    """Figures for one uint8 face crop; files are named `<prefix>_<method>[_<layer>][_p<page>].png`.
    `truth`, the face's class when known, goes into the titles."""
    x = model_input(loaded, crop)
    image = to_images(loaded, x)[0]
    method = config.method
    true = f" - true: {truth}" if truth else ""
    if method in ("saliency", "smoothgrad", "gradcam"):
        targets = [None] if config.target is None else (
            list(range(len(loaded.classes))) if config.target == ALL_CLASSES else [config.target])
        results = []
        for t in targets:
            if method == "gradcam":
                results.append(gradcam(loaded, x, t, config.layer))
            else:
                results.append(saliency(loaded, x, t, samples=config.samples if method == "smoothgrad" else 0))
        shared = len(results) > 1
        maps = shared_scale(results)[:, 0] if shared else [r.maps[0] for r in results]
        probs = results[0].probs[0]
        panels = [(f"{loaded.classes[r.targets[0]]} ({probs[r.targets[0]]:.0%})", m) for r, m in zip(results, maps)]
        layer = f" on {config.layer or loaded.model.cam_layer}" if method == "gradcam" else ""
        return [attribution_figure(image, panels, f"{prefix}_{method}.png", dict(zip(loaded.classes, probs.tolist())),
                                   title=f"{method}{layer} - {loaded.model_name}{true}", shared=shared)]
    if method == "masked":
        m = masked_saliency(loaded, x, config.target, keep=config.keep)
        probs = m.saliency.probs[0]
        k = m.saliency.targets[0]
        return [masked_figure(image, m.saliency.maps[0], m.images[0], config.keep, f"{prefix}_masked.png",
                              dict(zip(loaded.classes, probs.tolist())),
                              title=f"saliency of {loaded.classes[k]} ({probs[k]:.0%}) - {loaded.model_name}{true}")]
    if method == "activations":
        paths = []
        for name, a in activations(loaded, x, config.layer).items():
            maps = a[0].numpy()  # (C, h, w)
            pages = channel_pages(len(maps), config.channels, CHANNELS_PER_FIGURE)
            for p, chans in enumerate(pages, start=1):
                page = f"_p{p}" if len(pages) > 1 else ""
                paths.append(activation_figure(name, maps[chans], f"{prefix}_activations_{safe_name(name)}{page}.png",
                                               channels=chans, total=len(maps), page=(p, len(pages))))
        return paths
    if method == "filters":
        layer = config.layer or last_conv_layer(loaded.model)
        return [_filters(loaded, config, layer, x, f"{prefix}_filters_{safe_name(layer)}.png")]
    raise ValueError(f"unknown method {method!r}; choose one of: {', '.join(METHODS)}")


def _filters(loaded: Loaded, config: ExplainConfig, layer: str, start, path: str | Path) -> Path:
    """The first conv layer's kernels, or gradient-ascent images of a later layer's filters
    (starting from `start`, a face, or mid-gray when None)."""
    if layer == conv_layers(loaded.model)[0]:
        k: Kernels = conv_kernels(loaded, layer, config.filters)
        return kernel_figure(k.layer, k.weights, path, k.filters)
    r: FilterImages = visualize_filters(loaded, layer, config.filters, start=start, steps=config.steps)
    return filter_figure(r.layer, r.filters, r.images, r.start_activation, r.activation, path)


def _check(loaded: Loaded, config: ExplainConfig) -> None:
    """Fail before any image is read when the layer, class or filter choice cannot work for this model."""
    model = loaded.model
    if config.target is not None and config.target != ALL_CLASSES:
        class_index(loaded, config.target)
    if config.method == "masked" and config.target == ALL_CLASSES:
        raise ValueError(f"--method masked explains one class; give a class name or leave --target out (not "
                         f"'{ALL_CLASSES}')")
    if config.method == "gradcam" and config.layer is None and model.cam_layer is None:
        GradCAM(loaded)  # raises the explanation
    if config.layer is not None:
        get_layer(model, config.layer, conv_only=config.method == "filters")
    if config.method == "filters" and config.layer is None:
        last_conv_layer(model)

"""What a model looks at: saliency, SmoothGrad, Grad-CAM, layer activations and filter visualisation.

Everything takes a `Loaded` checkpoint (or a reference `checkpoint.load` accepts) and either uint8
face crops, which are prepared with the checkpoint's own preprocessing, or already preprocessed
float tensors (N, C, S, S). Maps come back at the model's input resolution (S, S), so they lie
exactly over the image the model saw (`to_images`).

- ``saliency``: |d score / d pixel| of the target class's logit (Simonyan et al. 2014), the
  maximum over colour channels.
- ``smoothgrad``: the same, averaged over noisy copies of the input (Smilkov et al. 2017); less
  speckled than the plain gradient.
- ``gradcam``: class-weighted feature maps of the model's declared `cam_layer` (Selvaraju et al.
  2017): coarse, but shows which region drove the decision.
- ``activations``: the feature maps of one layer, or of every conv layer.
- ``filters``: an input found by gradient ascent that excites one conv filter, with jitter, blur
  and L2 decay so it shows patterns rather than high-frequency noise (Yosinski et al. 2015).

Hook-based explainers (`GradCAM`, `Activations`, `Capture`) are context managers that remove
their hooks on exit, also when an exception leaves the block.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import checkpoint
from .checkpoint import Loaded
from .report import activation_figure, attribution_figure, filter_figure

METHODS = ("saliency", "smoothgrad", "gradcam", "activations", "filters")
ALL_CLASSES = "all"

Faces = torch.Tensor | np.ndarray | Sequence[np.ndarray]


# ---------------------------------------------------------------------------------------------
# Inputs, classes and layers


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
    arrays = np.stack([pre.image_to_array(np.asarray(c)) for c in crops])  # (N, C, S, S) uint8
    return pre.normalize(torch.from_numpy(arrays))


def _dtype(a: torch.Tensor | np.ndarray) -> np.dtype:
    return a.dtype if isinstance(a, np.ndarray) else torch.empty(0, dtype=a.dtype).numpy().dtype


def to_images(loaded: Loaded, x: torch.Tensor) -> np.ndarray:
    """Preprocessed (N, C, S, S) -> what the model saw as uint8: (N, S, S) gray or (N, S, S, 3) RGB."""
    pre = loaded.preprocess
    mean = torch.tensor(pre.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(pre.std, dtype=torch.float32).view(1, -1, 1, 1)
    img = ((x.detach().float() * std + mean) * 255).round().clamp(0, 255).to(torch.uint8)
    return img[:, 0].numpy() if img.shape[1] == 1 else img.permute(0, 2, 3, 1).numpy()


def class_index(loaded: Loaded, target: int | str) -> int:
    """A class name (or index) of the checkpoint -> its index; unknown names list the choices."""
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        if not 0 <= target < len(loaded.classes):
            raise ValueError(f"class index {target} out of range; the model has {len(loaded.classes)} classes: "
                             f"{', '.join(loaded.classes)}")
        return int(target)
    from .labels import canonical

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


# ---------------------------------------------------------------------------------------------
# Hooks


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


class _EvalMode:
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


@dataclass
class Attribution:
    """Per-input maps over the model's input, each scaled to [0, 1] (0 everywhere if all-zero)."""

    maps: np.ndarray
    """(N, S, S) float32."""
    targets: list[int]
    """The class index each map explains."""
    probs: np.ndarray
    """(N, K) softmax of the model on the (noise-free) inputs."""


def _targets(loaded: Loaded, logits: torch.Tensor, target: int | str | None) -> torch.Tensor:
    if target is None:
        return logits.argmax(1)
    return torch.full((logits.shape[0],), class_index(loaded, target), dtype=torch.long)


def _unit(maps: torch.Tensor) -> np.ndarray:
    peak = maps.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1)
    return (maps / peak).float().numpy()


class GradCAM:
    """Grad-CAM on the model's declared `cam_layer` (or another named layer) as a context manager:

        with GradCAM(loaded) as cam:
            result = cam(faces, target="happy")
    """

    def __init__(self, model: Loaded | str | Path, layer: str | None = None):
        self.loaded = load(model)
        if layer is None:
            layer = self.loaded.model.cam_layer
            if layer is None:
                raise ValueError(f"model {self.loaded.model_name!r} declares no conv layer for Grad-CAM (cam_layer is "
                                 "None): Grad-CAM needs a convolutional feature map; use saliency or smoothgrad "
                                 "instead")
        self.layer = layer
        self._capture = Capture(self.loaded.model, [layer])

    def __enter__(self) -> "GradCAM":
        self._capture.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._capture.__exit__(*exc)

    def __call__(self, faces: Faces, target: int | str | None = None) -> Attribution:
        """Maps for `target` (a class name or index; None = each input's predicted class)."""
        if not self._capture._handles:
            raise RuntimeError("use GradCAM inside a `with` block so its hooks are removed afterwards")
        model = self.loaded.model
        x = model_input(self.loaded, faces).requires_grad_(True)
        with _EvalMode(model), torch.enable_grad():
            logits = model(x)
            act = self._capture.outputs[self.layer]
            if act.ndim != 4:
                raise ValueError(f"layer {self.layer!r} outputs shape {tuple(act.shape)}, not (N, C, H, W) feature "
                                 f"maps; Grad-CAM needs a conv layer such as: {', '.join(conv_layers(model))}")
            idx = _targets(self.loaded, logits, target)
            grads, = torch.autograd.grad(logits.gather(1, idx[:, None]).sum(), act)
        weights = grads.mean((2, 3), keepdim=True)  # (N, C, 1, 1): how much each channel raises the score
        cam = F.relu((weights * act.detach()).sum(1, keepdim=True))  # (N, 1, h, w)
        cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]  # (N, S, S)
        return Attribution(_unit(cam), idx.tolist(), logits.detach().softmax(1).numpy())


def gradcam(model: Loaded | str | Path, faces: Faces, target: int | str | None = None,
            layer: str | None = None) -> Attribution:
    """Grad-CAM maps of `faces` (see `GradCAM`)."""
    with GradCAM(model, layer) as cam:
        return cam(faces, target)


def saliency(model: Loaded | str | Path, faces: Faces, target: int | str | None = None, *, samples: int = 0,
             noise: float = 0.15, seed: int = 0) -> Attribution:
    """Gradient saliency of the target logit w.r.t. the input pixels (max |grad| over channels).

    samples > 0 gives SmoothGrad: the mean |grad| over that many copies with Gaussian noise of
    std `noise` x (the input's value range) added; `seed` makes the noise repeatable."""
    loaded = load(model)
    net = loaded.model
    x = model_input(loaded, faces)
    with _EvalMode(net), torch.enable_grad():
        with torch.no_grad():
            logits = net(x)
        idx = _targets(loaded, logits, target)
        if samples <= 0:
            xg = x.clone().requires_grad_(True)
            out = net(xg)
            grads, = torch.autograd.grad(out.gather(1, idx[:, None]).sum(), xg)
            sal = grads.abs()
        else:
            gen = torch.Generator().manual_seed(seed)
            sal = torch.zeros_like(x)
            for i in range(len(x)):
                sigma = noise * float(x[i].max() - x[i].min() or 1.0)
                xn = (x[i:i + 1] + sigma * torch.randn((samples, *x.shape[1:]), generator=gen)).requires_grad_(True)
                out = net(xn)  # (samples, K)
                grads, = torch.autograd.grad(out[:, idx[i]].sum(), xn)
                sal[i] = grads.abs().mean(0)
    return Attribution(_unit(sal.amax(1)), idx.tolist(), logits.softmax(1).numpy())


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
        with _EvalMode(model), torch.no_grad():
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


def activations(model: Loaded | str | Path, faces: Faces, layers: Sequence[str] | str | None = None
                ) -> dict[str, torch.Tensor]:
    """Feature maps {layer: (N, C, h, w)} of `faces` (see `Activations`)."""
    with Activations(model, layers) as acts:
        return acts(faces)


# ---------------------------------------------------------------------------------------------
# Filter visualisation


@dataclass
class FilterImages:
    """Inputs that excite conv filters, found by gradient ascent."""

    layer: str
    filters: list[int]
    images: np.ndarray
    """(F, S, S) or (F, S, S, 3) uint8: the optimised inputs as the model sees them."""
    start_activation: np.ndarray
    """(F,) mean activation of each filter on the start image."""
    activation: np.ndarray
    """(F,) mean activation of each filter on its optimised image."""
    inputs: torch.Tensor = field(repr=False)
    """(F, C, S, S) the optimised preprocessed inputs."""


def last_conv_layer(model: nn.Module) -> str:
    names = conv_layers(model)
    if not names:
        raise ValueError(f"{type(model).__name__} has no conv layers, so there are no filters to visualise")
    return names[-1]


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = max(1, round(2 * sigma))
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def visualize_filters(model: Loaded | str | Path, layer: str | None = None, filters: Sequence[int] | None = None,
                      *, start: Faces | None = None, steps: int = 64, lr: float = 0.05, l2: float = 1e-2,
                      jitter: int = 1, blur_every: int = 4, blur_sigma: float = 0.5, seed: int = 0) -> FilterImages:
    """Gradient ascent on the input to maximise the mean activation of each filter of a conv layer.

    layer: a conv layer name (default: the last one); filters: channel indices (default: the first
    16). start: one face crop (or preprocessed input) to start from; default mid-gray plus a
    little noise. Regularisers: `l2` times the mean square of the input, a random shift of up to `jitter`
    pixels per step, and a Gaussian blur every `blur_every` steps (0 turns either off). Each step
    moves the input by `lr` (root-mean-square, in normalised units) along the gradient; inputs stay
    within the valid pixel range of the checkpoint's preprocessing."""
    loaded = load(model)
    net, pre = loaded.model, loaded.preprocess
    layer = layer or last_conv_layer(net)
    conv = get_layer(net, layer, conv_only=True)
    filters = list(range(min(16, conv.out_channels))) if filters is None else [int(f) for f in filters]
    bad = [f for f in filters if not 0 <= f < conv.out_channels]
    if bad or not filters:
        raise ValueError(f"filter indices {bad or filters} are not in layer {layer!r}, which has "
                         f"{conv.out_channels} filters (0-{conv.out_channels - 1})")
    mean = torch.tensor(pre.mean, dtype=torch.float32).view(1, -1, 1, 1).expand(1, pre.channels, 1, 1)
    std = torch.tensor(pre.std, dtype=torch.float32).view(1, -1, 1, 1).expand(1, pre.channels, 1, 1)
    lo, hi = (0 - mean) / std, (1 - mean) / std
    gen = torch.Generator().manual_seed(seed)
    n = len(filters)
    if start is None:
        x0 = (0.5 + 0.05 * torch.randn((1, pre.channels, pre.size, pre.size), generator=gen) - mean) / std
    else:
        x0 = model_input(loaded, start)[:1]
    x0 = torch.max(torch.min(x0, hi), lo).repeat(n, 1, 1, 1)  # (F, C, S, S)
    idx = torch.tensor(filters)

    def score(capture: Capture, x: torch.Tensor) -> torch.Tensor:
        net(x)
        act = capture.outputs[layer]  # (F, out_channels, h, w)
        return act[torch.arange(n), idx].flatten(1).mean(1)  # (F,)

    x = x0.clone().requires_grad_(True)
    with _EvalMode(net), Capture(net, [layer]) as capture:
        with torch.no_grad():
            start_act = score(capture, x0)
        with torch.enable_grad():
            for step in range(steps):
                dx, dy = (torch.randint(-jitter, jitter + 1, (2,), generator=gen).tolist() if jitter else (0, 0))
                shifted = torch.roll(x, (dy, dx), (2, 3))
                objective = score(capture, shifted).sum() - l2 * x.pow(2).flatten(1).mean(1).sum()
                grad, = torch.autograd.grad(objective, x)
                with torch.no_grad():
                    # Normalised ascent step: each image moves by `lr` (RMS per pixel) whatever the
                    # gradient's scale, which differs by orders of magnitude between layers.
                    x += lr * grad / grad.pow(2).flatten(1).mean(1).sqrt().clamp_min(1e-12).view(-1, 1, 1, 1)
                    if blur_every and blur_sigma > 0 and (step + 1) % blur_every == 0 and step + 1 < steps:
                        x.copy_(_blur(x, blur_sigma))
                    x.copy_(torch.max(torch.min(x, hi), lo))
        with torch.no_grad():
            end_act = score(capture, x)
    xf = x.detach()
    return FilterImages(layer, filters, to_images(loaded, xf), start_act.numpy(), end_act.numpy(), xf)


# ---------------------------------------------------------------------------------------------
# The `ferlab explain` job: photos -> faces -> figures


@dataclass(frozen=True)
class ExplainConfig:
    """Options of `run` (and of `ferlab explain`)."""

    images: tuple[str, ...] = ()
    """Photos or face crops; photos go through the Recognizer's detection and alignment."""
    model: str = "default"
    """Checkpoint file, run directory, or 'default' for the bundled model."""
    method: str = "gradcam"
    """One of METHODS."""
    layer: str | None = None
    """gradcam: layer to use (default: the model's cam_layer); activations: one layer (default: every
    conv layer); filters: a conv layer (default: the last)."""
    target: str | None = None
    """Class to explain: a class name, 'all' for one panel per class, or None for the predicted class."""
    out: str = "ferlab-explain"
    """Folder for the PNG figures."""
    detector: str = "yunet"
    """Face detector for photos (see ferlab.detect.DETECTORS)."""
    samples: int = 25
    """smoothgrad: number of noisy copies."""
    filters: tuple[int, ...] | None = None
    """filters: channel indices (default: the first 16)."""
    steps: int = 64
    """filters: gradient ascent steps."""

    def __post_init__(self):
        problems = []
        if self.method not in METHODS:
            problems.append(f"unknown method {self.method!r}; choose one of: {', '.join(METHODS)}")
        if self.method != "filters" and not self.images:
            problems.append(f"method {self.method!r} needs at least one image")
        if self.samples < 1:
            problems.append(f"samples must be >= 1, got {self.samples}")
        if self.steps < 1:
            problems.append(f"steps must be >= 1, got {self.steps}")
        if problems:
            raise ValueError("; ".join(problems))


@dataclass
class ExplainReport:
    written: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    """One line per image: faces found, no face, or why it could not be read."""
    errors: int = 0


def run(config: ExplainConfig) -> ExplainReport:
    """Explain every face in `config.images` with `config.method`, writing PNG figures into `config.out`."""
    from .predict import Recognizer, read_image, unique_name

    loaded = load(config.model)
    _check(loaded, config)
    out, report, used = Path(config.out), ExplainReport(), set()
    if config.method == "filters" and not config.images:
        result = visualize_filters(loaded, config.layer, config.filters, steps=config.steps)
        report.written.append(str(filter_figure(result, out / f"filters_{_safe(result.layer)}.png")))
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
        stem = unique_name(_safe(Path(image).stem), used)
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
        return [activation_figure(name, a[0], f"{prefix}_activations_{_safe(name)}.png") for name, a in acts.items()]
    if method == "filters":
        result = visualize_filters(loaded, config.layer, config.filters, start=x, steps=config.steps)
        return [filter_figure(result, f"{prefix}_filters_{_safe(result.layer)}.png")]
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


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "image"

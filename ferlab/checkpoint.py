"""Self-describing checkpoints: everything predict/explain/export/serve need, in one file.

A checkpoint holds the weights, the model name and constructor arguments, the class names in
order, the exact preprocessing, the training config, metrics and the versions that wrote it.

Safety: every load uses `torch.load(weights_only=True)` (a crafted file cannot run code), and the
metadata is validated before a model is built (missing keys, unknown model, class count vs head
width, non-finite weights), each error naming the file. Saves are atomic (`fileio.atomic_write`)
and refuse non-finite weights, so a diverged run can never leave a broken model behind.
"""
from __future__ import annotations

import platform
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import torch

from .fileio import atomic_write
from .models import FERModel, create_model, list_models
from .preprocess import Preprocess

FORMAT = "ferlab-checkpoint/1"
DEFAULT_NAME = "default"
#: Models shipped inside the package, by the name accepted wherever a checkpoint is.
BUNDLED = {"default": "the accurate default (fernet_s)", "tiny": "the fast model (fernet_tiny)"}
#: Keys of a training checkpoint (last.pt) that a shipped copy leaves out.
TRAINING_KEYS = ("optimizer", "ema", "train_state")


class CheckpointError(ValueError):
    """A file that is not a usable ferlab checkpoint; the message names the file and why."""


class NonFiniteWeightsError(ValueError):
    """Weights or buffers hold NaN or inf: such a model predicts garbage, so it is never saved or loaded."""


@dataclass
class Loaded:
    """A ready-to-use model rebuilt from a checkpoint."""

    model: FERModel
    classes: list[str]
    preprocess: Preprocess
    meta: dict = field(default_factory=dict)
    path: str = ""

    @property
    def model_name(self) -> str:
        return self.meta["model"]["name"]

    @property
    def temperature(self) -> float:
        """Divides the logits before softmax wherever probabilities are shown (1.0: uncalibrated)."""
        return float((self.meta.get("calibration") or {}).get("temperature", 1.0))


def versions() -> dict:
    import numpy

    from . import __version__

    # str(): torch.__version__ is a TorchVersion, which torch.load(weights_only=True) refuses to unpickle.
    return {"ferlab": __version__, "torch": str(torch.__version__), "numpy": numpy.__version__,
            "python": platform.python_version()}


def non_finite(state: dict[str, torch.Tensor]) -> list[str]:
    """Names of floating-point tensors in a state dict that hold NaN or inf."""
    return [k for k, v in state.items()
            if isinstance(v, torch.Tensor) and v.is_floating_point() and not torch.isfinite(v).all()]


def make_payload(model: FERModel, model_name: str, classes: list[str], preprocess: Preprocess, *,
                 config: dict | None = None, metrics: dict | None = None, epoch: int | None = None,
                 extra: dict | None = None, half: bool = False) -> dict:
    """The dict that `save` writes. `half=True` stores float weights as fp16 (for shipping)."""
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone()
             for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "model": {"name": model_name, "num_classes": model.num_classes, "in_chans": model.in_chans,
                  "input_size": model.input_size, "options": dict(getattr(model, "options", {}))},
        "classes": list(classes),
        "preprocess": preprocess.to_dict(),
        "state_dict": state,
        "config": config or {},
        "metrics": metrics or {},
        "epoch": epoch,
        "versions": versions(),
    }
    if extra:
        payload.update(extra)
    return payload


def save(payload: dict, path: str | Path) -> Path:
    """Atomically write `payload` to `path`; the previous file survives any failure, and a payload
    whose weights (or EMA weights) are not finite is refused before anything is written."""
    for key in ("state_dict", "ema"):
        bad = non_finite(payload.get(key) or {})
        if bad:
            raise NonFiniteWeightsError(
                f"refusing to save {path}: {len(bad)} tensor(s) of {key} hold NaN/inf ({', '.join(bad[:4])}"
                f"{', ...' if len(bad) > 4 else ''}); the model has diverged and would predict garbage. "
                "Lower the learning rate or turn off bf16 and train again")
    return atomic_write(path, lambda f: torch.save(payload, f), "checkpoint")


def bundled_path(name: str = DEFAULT_NAME) -> Path:
    """Where a bundled model lives inside the installed package."""
    return Path(str(resources.files("ferlab") / "weights" / f"{name}.pt"))


def default_path() -> Path:
    return bundled_path(DEFAULT_NAME)


def resolve(ref: str | Path) -> Path:
    """A bundled name ('default', 'tiny'), a checkpoint file, or a run directory (its best.pt) -> a path."""
    if str(ref) in BUNDLED:
        p = bundled_path(str(ref))
        if not p.exists():
            raise FileNotFoundError(f"the bundled model {ref!r} is missing at {p}; reinstall ferlab or "
                                    f"train one with `ferlab train --recipe {ref}`")
        return p
    p = Path(ref)
    if p.is_dir():
        for name in ("best.pt", "last.pt"):
            if (p / name).exists():
                return p / name
        raise FileNotFoundError(f"run directory {p} holds no best.pt or last.pt; was training started there?")
    if not p.exists():
        raise FileNotFoundError(f"checkpoint {p} does not exist; pass a .pt file, a run directory, "
                                f"or one of: {', '.join(BUNDLED)}")
    return p


def read(ref: str | Path) -> dict:
    """Load and validate the raw payload of a checkpoint (weights_only: no code can run)."""
    p = resolve(ref)
    if not p.is_file():
        raise CheckpointError(f"{p} is not a regular file")
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt, truncated, not a torch file, or a pickle that wants code
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{p} is not a readable ferlab checkpoint ({first}); it may be truncated by a "
                              "crash or not a checkpoint at all. Use another file, or the run's best.pt") from e
    validate(payload, p)
    return payload


def validate(payload, path: str | Path = "checkpoint") -> None:
    """Raise `CheckpointError` naming `path` unless `payload` is a complete, consistent ferlab checkpoint."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a ferlab checkpoint (expected format {FORMAT!r})")
    missing = [k for k in ("model", "classes", "preprocess", "state_dict") if k not in payload]
    m = payload.get("model")
    if isinstance(m, dict):
        missing += [f"model.{k}" for k in ("name", "num_classes", "in_chans", "input_size") if k not in m]
    elif "model" not in missing:
        missing.append("model (a mapping)")
    if missing:
        raise CheckpointError(f"{path} is incomplete: missing {', '.join(missing)}")
    if not isinstance(m.get("options", {}), dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in m.get("options", {}).items()):
        raise CheckpointError(f"{path}: 'model.options' must map option names to strings")
    if m["name"] not in list_models():
        raise CheckpointError(f"{path} was written for model {m['name']!r}, which this ferlab does not know; "
                              f"known models: {', '.join(list_models())}")
    classes = payload["classes"]
    if not isinstance(classes, (list, tuple)) or not all(isinstance(c, str) for c in classes) \
            or len(set(classes)) != len(classes):
        raise CheckpointError(f"{path}: 'classes' must be a list of distinct class names")
    if len(classes) != m["num_classes"]:
        raise CheckpointError(f"{path} names {len(classes)} classes but its model has {m['num_classes']} outputs")
    if not isinstance(payload["state_dict"], dict):
        raise CheckpointError(f"{path}: 'state_dict' is not a mapping of tensors")
    bad = non_finite(payload["state_dict"])
    if bad:
        raise CheckpointError(f"{path} holds NaN/inf weights ({', '.join(bad[:4])}): it comes from a diverged "
                              "run and would predict garbage; use an earlier checkpoint or train again")
    try:
        Preprocess.from_dict(payload["preprocess"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: invalid preprocessing ({e})") from None


def build(payload: dict, path: str = "") -> Loaded:
    """A ready (eval-mode) model from a validated payload; weights that do not fit the declared
    model (another head width, missing layers) are an error naming the file."""
    m = payload["model"]
    try:
        model = create_model(m["name"], num_classes=m["num_classes"], in_chans=m["in_chans"],
                             input_size=m["input_size"], **m.get("options", {}))
    except ValueError as e:  # an option this ferlab's model does not take
        raise CheckpointError(f"{path or 'checkpoint'}: {e}") from None
    state = {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        detail = " ".join(str(e).split())[:400]
        raise CheckpointError(f"{path or 'checkpoint'}: its weights do not fit model {m['name']!r} with "
                              f"{m['num_classes']} classes, {m['in_chans']} channels, {m['input_size']} px "
                              f"({detail})") from None
    model.eval()
    meta = {k: v for k, v in payload.items() if k not in ("state_dict", *TRAINING_KEYS)}
    return Loaded(model, list(payload["classes"]), Preprocess.from_dict(payload["preprocess"]), meta, str(path))


def load(ref: str | Path = DEFAULT_NAME) -> Loaded:
    """Rebuild a ready (eval-mode) model from 'default', a checkpoint file or a run directory."""
    path = resolve(ref)
    return build(read(path), str(path))


def load_default() -> Loaded:
    """The bundled pretrained FER2013 model."""
    return load(DEFAULT_NAME)


def bundle(ref: str | Path, out: str | Path | None = None) -> Path:
    """Write a slim copy of a checkpoint for shipping: fp16 weights, no optimizer state.

    This is how `ferlab/weights/default.pt` is made from the best.pt of `ferlab train --recipe
    default`; fp16 halves the file and `build` casts back to fp32, so predictions change by less
    than fp16 rounding of the weights.
    """
    payload = read(ref)
    payload = {k: v for k, v in payload.items() if k not in (*TRAINING_KEYS, "rng")}
    payload["state_dict"] = {k: v.half() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    payload["bundled_from"] = str(resolve(ref))
    return save(payload, out or default_path())

"""Self-describing checkpoints: everything predict/explain/export/serve need, in one file.

A checkpoint holds the weights, the model name and constructor arguments, the class names in
order, the exact preprocessing, the training config, metrics and the versions that wrote it.
Saves are atomic (temp file + fsync + os.replace) so a crash or a full disk never leaves a
truncated checkpoint where a good one was.
"""
from __future__ import annotations

import os
import platform
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import torch

from .models import FERModel, create_model
from .preprocess import Preprocess

FORMAT = "ferlab-checkpoint/1"
DEFAULT_NAME = "default"


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


def versions() -> dict:
    import numpy

    from . import __version__

    # str(): torch.__version__ is a TorchVersion, which torch.load(weights_only=True) refuses to unpickle.
    return {"ferlab": __version__, "torch": str(torch.__version__), "numpy": numpy.__version__,
            "python": platform.python_version()}


def make_payload(model: FERModel, model_name: str, classes: list[str], preprocess: Preprocess, *,
                 config: dict | None = None, metrics: dict | None = None, epoch: int | None = None,
                 extra: dict | None = None, half: bool = False) -> dict:
    """The dict that `save` writes. `half=True` stores float weights as fp16 (for shipping)."""
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone()
             for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "model": {"name": model_name, "num_classes": model.num_classes, "in_chans": model.in_chans,
                  "input_size": model.input_size},
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
    """Atomically write `payload` to `path`; the previous file survives any failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a checkpoint is an ordinary file
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise OSError(e.errno, f"could not save checkpoint {path} ({e.strerror}); the previous file, "
                          "if any, is unchanged. Free disk space or choose another --out") from e
        raise
    return path


#: Models shipped inside the package, by the name accepted wherever a checkpoint is.
BUNDLED = {"default": "the accurate default (fernet_s)", "tiny": "the fast model (fernet_tiny)"}


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
        raise FileNotFoundError(f"checkpoint {p} does not exist; pass a .pt file, a run directory or 'default'")
    return p


def read(ref: str | Path) -> dict:
    """Load the raw payload, checking it is a ferlab checkpoint."""
    p = resolve(ref)
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt/truncated/not a torch file: say which file and why
        raise ValueError(f"{p} is not a readable ferlab checkpoint: {e}") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{p} is not a ferlab checkpoint (expected format {FORMAT!r})")
    return payload


def build(payload: dict, path: str = "") -> Loaded:
    m = payload["model"]
    model = create_model(m["name"], num_classes=m["num_classes"], in_chans=m["in_chans"], input_size=m["input_size"])
    state = {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    model.load_state_dict(state)
    model.eval()
    meta = {k: v for k, v in payload.items() if k not in ("state_dict", "optimizer")}
    return Loaded(model, list(payload["classes"]), Preprocess.from_dict(payload["preprocess"]), meta, str(path))


def load(ref: str | Path = DEFAULT_NAME) -> Loaded:
    """Rebuild a ready (eval-mode) model from 'default', a checkpoint file or a run directory."""
    return build(read(ref), str(resolve(ref)))


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
    payload = {k: v for k, v in payload.items() if k not in ("optimizer", "ema", "train_state", "rng")}
    payload["state_dict"] = {k: v.half() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    payload["bundled_from"] = str(resolve(ref))
    return save(payload, out or default_path())

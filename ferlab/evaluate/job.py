"""`evaluate`: a checkpoint scored on a dataset split, its files written once by `outputs`."""
from __future__ import annotations

from pathlib import Path

import torch

from .. import checkpoint, data, labels
from ..devices import keep_freed_memory, resolve
from ..fileio import write_json
from .calibration import reliability
from .config import EvaluateConfig
from .metrics import metrics
from .outputs import write_evaluation
from .tta import predict_logits


def evaluate(ref: str | Path, data_path: str | Path, split: str = "val", tta: str | None = None,
             out_dir: str | Path | None = None, json_path: str | Path | None = None,
             skip_bad: bool = False, device: str = "cpu") -> dict:
    """Evaluate a checkpoint ('default', a .pt file or a run directory) on a dataset split.

    Writes eval_<split>.json, confusion_<split>.csv and .png into `out_dir` (default: the run
    directory for a run, else nothing) and the JSON also to `json_path` when given.
    """
    keep_freed_memory()
    loaded = checkpoint.load(ref)
    loaded.model.to(resolve(device))  # batches follow the model (predict_logits)
    pp = loaded.preprocess
    ds = data.load(data_path, split, size=pp.size, channels=pp.channels, skip_bad=skip_bad)
    # The dataset's classes mapped into the checkpoint's label set by name, never by position.
    idx = torch.tensor(labels.index_map(ds.classes, loaded.classes))
    y_true = idx[ds.labels].numpy()
    if tta is None:
        tta = loaded.meta.get("config", {}).get("tta", "none")
    logits = predict_logits(loaded.model, ds.images, pp, tta)
    m = metrics(y_true, logits.argmax(1).numpy(), loaded.classes)
    m.update({"split": split, "data": str(data_path), "checkpoint": loaded.path, "tta": tta, "device": device,
              "skipped": [list(s) for s in ds.skipped]})
    # Probabilities as every other verb shows them: divided by the checkpoint's temperature.
    t = loaded.temperature
    curves = {"uncalibrated": reliability(logits.softmax(1).numpy(), y_true)}
    if t != 1.0:
        curves[f"temperature {t:.2f}"] = reliability((logits / t).softmax(1).numpy(), y_true)
    m.update({"temperature": t, "ece": list(curves.values())[-1]["ece"], "reliability": curves})
    if out_dir is None and Path(str(ref)).is_dir():
        out_dir = Path(ref)
    if out_dir is not None:
        write_evaluation(m, out_dir, split, title=f"{loaded.model_name} on {split}")
    if json_path:
        write_json(json_path, m)
    return m


def run(cfg: EvaluateConfig) -> dict:
    return evaluate(cfg.model, cfg.data, cfg.split, tta=cfg.tta, out_dir=cfg.out, json_path=cfg.json,
                    skip_bad=cfg.skip_bad, device=cfg.device)

"""Classifier backends: float32 (B, C, H, W) -> logits (B, K) as numpy callables.

`TorchClassifier` runs a checkpoint's PyTorch model; `onnx_classifier` opens an `ferlab export`
file in ONNX Runtime (`ferlab.export.onnx.OnnxClassifier`)."""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from ..devices import autocast, resolve
from ..models.fold import fold_batchnorm


class Classifier(Protocol):
    def __call__(self, x: np.ndarray) -> np.ndarray: ...


class TorchClassifier:
    """A checkpoint's PyTorch model as a float32 (B, C, H, W) -> logits (B, K) numpy callable.

    Runs on `device` in channels_last (oneDNN's fast path on CPU; same logits to ~1e-6). `amp=True`
    adds mixed precision (bfloat16 on CPUs): ~3.5x the faces/s of fp32 for FerNet-S at batch 64 on
    CPUs with AMX, with logits off by up to ~0.1 (see `ferlab bench infer`), so it is opt-in.
    """

    def __init__(self, model: torch.nn.Module, amp: bool = False, device: torch.device | str = "cpu"):
        self.device = resolve(device)
        # a copy with BatchNorm folded into the layers before it (models.fold); a model with nothing
        # to fold is used (and moved) itself, as before
        self.model = fold_batchnorm(model).to(self.device, memory_format=torch.channels_last)
        self.amp = amp

    def __call__(self, x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)
        t = t.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), autocast(self.device, self.amp):
            return self.model(t).float().cpu().numpy()


def onnx_classifier(path: str | Path) -> Classifier:
    try:
        from ..export.onnx import OnnxClassifier
    except ImportError as e:
        raise RuntimeError(f"the onnx backend needs onnxruntime and onnx: {e}") from e
    return OnnxClassifier(path)

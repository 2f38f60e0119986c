"""Classifier backends: float32 (B, C, H, W) -> logits (B, K) as numpy callables.

`TorchClassifier` runs a checkpoint's PyTorch model; `onnx_classifier` opens an `ferlab export`
file in ONNX Runtime (`ferlab.export.onnx.OnnxClassifier`)."""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import torch


class Classifier(Protocol):
    def __call__(self, x: np.ndarray) -> np.ndarray: ...


class TorchClassifier:
    """A checkpoint's PyTorch model as a float32 (B, C, H, W) -> logits (B, K) numpy callable.

    Runs in channels_last (oneDNN's fast path on CPU; same logits to ~1e-6). `bf16=True` adds
    bfloat16 autocast: ~3.5x the faces/s of fp32 for FerNet-S at batch 64 on CPUs with AMX, with
    logits off by up to ~0.1 (see `ferlab bench infer`), so it is opt-in.
    """

    def __init__(self, model: torch.nn.Module, bf16: bool = False):
        self.model = model.eval().to(memory_format=torch.channels_last)
        self.bf16 = bf16

    def __call__(self, x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            return self.model(t).float().numpy()


def onnx_classifier(path: str | Path) -> Classifier:
    try:
        from ..export.onnx import OnnxClassifier
    except ImportError as e:
        raise RuntimeError(f"the onnx backend needs onnxruntime and onnx: {e}") from e
    return OnnxClassifier(path)

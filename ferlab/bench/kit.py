"""What the benchmarks (`infer`, `use`, and `train`) share: the model to time, the timing loop,
and the facts recorded beside every figure (machine, versions, a busy-machine warning)."""
from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .. import checkpoint
from ..checkpoint import Loaded
from ..models import create_model, get_spec, list_models
from ..preprocess import Preprocess


def load_model(ref: str) -> Loaded:
    """A checkpoint ref ('default', a .pt file, a run directory), or a registered model name with
    random weights and the architecture's default preprocessing (speed does not depend on weights)."""
    if ref in list_models() and not Path(ref).exists():
        spec = get_spec(ref)
        model = create_model(ref).eval()
        pre = Preprocess(size=spec.input_size, channels=spec.in_chans, mean=(0.5,) * spec.in_chans,
                         std=(0.25,) * spec.in_chans)
        meta = {"model": {"name": ref, "num_classes": spec.num_classes, "in_chans": spec.in_chans,
                          "input_size": spec.input_size}}
        return Loaded(model, [f"class{i}" for i in range(spec.num_classes)], pre, meta, f"registry:{ref}")
    try:
        return checkpoint.load(ref)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{e}; or name a registered model: {', '.join(list_models())}") from None


def time_calls(fn: Callable, seconds: float, warmup: int) -> np.ndarray:
    """Seconds taken by each call of `fn` over about `seconds` (at least 3 calls), after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 3:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return np.asarray(times)


def busy_warnings(before: list[float], after: list[float], threads: int) -> list[str]:
    """A warning when the load averages around a run say other work competed for the cores."""
    # Our own run adds up to `threads` to the load, so only what is beyond that is someone else's.
    cores = os.cpu_count() or 1
    if before[0] > 0.5 or after[0] > threads + 0.5 or threads > cores:
        return [f"machine busy (1-min load average {before[0]:.2f} before, {after[0]:.2f} after, {cores} cores, "
                f"{threads} threads): threads competing for cores stall each other, so these figures can be "
                "far below the machine's; rerun when it is idle"]
    return []


def machine() -> dict:
    """The CPU model, core count, PyTorch's CPU capability and the platform."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "platform": platform.platform()}


def versions() -> dict:
    """The versions a checkpoint records, plus ONNX Runtime's."""
    import onnxruntime

    return {**checkpoint.versions(), "onnxruntime": onnxruntime.__version__}

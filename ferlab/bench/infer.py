"""Classification speed on a CPU: faces/s and latency of models in PyTorch and ONNX Runtime.

Only the classifier is timed (normalised float32 faces in, logits out); detection, alignment and
decoding are not. Every PyTorch variant is measured and checked against plain fp32 eager, and the
`torch` headline per batch size is the fastest variant whose logits stay close to it, so an
optimisation is reported only when it pays here, on this CPU.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..export import onnx as export
from ..fileio import write_json
from .kit import busy_warnings, load_model, machine, time_calls, versions
from ..models import count_params
from ..preprocess import Preprocess

BACKENDS = ("torch", "onnx", "onnx_int8")
TORCH_VARIANTS = ("eager", "channels_last", "jit_freeze", "bf16_channels_last")
#: A variant counts as numerically close to fp32 eager when its max |logit difference| is below
#: this fraction of the largest |logit| (fp32 variants land near 1e-6, bf16 near 1e-2).
CLOSE_REL_TOL = 0.02
WARMUP_CALLS = 3


def bench_infer(models: Sequence[str | Path], out: str | Path | None = None, *,
                batch_sizes: Sequence[int] = (1, 64), threads: int = 2, seconds: float = 2.0,
                backends: Sequence[str] = ("torch", "onnx")) -> dict:
    """Measure classification faces/s and latency for each model, backend and batch size.

    `models` are checkpoint refs ('default', a .pt file, a run directory), exported .onnx files
    (ONNX backends only), or registered model names (random weights, the architecture's default
    preprocessing: speed does not depend on the weights). Each (model, backend, variant, batch) is
    timed for about `seconds` after a warm-up. `backends` come from `BACKENDS`; "onnx_int8" is a
    statically quantized export (random calibration). The result, with the load average before and
    after, the thread counts and versions, is written as JSON to `out` when given, and returned.
    """
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        raise ValueError(f"unknown backend(s) {unknown}; choose from: {', '.join(BACKENDS)}")
    if not models:
        raise ValueError("no models to benchmark; pass checkpoint paths, run directories, 'default' or model names")
    if any(int(b) < 1 for b in batch_sizes) or seconds <= 0 or threads < 1:
        raise ValueError("batch sizes and threads must be >= 1 and seconds > 0")

    prev_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        load_before = list(os.getloadavg())
        results = [_bench_model(str(ref), tuple(int(b) for b in batch_sizes), threads, seconds, tuple(backends))
                   for ref in models]
        load_after = list(os.getloadavg())
        report = {
            "what": "classification only: normalised float32 faces in, logits out",
            "threads": threads, "torch_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads(),
            "seconds_per_measurement": seconds, "batch_sizes": list(batch_sizes), "backends": list(backends),
            "load_avg_before": load_before, "load_avg_after": load_after,
            "warnings": busy_warnings(load_before, load_after, threads),
            "machine": machine(), "versions": versions(), "models": results,
        }
    finally:
        torch.set_num_threads(prev_threads)
    if out is not None:
        write_json(out, report)
    return report


def _bench_model(ref: str, batch_sizes: tuple[int, ...], threads: int, seconds: float,
                 backends: tuple[str, ...]) -> dict:
    if ref.endswith(".onnx"):
        clf = export.OnnxClassifier(ref, threads=threads)
        entry = {"ref": ref, "model": clf.model_name, "quantization": clf.meta.get("quantization"), "backends": {}}
        for b in backends:  # an exported file is timed as it is, under "onnx"; it holds no PyTorch model
            entry["backends"][b] = (_bench_onnx(clf, clf.preprocess, batch_sizes, seconds) if b == "onnx" else
                                    {"skipped": f"{ref} is an exported ONNX file; {b} needs its checkpoint"})
        return entry

    loaded = load_model(ref)
    pre = loaded.preprocess
    entry = {"ref": ref, "model": loaded.model_name, "params": count_params(loaded.model, trainable_only=False),
             "input": [pre.channels, pre.size, pre.size], "backends": {}}
    for b in backends:
        if b == "torch":
            entry["backends"][b] = _bench_torch(loaded.model, pre, batch_sizes, seconds)
        elif b in ("onnx", "onnx_int8"):
            with tempfile.TemporaryDirectory(prefix="ferlab-bench-") as tmp:
                path = export.export_onnx(loaded, Path(tmp) / "model.onnx", quantize=b == "onnx_int8")
                clf = export.OnnxClassifier(path, threads=threads)
                entry["backends"][b] = {**_bench_onnx(clf, pre, batch_sizes, seconds),
                                        "export_check": json.loads(clf.meta["verification"])}
        else:
            raise ValueError(f"unknown backend {b!r}; choose from: {', '.join(BACKENDS)}")
    return entry


def _bench_torch(model: torch.nn.Module, pre: Preprocess, batch_sizes: tuple[int, ...], seconds: float) -> dict:
    model = model.eval()
    per_batch = {}
    for bs in batch_sizes:
        x = torch.from_numpy(export.random_inputs(pre, bs, seed=bs))
        with torch.inference_mode():
            ref = model(x).float()
        scale = float(ref.abs().max()) or 1.0
        variants = {}
        for name in TORCH_VARIANTS:
            try:
                fn = _torch_variant(name, model, x)
            except Exception as e:  # an optimisation that does not apply to this model is a result, not a crash
                variants[name] = {"error": f"{type(e).__name__}: {e}"}
                continue
            with torch.inference_mode():
                got = fn().float()
            diff = float((got - ref).abs().max())
            variants[name] = {**_time_calls(fn, bs, seconds), "max_abs_diff": diff,
                              "top1_agreement": float((got.argmax(1) == ref.argmax(1)).float().mean()),
                              "close": diff <= CLOSE_REL_TOL * scale}
        ok = {n: v for n, v in variants.items() if v.get("close")}
        best = max(ok, key=lambda n: ok[n]["faces_per_s"])
        per_batch[str(bs)] = {**{k: ok[best][k] for k in ("faces_per_s", "latency_ms_p50", "latency_ms_p90")},
                              "variant": best, "variants": variants}
    return {"batches": per_batch, **_one_face(per_batch)}


def _torch_variant(name: str, model: torch.nn.Module, x: torch.Tensor) -> Callable[[], torch.Tensor]:
    """A no-argument callable running `model` on `x` the `name` way (inputs prepared outside the timing)."""
    if name == "eager":
        return _inference(model, x)
    if name == "channels_last":
        m = _copy(model).to(memory_format=torch.channels_last)
        return _inference(m, x.contiguous(memory_format=torch.channels_last))
    if name == "jit_freeze":
        m = _copy(model).to(memory_format=torch.channels_last)
        xc = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():  # freeze needs a traced module built outside inference_mode
            traced = torch.jit.freeze(torch.jit.trace(m, xc, check_trace=False))
        return _inference(traced, xc)
    if name == "bf16_channels_last":
        m = _copy(model).to(dtype=torch.bfloat16, memory_format=torch.channels_last)
        return _inference(m, x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last))
    raise ValueError(f"unknown torch variant {name!r}; choose from: {', '.join(TORCH_VARIANTS)}")


def _copy(model: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(model).eval()


def _inference(model: Callable, x: torch.Tensor) -> Callable[[], torch.Tensor]:
    def run():
        with torch.inference_mode():
            return model(x)

    return run


def _bench_onnx(clf: export.OnnxClassifier, pre: Preprocess, batch_sizes: tuple[int, ...], seconds: float) -> dict:
    per_batch = {}
    for bs in batch_sizes:
        x = export.random_inputs(pre, bs, seed=bs)
        per_batch[str(bs)] = _time_calls(lambda: clf(x), bs, seconds)
    return {"batches": per_batch, **_one_face(per_batch)}


def _time_calls(fn: Callable, batch: int, seconds: float) -> dict:
    t = time_calls(fn, seconds, WARMUP_CALLS)
    return {"faces_per_s": round(batch * len(t) / float(t.sum()), 1),
            "latency_ms_p50": round(float(np.median(t)) * 1e3, 4),
            "latency_ms_p90": round(float(np.percentile(t, 90)) * 1e3, 4), "calls": len(t)}


def _one_face(per_batch: dict) -> dict:
    """Latency of classifying a single face: the batch-1 median, when batch 1 was measured."""
    one = per_batch.get("1")
    return {"one_face_latency_ms": one["latency_ms_p50"] if one else None}

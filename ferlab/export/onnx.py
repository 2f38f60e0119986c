"""Checkpoint -> self-describing ONNX file, and a small ONNX Runtime classifier that reads one back.

The ONNX graph takes `input`, float32 (B, C, H, W) already normalised per the checkpoint's
preprocessing, and returns `logits` (B, K); the batch axis is dynamic. The file's metadata_props
carry what a user needs to feed it without the checkpoint: `classes` (JSON list, in logit order),
`preprocess` (JSON of `Preprocess.to_dict()`), `model` (registry name), `model_args` (JSON),
`quantization` and `verification` (JSON of the post-export check).
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from .. import __version__, checkpoint
from ..checkpoint import Loaded
from ..fileio import atomic_write
from ..preprocess import Preprocess
from .config import FORMATS, QUANTIZATIONS

FORMAT = "ferlab-onnx/1"
FP32_TOLERANCE = 1e-3
#: Random faces used to check an export and, without a calibration set, to calibrate int8.
CHECK_BATCH = 16
CALIBRATION_BATCH = 64


def random_inputs(preprocess: Preprocess, n: int, seed: int = 0) -> np.ndarray:
    """`n` random-pixel faces, normalised exactly as the model expects: float32 (n, C, H, W)."""
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (n, preprocess.channels, preprocess.size, preprocess.size), generator=g,
                           dtype=torch.uint8)
    return preprocess.normalize(pixels).numpy()


def export(ref: str | Path, out: str | Path | None = None, fmt: str = "onnx", quantize: str | None = None,
           opset: int = 17) -> Path:
    """Export checkpoint `ref` in format `fmt` (one of `FORMATS`) to `out`, by default `default_out(...)`.

    `quantize` is None or one of `QUANTIZATIONS`.
    """
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ValueError(f"unknown quantization {quantize!r}; choose one of: {', '.join(QUANTIZATIONS)}")
    if fmt == "onnx":
        return export_onnx(ref, out or default_out(ref, fmt, quantize), quantize=quantize == "int8", opset=opset)
    else:
        raise ValueError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")


def default_out(ref: str | Path, fmt: str = "onnx", quantize: str | None = None) -> Path:
    """Beside the checkpoint (`best.pt` -> `best.onnx`, `best.int8.onnx`); the bundled default goes
    to the current directory rather than into the installed package."""
    src = checkpoint.resolve(ref)
    name = src.stem + (f".{quantize}" if quantize else "") + f".{fmt}"
    return Path(name) if str(ref) in checkpoint.BUNDLED else src.with_name(name)


def export_onnx(ref_or_loaded: str | Path | Loaded, out_path: str | Path, quantize: bool = False, opset: int = 17,
                calibration: np.ndarray | None = None) -> Path:
    """Export a checkpoint ('default', a .pt file, a run directory, or a `Loaded`) to ONNX at `out_path`.

    fp32: the file is checked with ONNX Runtime on a random batch of a size different from the
    traced one; a max |logit difference| to PyTorch of `FP32_TOLERANCE` or more raises RuntimeError.

    `quantize=True` writes an int8 model by onnxruntime's *static* QDQ quantization (per-channel
    weights, activations calibrated with min/max). The calibration set is `calibration`, float32
    (N, C, H, W) normalised inputs, ideally a few hundred real training faces; without it, 64
    random-pixel faces are used, which gives activation ranges unlike real faces and so a larger
    accuracy loss. int8 logits cannot match PyTorch to 1e-3, so the check records the top-1
    agreement with PyTorch (and the max logit difference) in the metadata instead of raising; it is
    measured on the calibration faces when given, else on random-pixel faces.

    The file is written atomically (`fileio.atomic_write`). Returns the path written.
    """
    loaded = ref_or_loaded if isinstance(ref_or_loaded, Loaded) else checkpoint.load(ref_or_loaded)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    model, pre = loaded.model, loaded.preprocess
    if calibration is not None and not quantize:
        raise ValueError("a calibration set is only used with quantize=True")

    with tempfile.TemporaryDirectory(prefix=".ferlab-export-", dir=out_path.parent) as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        _torch_export(model, pre, fp32, opset)
        path, check = fp32, (random_inputs(pre, CHECK_BATCH, seed=2), "random-pixel faces")
        if quantize:
            calib = random_inputs(pre, CALIBRATION_BATCH, seed=1) if calibration is None else calibration
            calib = _check_inputs(calib, pre)
            path = _quantize_static(fp32, Path(tmp), calib)
            if calibration is not None:  # real faces make the agreement figure mean something
                check = (calib[:CALIBRATION_BATCH], "calibration faces")
        verification = _verify(model, path, *check, quantized=quantize)

        import onnx

        proto = onnx.load(str(path))
        meta = {
            "format": FORMAT,
            "classes": json.dumps(list(loaded.classes)),
            "preprocess": json.dumps(pre.to_dict()),
            "model": loaded.model_name,
            "model_args": json.dumps(loaded.meta.get("model", {})),
            "quantization": "int8-static-qdq" if quantize else "none",
            "temperature": json.dumps(loaded.temperature),
            "verification": json.dumps(verification),
            "source": str(loaded.path),
            "ferlab_version": __version__,
        }
        del proto.metadata_props[:]
        for k, v in meta.items():
            proto.metadata_props.add(key=k, value=v)
        proto.producer_name, proto.producer_version = "ferlab", __version__
        atomic_write(out_path, lambda f: f.write(proto.SerializeToString()), "ONNX file")
    return out_path


def _torch_export(model: torch.nn.Module, pre: Preprocess, path: Path, opset: int) -> None:
    was_training = model.training
    model.eval()
    try:
        example = torch.from_numpy(random_inputs(pre, 2))
        # The TorchScript exporter: the dynamo one needs onnxscript, which ferlab does not depend on.
        torch.onnx.export(model, (example,), str(path), input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=opset,
                          do_constant_folding=True, dynamo=False)
    finally:
        model.train(was_training)


def _check_inputs(x: np.ndarray, pre: Preprocess) -> np.ndarray:
    x = np.asarray(x)
    want = (pre.channels, pre.size, pre.size)
    if x.ndim != 4 or x.shape[1:] != want or x.shape[0] < 1:
        raise ValueError(f"expected inputs of shape (N, {', '.join(map(str, want))}), got {x.shape}")
    return np.ascontiguousarray(x, dtype=np.float32)


def _quantize_static(fp32: Path, tmp: Path, calib: np.ndarray) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class _Reader(CalibrationDataReader):
        def __init__(self):
            self._batches = iter([{"input": calib[i:i + 1]} for i in range(len(calib))])

        def get_next(self):
            return next(self._batches, None)

    prepped, out = tmp / "prep.onnx", tmp / "int8.onnx"
    # Folds BatchNorm into the convolutions and infers shapes, so each conv gets one set of scales.
    quant_pre_process(str(fp32), str(prepped), skip_symbolic_shape=True)
    quantize_static(str(prepped), str(out), _Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return out


def _verify(model: torch.nn.Module, path: Path, x: np.ndarray, inputs: str, quantized: bool) -> dict:
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            ref = model(torch.from_numpy(x)).numpy()
    finally:
        model.train(was_training)
    got = _session(path, threads=1).run(["logits"], {"input": x})[0]
    diff = float(np.abs(got - ref).max())
    agree = float((got.argmax(1) == ref.argmax(1)).mean())
    # distinct_top1 tells whether the agreement is informative: an untrained model on random
    # pixels predicts one class for everything and agrees trivially.
    result = {"batch": len(x), "inputs": inputs, "max_abs_diff": diff, "top1_agreement": agree,
              "distinct_top1": int(len(np.unique(ref.argmax(1))))}
    if not quantized and not diff < FP32_TOLERANCE:
        raise RuntimeError(f"ONNX export disagrees with PyTorch: max |logit difference| {diff:.3g} on a random batch "
                           f"of {len(x)} (tolerance {FP32_TOLERANCE}); the model likely uses an operator the "
                           f"exporter translates differently; try another --opset")
    return result


def _session(path: str | Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


class OnnxClassifier:
    """An exported ferlab ONNX file ready to classify normalised faces with ONNX Runtime.

    `clf(x)` takes float32 (B, C, H, W) normalised per `clf.preprocess` and returns logits (B, K)
    in the order of `clf.classes`.
    """

    def __init__(self, path: str | Path, threads: int = 2):
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"ONNX model {self.path} does not exist; create one with `ferlab export`")
        self.session = _session(self.path, threads)
        props = self.session.get_modelmeta().custom_metadata_map
        missing = [k for k in ("classes", "preprocess", "model") if k not in props]
        if missing:
            raise ValueError(f"{self.path} lacks ferlab metadata {missing}; was it written by `ferlab export`?")
        self._classes = list(json.loads(props["classes"]))
        self._preprocess = Preprocess.from_dict(json.loads(props["preprocess"]))
        self.meta = dict(props)
        self.model_name = props["model"]

    @property
    def classes(self) -> list[str]:
        return list(self._classes)

    @property
    def preprocess(self) -> Preprocess:
        return self._preprocess

    @property
    def temperature(self) -> float:
        """The checkpoint's calibration temperature (1.0 for files exported before calibration)."""
        return float(json.loads(self.meta.get("temperature", "1.0")))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = _check_inputs(x, self._preprocess)
        return self.session.run(["logits"], {"input": x})[0]  # (B, K)

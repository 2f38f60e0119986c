"""ONNX export: numerics against PyTorch, self-describing metadata, int8, the CLI and its errors."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from conftest import save_checkpoint
from ferlab import checkpoint
from ferlab.export import onnx as export
from ferlab.cli import main
from ferlab.export import OnnxClassifier, export_onnx
from ferlab.labels import FER2013_CLASSES
from ferlab.models import create_model
from ferlab.preprocess import Preprocess

# Not the defaults, so a metadata round trip that fell back to defaults would be caught.
PRE = Preprocess(size=48, channels=1, mean=(0.45,), std=(0.3,), crop_margin=0.1)


@pytest.fixture(autouse=True)
def one_thread():
    # The CI machine has 2 cores that other jobs may be using; 2 OpenMP threads then stall.
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


def blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noise faces with a bright square in one of 7 places; the place is the label."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 7, (n,), generator=g)
    img = torch.randint(0, 120, (n, 1, 48, 48), generator=g, dtype=torch.uint8)
    for i, k in enumerate(y.tolist()):
        r, c = divmod(k, 3)
        img[i, :, 4 + r * 14:14 + r * 14, 4 + c * 14:14 + c * 14] = 255
    return PRE.normalize(img).numpy(), y.numpy()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A fernet_tiny trained a few steps on `blobs`, so its predictions vary with the input and
    top-1 agreement after quantization means something."""
    torch.manual_seed(0)
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    m = create_model("fernet_tiny")
    opt = torch.optim.Adam(m.parameters(), 3e-3)
    for step in range(25):
        x, y = blobs(16, step)
        loss = torch.nn.functional.cross_entropy(m(torch.from_numpy(x)), torch.from_numpy(y))
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.set_num_threads(prev)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "m.pt", preprocess=PRE, model_obj=m)


@pytest.fixture(scope="module")
def onnx_path(ckpt):
    return export_onnx(ckpt, ckpt.with_name("m.onnx"))


@pytest.mark.parametrize("batch", [1, 5])
def test_onnx_logits_match_pytorch(ckpt, onnx_path, batch):
    loaded = checkpoint.load(ckpt)
    x, _ = blobs(batch, seed=100 + batch)
    with torch.inference_mode():
        ref = loaded.model(torch.from_numpy(x)).numpy()
    got = OnnxClassifier(onnx_path, threads=1)(x)
    assert got.shape == (batch, 7) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)
    assert ref.std() > 0.1  # the comparison is of real, input-dependent logits


def test_metadata_round_trips(onnx_path):
    clf = OnnxClassifier(onnx_path)
    assert clf.classes == list(FER2013_CLASSES)
    assert clf.preprocess == PRE
    assert clf.model_name == "fernet_tiny"
    assert clf.meta["quantization"] == "none"
    check = json.loads(clf.meta["verification"])
    assert check["max_abs_diff"] < 1e-3 and check["top1_agreement"] == 1.0
    # Readable without ferlab: plain onnx metadata_props, batch axis symbolic.
    proto = onnx.load(str(onnx_path))
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["classes"]) == list(FER2013_CLASSES)
    assert json.loads(props["preprocess"])["mean"] == [0.45]
    (inp,), (out,) = proto.graph.input, proto.graph.output
    assert (inp.name, out.name) == ("input", "logits")
    assert inp.type.tensor_type.shape.dim[0].dim_param and out.type.tensor_type.shape.dim[0].dim_param


def test_int8_agrees_on_top1_and_is_quantized(ckpt, tmp_path):
    calib, _ = blobs(32, seed=7)
    path = export_onnx(ckpt, tmp_path / "q.onnx", quantize=True, calibration=calib)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    x, y = blobs(48, seed=8)
    q = OnnxClassifier(path)
    assert q.meta["quantization"] == "int8-static-qdq" and q.classes == list(FER2013_CLASSES)
    check = json.loads(q.meta["verification"])
    assert check["inputs"] == "calibration faces" and check["batch"] == 32 and check["distinct_top1"] >= 5
    pred = q(x).argmax(1)
    loaded = checkpoint.load(ckpt)
    with torch.inference_mode():
        ref = loaded.model(torch.from_numpy(x)).numpy().argmax(1)
    assert len(set(ref.tolist())) >= 5  # predictions vary, so agreement is not trivial
    assert (pred == ref).mean() >= 0.9
    assert path.stat().st_size < 0.5 * ckpt.stat().st_size


def test_failed_check_leaves_no_file(ckpt, tmp_path, monkeypatch):
    monkeypatch.setattr(export, "FP32_TOLERANCE", 0.0)
    out = tmp_path / "bad.onnx"
    with pytest.raises(RuntimeError, match="disagrees with PyTorch"):
        export_onnx(ckpt, out)
    assert list(tmp_path.iterdir()) == []


def test_classifier_rejects_wrong_input_shape(onnx_path):
    with pytest.raises(ValueError, match=r"\(N, 1, 48, 48\)"):
        OnnxClassifier(onnx_path)(np.zeros((2, 3, 48, 48), np.float32))


def test_classifier_rejects_onnx_without_metadata(onnx_path, tmp_path):
    proto = onnx.load(str(onnx_path))
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    with pytest.raises(ValueError, match="ferlab metadata"):
        OnnxClassifier(bare)


def test_cli_export_default_out(ckpt, capsys):
    out = ckpt.with_name("m.int8.onnx")
    assert main(["export", str(ckpt), "--quantize", "int8"]) == 0
    assert out.exists() and OnnxClassifier(out).meta["quantization"] == "int8-static-qdq"
    assert str(out) in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--format", "tflite"], "unknown export format 'tflite'; choose one of: onnx"),
    (["--quantize", "int4"], "unknown quantization 'int4'; choose one of: int8"),
])
def test_cli_bad_choice(ckpt, tmp_path, capsys, argv, message):
    assert main(["export", str(ckpt), "--out", str(tmp_path / "x.onnx"), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()


def test_library_bad_format(ckpt):
    with pytest.raises(ValueError, match="choose one of: onnx"):
        export.export(ckpt, fmt="coreml")

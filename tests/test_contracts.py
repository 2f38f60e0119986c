"""The stage contracts, for every registered architecture: a checkpoint rebuilds exactly the model
that was in memory, the ONNX export computes the same logits, and Grad-CAM gives a real map."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ferlab import checkpoint
from ferlab.explain import gradcam
from ferlab.export.onnx import OnnxClassifier, export_onnx
from ferlab.models import create_model, get_spec, list_models
from ferlab.preprocess import Preprocess

CLASSES = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]


def _classes(name: str) -> list[str]:
    return CLASSES[:get_spec(name).num_classes]


def _trained_in_memory(name: str) -> tuple[torch.nn.Module, Preprocess]:
    """A model whose weights and BatchNorm statistics are not the initial ones, as after training."""
    torch.manual_seed(0)
    spec = get_spec(name)
    model = create_model(name)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    model.train()
    with torch.no_grad():
        model(torch.randn(4, spec.in_chans, spec.input_size, spec.input_size))  # moves running statistics
    model.eval()
    pre = Preprocess(size=spec.input_size, channels=spec.in_chans, mean=(0.5,) * spec.in_chans,
                     std=(0.25,) * spec.in_chans)
    return model, pre


def _faces(pre: Preprocess, n: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return pre.normalize(torch.randint(0, 256, (n, pre.channels, pre.size, pre.size), generator=g, dtype=torch.uint8))


@pytest.mark.parametrize("name", list_models())
def test_checkpoint_rebuilds_the_model_in_memory(name, tmp_path):
    model, pre = _trained_in_memory(name)
    path = checkpoint.save(checkpoint.make_payload(model, name, _classes(name), pre), tmp_path / "m.pt")
    loaded = checkpoint.load(path)
    x = _faces(pre)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), model(x))
    assert loaded.classes == _classes(name) and loaded.preprocess == pre


@pytest.mark.parametrize("name", [n for n in list_models() if n != "seed_cnn_b"] + [
    pytest.param("seed_cnn_b", marks=pytest.mark.skipif(True, reason="75.5M parameters: a 300 MB export; "
                                                                      "same layers as seed_cnn_b_pool"))])
def test_onnx_export_computes_the_same_logits(name, tmp_path):
    model, pre = _trained_in_memory(name)
    loaded = checkpoint.Loaded(model, _classes(name), pre, {"model": {"name": name}}, "memory")
    clf = OnnxClassifier(export_onnx(loaded, tmp_path / "m.onnx"), threads=1)
    x = _faces(pre)
    with torch.no_grad():
        expected = model(x).numpy()
    assert np.abs(clf(x.numpy()) - expected).max() < 1e-3


@pytest.mark.parametrize("name", [n for n in list_models() if create_model(n).cam_layer is not None])
def test_gradcam_is_not_degenerate(name):
    model, pre = _trained_in_memory(name)
    loaded = checkpoint.Loaded(model, _classes(name), pre, {"model": {"name": name}}, "memory")
    a = gradcam(loaded, _faces(pre, 4))
    assert a.maps.shape == (4, pre.size, pre.size) and np.isfinite(a.maps).all()
    assert a.maps.min() >= 0 and a.maps.max() <= 1
    assert max(float(m.std()) for m in a.maps) > 0.01, "every map is flat: Grad-CAM saw no signal"

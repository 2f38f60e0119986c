"""The models shipped inside the package load offline and behave like trained models."""
import numpy as np
import pytest

import ferlab
from ferlab import checkpoint
from ferlab.labels import FER2013_CLASSES


@pytest.mark.parametrize("name,arch", [("default", "fernet_s"), ("tiny", "fernet_tiny_wide")])
def test_bundled_models_load_offline(name, arch):
    loaded = checkpoint.load(name)
    assert loaded.model_name == arch
    assert loaded.classes == list(FER2013_CLASSES)
    assert loaded.preprocess.size == 48 and loaded.preprocess.channels == 1
    assert loaded.meta["metrics"]["val_acc"] > 0.59  # selected on FER2013 val (PublicTest)
    written = loaded.meta["config"]
    assert written.get("arch", written.get("model")) == arch  # configs before 'arch' called it 'model'


def test_load_default_is_the_default_checkpoint():
    assert ferlab.load_default().meta == checkpoint.load("default").meta


def test_default_model_sees_the_astronaut_smile():
    skdata = pytest.importorskip("skimage.data")
    result = ferlab.Recognizer().predict(skdata.astronaut())
    assert len(result.faces) == 1
    face = result.faces[0]
    assert face.label == "happy" and face.probs["happy"] > 0.5
    assert abs(sum(face.probs.values()) - 1) < 1e-4


def test_default_model_output_depends_on_the_input():
    # "predictions that ignore the input" is a classic FER failure: different faces, different outputs
    rec = ferlab.Recognizer(detector="none")
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 255, (48, 48), dtype=np.uint8) for _ in range(2)]
    p = rec.classify_faces(crops)
    assert p.shape == (2, 7) and not np.allclose(p[0], p[1], atol=1e-3)


def test_unknown_bundled_name_is_a_path_error():
    with pytest.raises(FileNotFoundError, match="does not exist"):
        checkpoint.load("defualt")


def test_bf16_recognizer_agrees_with_fp32_on_a_real_face():
    skdata = pytest.importorskip("skimage.data")
    fp32 = ferlab.Recognizer().predict(skdata.astronaut()).faces[0]
    bf16 = ferlab.Recognizer(amp=True).predict(skdata.astronaut()).faces[0]
    assert bf16.label == fp32.label
    assert max(abs(bf16.probs[c] - fp32.probs[c]) for c in FER2013_CLASSES) < 0.05
    assert bf16.box == fp32.box


def test_predict_config_rejects_bf16_with_onnx():
    from ferlab.predict import PredictConfig

    with pytest.raises(ValueError, match="amp \(bf16\) applies to the torch backend only"):
        PredictConfig(inputs=("x.jpg",), backend="onnx", amp=True)

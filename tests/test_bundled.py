"""The models shipped inside the package load offline and behave like trained models."""
import numpy as np
import pytest

import ferlab
from conftest import SHARED_FER
from ferlab import checkpoint, evaluate
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


# What the README gives for the shipped models on val (PublicTest, the split they were selected on),
# with each one's recorded TTA. A model bundled in their place has to reach these: replacing one by
# a weaker model fails here until this table is edited on purpose (issue 12: "replaced only by
# measured better ones").
SHIPPED_VAL = {"default": ("flip_shift", 0.710), "tiny": ("flip", 0.652)}


@pytest.mark.skipif(not (SHARED_FER / "val").is_dir(), reason=f"FER2013 val not found at {SHARED_FER}")
@pytest.mark.parametrize("name", sorted(SHIPPED_VAL))
def test_bundled_models_keep_their_val_accuracy(name):
    # fp16 weights and BatchNorm folding move the figures by a few hundredths of a point at most; a
    # checkpoint, preprocessing or inference change that costs accuracy fails here
    tta, floor = SHIPPED_VAL[name]
    loaded = checkpoint.load(name)
    assert loaded.meta["config"]["tta"] == tta
    recorded = loaded.meta["metrics"]["val_acc_tta"]
    assert recorded >= floor, f"bundled {name} records {recorded:.4f} with {tta} TTA, below the shipped {floor}"
    m = evaluate.evaluate(name, SHARED_FER, "val", tta=tta)
    assert m["n"] == 3589
    assert m["accuracy"] >= recorded - 0.002, (name, tta, m["accuracy"], recorded)
    assert m["macro_f1"] > 0.6


# Val accuracy without TTA on faces blurred with sigma 1 px (benchmarks/robustness.py's blur_1.0):
# the bundled models are trained for photos' soft faces (`--augment photo`), and a model bundled in
# their place must not lose that quietly (the `standard`-trained ones scored 58.7 % and 54.7 % here;
# these 65.6 % and 62.5 %).
SHIPPED_BLURRED = {"default": 0.65, "tiny": 0.62}


@pytest.mark.skipif(not (SHARED_FER / "val").is_dir(), reason=f"FER2013 val not found at {SHARED_FER}")
@pytest.mark.parametrize("name", sorted(SHIPPED_BLURRED))
def test_bundled_models_keep_their_accuracy_on_blurred_faces(name):
    import torch

    from ferlab import data
    from ferlab.data.degrade import blur, to_uint8
    from ferlab.evaluate import predict_logits

    loaded = checkpoint.load(name)
    ds = data.load(SHARED_FER, "val", size=48, channels=1, classes=list(loaded.classes))
    soft = to_uint8(blur(ds.images, torch.ones(len(ds.images))))
    acc = float((predict_logits(loaded.model, soft, loaded.preprocess).argmax(1) == ds.labels).float().mean())
    assert acc >= SHIPPED_BLURRED[name], f"bundled {name}: {acc:.4f} on blurred val faces"


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
    # (two uniform-noise crops are not enough: the 120-epoch default calls both "sad" at 99.9 %)
    rec = ferlab.Recognizer(detector="none")
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 255, (48, 48), dtype=np.uint8), np.full((48, 48), 128, np.uint8),
             np.tile(np.linspace(0, 255, 48).astype(np.uint8), (48, 1))]
    p = rec.classify_faces(crops)
    assert p.shape == (3, 7)
    assert not any(np.allclose(p[i], p[j], atol=1e-2) for i in range(3) for j in range(i + 1, 3))


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

"""Explainers on a tiny untrained checkpoint and on toy models whose right answer is known."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from conftest import save_checkpoint
from ferlab import checkpoint, explain, figures
from ferlab.checkpoint import Loaded
from ferlab.cli import main
from ferlab.labels import FER2013_CLASSES
from ferlab.models import FERModel, create_model
from ferlab.preprocess import Preprocess

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


@pytest.fixture(scope="module")
def loaded(ckpt) -> Loaded:
    return checkpoint.load(ckpt)


@pytest.fixture(scope="module")
def crops() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    face = 90 + 80 * np.exp(-((xx - 32) ** 2 + (yy - 30) ** 2) / 300)  # a bright blob on gray, plus noise
    return [np.clip(face + rng.normal(0, 20, face.shape), 0, 255).astype(np.uint8) for _ in range(2)]


class SignModel(FERModel):
    """Toy: a 1x1 conv splits the input into + and - channels, an in-place ReLU follows; class
    "bright" scores the mean positive part, class "dark" the mean negative part."""

    def __init__(self):
        super().__init__(num_classes=2, in_chans=1, input_size=16)
        self.conv = nn.Conv2d(1, 2, 1)
        self.act = nn.ReLU(inplace=True)
        self.cam_layer = "conv"
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
            self.conv.bias.zero_()

    def forward_features(self, x):
        return self.act(self.conv(x))

    def forward_head(self, x):
        return x.mean((2, 3))  # (B, 2)


def _toy(model: FERModel, name: str, classes: list[str]) -> Loaded:
    pre = Preprocess(size=model.input_size, channels=model.in_chans, mean=(0.0,), std=(1.0,))
    return Loaded(model.eval(), classes, pre, {"model": {"name": name}})


def _no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks
               and not m._backward_pre_hooks for m in model.modules())


# ---------------------------------------------------------------------------------------------


def test_model_input_uses_the_checkpoint_preprocessing(loaded, crops):
    x = explain.model_input(loaded, crops[0])
    pre = loaded.preprocess
    expected = pre.normalize(torch.from_numpy(pre.image_to_array(crops[0])[None].copy()))
    assert torch.equal(x, expected) and x.shape == (1, 1, 48, 48)
    assert torch.equal(explain.model_input(loaded, x[0]), x)  # preprocessed tensors pass through
    assert explain.model_input(loaded, np.stack(crops)).shape == (2, 1, 48, 48)
    with pytest.raises(ValueError, match=r"\(N, 1, 48, 48\)"):
        explain.model_input(loaded, torch.zeros(1, 3, 48, 48))
    assert np.array_equal(explain.to_images(loaded, x)[0], pre.image_to_array(crops[0])[0])


@pytest.mark.parametrize("samples", [0, 6])
def test_saliency_shape_finite_nonzero(loaded, crops, samples):
    a = explain.saliency(loaded, crops, samples=samples)
    assert a.maps.shape == (2, 48, 48) and a.maps.dtype == np.float32
    assert np.isfinite(a.maps).all() and (a.maps >= 0).all()
    assert (a.maps.reshape(2, -1).max(1) == pytest.approx(1.0)) and (a.maps > 0).mean() > 0.5
    assert a.targets == list(a.probs.argmax(1))
    assert explain.saliency(loaded, crops, "happy", samples=samples).targets == [3, 3]


def test_saliency_is_the_normalised_input_gradient(loaded, crops):
    x = explain.model_input(loaded, crops[:1]).requires_grad_(True)
    loaded.model(x)[0, FER2013_CLASSES.index("sad")].backward()
    g = x.grad.abs()[0, 0]
    assert np.allclose(explain.saliency(loaded, crops[:1], "sad").maps[0], (g / g.max()).numpy(), atol=1e-6)
    loaded.model.zero_grad(set_to_none=True)


def test_saliency_gradcam_activations_on_a_model_with_known_answers():
    toy = _toy(SignModel(), "sign", ["bright", "dark"])
    x = torch.rand(1, 1, 16, 16) + 0.5
    x[..., 8:] *= -1  # bright left half, dark right half
    sal = explain.saliency(toy, x, "bright").maps[0]
    assert (sal[:, 8:] == 0).all() and (sal[:, :8] > 0).all()
    for target, half, other in (("bright", np.s_[:, :7], np.s_[:, 9:]), ("dark", np.s_[:, 9:], np.s_[:, :7])):
        cam = explain.gradcam(toy, x, target).maps[0]
        assert cam.shape == (16, 16) and cam[half].min() > 0.3 and cam[other].max() == 0
    # The conv output is recorded as it left the conv, before the in-place ReLU after it.
    assert torch.equal(explain.activations(toy, x, "conv")["conv"], torch.cat([x, -x], 1))


def test_gradcam_shape_nonnegative_and_per_class(loaded, crops):
    a = explain.gradcam(loaded, crops)
    assert a.maps.shape == (2, 48, 48) and np.isfinite(a.maps).all() and (a.maps >= 0).all()
    assert a.maps.max() == pytest.approx(1.0)
    per_class = [explain.gradcam(loaded, crops[:1], c).maps[0] for c in FER2013_CLASSES]
    assert len({m.tobytes() for m in per_class}) > 1  # the class changes the map


def test_gradcam_without_a_conv_layer_says_to_use_saliency():
    torch.manual_seed(0)
    dnn = create_model("seed_dnn")
    ld = checkpoint.build(checkpoint.make_payload(dnn, "seed_dnn", list(FER2013_CLASSES), Preprocess()))
    with pytest.raises(ValueError, match="Grad-CAM needs a conv.*saliency"):
        explain.gradcam(ld, np.zeros((48, 48), np.uint8))
    assert explain.saliency(ld, np.full((48, 48), 128, np.uint8)).maps.shape == (1, 48, 48)


def test_unknown_class_and_layer_list_the_choices(loaded, crops):
    with pytest.raises(ValueError, match="unknown class 'joy!'.*angry, disgust"):
        explain.saliency(loaded, crops, "joy!")
    with pytest.raises(ValueError, match="unknown layer 'nope'.*stem.0"):
        explain.gradcam(loaded, crops, layer="nope")
    with pytest.raises(ValueError, match="not \\(N, C, H, W\\) feature maps.*stem.0"):
        explain.gradcam(loaded, crops, layer="fc")
    with pytest.raises(ValueError, match="unknown conv layer 'fc'.*stem.0"):
        explain.visualize_filters(loaded, "fc")


def test_hooks_are_removed_on_exit_and_on_error(loaded, crops):
    model = loaded.model
    for make in (lambda: explain.GradCAM(loaded), lambda: explain.Activations(loaded),
                 lambda: explain.Capture(model, ["stem.0", "fc"])):
        with make() as ex:
            assert not _no_hooks(model)  # the check below can see hooks when there are any
            if not isinstance(ex, explain.Capture):
                ex(crops)
        assert _no_hooks(model)
        with pytest.raises(RuntimeError, match="boom"):
            with make():
                raise RuntimeError("boom")
        assert _no_hooks(model)
    # An error raised while the hooks run (a layer that is not a feature map) also cleans up.
    with pytest.raises(ValueError):
        explain.gradcam(loaded, crops, layer="fc")
    assert _no_hooks(model)
    with explain.GradCAM(loaded) as cam:
        pass
    with pytest.raises(RuntimeError, match="with"):
        cam(crops)  # used after its hooks are gone


def test_explainers_leave_the_model_as_they_found_it(loaded, crops):
    x = explain.model_input(loaded, crops)
    with torch.no_grad():
        before = loaded.model(x)
    loaded.model.train()
    loaded.model.stem[1].eval()  # a frozen BatchNorm stays frozen
    try:
        explain.gradcam(loaded, crops)
        explain.saliency(loaded, crops, samples=3)
        explain.visualize_filters(loaded, filters=[0], steps=2)
        assert loaded.model.training and loaded.model.stages[0][1][1].training and not loaded.model.stem[1].training
    finally:
        loaded.model.eval()
    with torch.no_grad():
        assert torch.equal(loaded.model(x), before)
    assert all(p.grad is None for p in loaded.model.parameters())
    assert _no_hooks(loaded.model)


def test_activations_are_the_layers_outputs(loaded, crops):
    x = explain.model_input(loaded, crops)
    acts = explain.activations(loaded, crops)
    assert list(acts) == explain.conv_layers(loaded.model) and acts["stem.0"].shape == (2, 16, 24, 24)
    with torch.no_grad():
        assert torch.allclose(acts["stem.0"], loaded.model.stem[0](x))
        # stages.0 ends in an in-place ReLU; what was recorded is the block's output, unchanged after.
        expected = loaded.model.stages[0](loaded.model.stem(x))
    assert torch.allclose(explain.activations(loaded, x, "stages.0")["stages.0"], expected)


def test_filter_visualisation_excites_its_filters(loaded):
    r = explain.visualize_filters(loaded, "stages.1.1.0", [0, 5, 9], steps=24)
    assert r.images.shape == (3, 48, 48) and r.images.dtype == np.uint8 and r.filters == [0, 5, 9]
    assert (r.activation > r.start_activation + 0.01).all()
    # The reported activations are those of the returned images.
    acts = explain.activations(loaded, r.inputs, "stages.1.1.0")["stages.1.1.0"]
    assert np.allclose(acts[[0, 1, 2], [0, 5, 9]].mean((1, 2)).numpy(), r.activation, atol=1e-5)
    with pytest.raises(ValueError, match="has 64 filters"):
        explain.visualize_filters(loaded, "stages.1.1.0", [64])


def test_filter_visualisation_from_a_face(loaded, crops):
    r = explain.visualize_filters(loaded, filters=[1, 2], start=crops[0], steps=8)
    assert r.layer == explain.conv_layers(loaded.model)[-1] and r.images.shape == (2, 48, 48)
    assert (r.activation > r.start_activation).all()


def test_figures_are_pngs(loaded, crops, tmp_path):
    x = explain.model_input(loaded, crops[:1])
    img = explain.to_images(loaded, x)[0]
    a = explain.gradcam(loaded, x)
    p = figures.attribution_figure(img, [("happy", a.maps[0])], tmp_path / "a.png",
                                  dict(zip(loaded.classes, a.probs[0].tolist())))
    acts = explain.activations(loaded, x, "stem.0")["stem.0"][0]
    q = figures.activation_figure("stem.0", acts, tmp_path / "b.png")
    for path in (p, q):
        with Image.open(path) as im:
            assert im.format == "PNG" and im.size[0] > 100


# ---------------------------------------------------------------------------------------------
# ferlab explain


@pytest.fixture(scope="module")
def images(tmp_path_factory, crops) -> dict[str, Path]:
    skdata = pytest.importorskip("skimage.data")
    d = tmp_path_factory.mktemp("imgs")
    Image.fromarray(crops[0]).save(d / "crop.png")
    Image.fromarray(skdata.astronaut()).save(d / "astronaut.jpg")
    Image.fromarray(skdata.chelsea()).save(d / "cat.jpg")
    return {"crop": d / "crop.png", "photo": d / "astronaut.jpg", "cat": d / "cat.jpg"}


@pytest.mark.parametrize("method, extra, files", [
    ("saliency", [], ["crop_face0_saliency.png"]),
    ("smoothgrad", ["--samples", "3"], ["crop_face0_smoothgrad.png"]),
    ("gradcam", ["--target", "all"], ["crop_face0_gradcam.png"]),
    ("activations", ["--layer", "stem.0"], ["crop_face0_activations_stem.0.png"]),
    ("filters", ["--filters", "0-3", "--steps", "4"], ["crop_face0_filters_stages.2.1.0.png"]),
])
def test_cli_explain_writes_pngs(ckpt, images, tmp_path, capsys, method, extra, files):
    out = tmp_path / "out"
    assert main(["explain", str(images["crop"]), "--model", str(ckpt), "--method", method, "--out", str(out),
                 *extra]) == 0
    assert sorted(p.name for p in out.iterdir()) == files
    with Image.open(out / files[0]) as im:
        assert im.format == "PNG"
    assert f"wrote {out / files[0]}" in capsys.readouterr().out


def test_cli_explain_detects_faces_in_photos(ckpt, images, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["explain", str(images["photo"]), str(images["cat"]), "--model", str(ckpt), "--out", str(out)]) == 0
    assert [p.name for p in out.iterdir()] == ["astronaut_face0_gradcam.png"]
    text = capsys.readouterr().out
    assert "astronaut.jpg: 1 face(s)" in text and "cat.jpg: no face found" in text


def test_cli_explain_filters_without_images(ckpt, tmp_path):
    assert main(["explain", "--method", "filters", "--layer", "stem.0", "--filters", "0,3", "--steps", "2",
                 "--model", str(ckpt), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "filters_stem.0.png").exists()


def test_cli_explain_errors_list_the_choices(ckpt, images, tmp_path, capsys):
    base = ["explain", str(images["crop"]), "--model", str(ckpt), "--out", str(tmp_path / "o")]
    assert main(base + ["--target", "joy!"]) == 2
    assert "choose one of: angry, disgust, fear, happy, neutral, sad, surprise" in capsys.readouterr().err
    assert main(base + ["--layer", "nope"]) == 2
    assert "unknown layer 'nope'" in (err := capsys.readouterr().err) and "stem.0" in err
    assert main(base + ["--method", "filters", "--layer", "fc"]) == 2
    assert "unknown conv layer 'fc'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(base + ["--method", "lime"])
    assert "saliency" in capsys.readouterr().err
    assert main(["explain", "--method", "gradcam", "--model", str(ckpt)]) == 2
    assert "needs at least one image" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------------------------
# Shared scales, masked saliency, all channels, first-layer kernels, folders


def test_maps_keep_their_raw_peaks_and_share_a_scale_across_classes():
    toy = _toy(SignModel(), "sign", ["bright", "dark"])
    x = torch.rand(1, 1, 16, 16) + 0.5
    x[..., 8:] *= -0.25  # the dark half is 4x weaker than the bright half
    per_class = [explain.gradcam(toy, x, c) for c in ("bright", "dark")]
    # The class score is the mean over 256 pixels of a ReLU'd channel positive on half of them:
    # the Grad-CAM weight is (128 / 256) / 256, so the raw map is that channel / 512.
    assert per_class[0].peaks[0] == pytest.approx(x[0, 0, :, :8].max().item() / 512, rel=1e-5)
    assert per_class[1].peaks[0] == pytest.approx(-x[0, 0, :, 8:].min().item() / 512, rel=1e-5)
    shared = explain.shared_scale(per_class)  # (T, N, S, S)
    assert shared.shape == (2, 1, 16, 16) and shared.max() == pytest.approx(1.0)
    ratio = per_class[1].peaks[0] / per_class[0].peaks[0]
    assert shared[1, 0].max() == pytest.approx(ratio, rel=1e-5) and ratio < 0.3
    assert np.allclose(shared[1, 0], per_class[1].maps[0] * ratio, atol=1e-6)  # a rescaled copy, same shape


def test_top_pixels_keeps_exactly_the_top_k():
    rng = np.random.default_rng(0)
    maps = rng.random((3, 20, 20)).astype(np.float32)
    maps[2] = np.round(maps[2], 1)  # many ties
    masks = explain.top_pixels(maps, 0.1)
    assert masks.shape == maps.shape and masks.dtype == bool
    for m, keep in zip(maps, masks):
        assert keep.sum() == 40
        assert m[keep].min() >= m[~keep].max()
    assert explain.top_pixels(maps, 1e-6).reshape(3, -1).sum(1).tolist() == [1, 1, 1]
    assert explain.top_pixels(maps, 1.0).all()
    with pytest.raises(ValueError, match="keep"):
        explain.top_pixels(maps, 0.0)


def test_masked_saliency_keeps_the_most_salient_pixels_of_the_face(loaded, crops):
    m = explain.masked_saliency(loaded, crops, "happy", keep=0.05)
    sal = explain.saliency(loaded, crops, "happy")
    assert np.array_equal(m.masks, explain.top_pixels(sal.maps, 0.05))
    assert m.masks.reshape(2, -1).sum(1).tolist() == [round(0.05 * 48 * 48)] * 2
    assert np.array_equal(m.images[m.masks], m.faces[m.masks]) and (m.images[~m.masks] == 0).all()
    assert np.array_equal(m.faces, explain.to_images(loaded, explain.model_input(loaded, crops)))


def test_channel_pages_cover_every_channel():
    pages = explain.channel_pages(150)
    assert [len(p) for p in pages] == [64, 64, 22] and sum(pages, []) == list(range(150))
    assert explain.channel_pages(128, [3, 70, 5]) == [[3, 70, 5]]
    with pytest.raises(ValueError, match="128 channels"):
        explain.channel_pages(128, [127, 128])


def test_cli_activations_show_every_channel_in_pages(ckpt, images, tmp_path, monkeypatch):
    from ferlab.explain import job

    shown = []
    real = job.activation_figure
    monkeypatch.setattr(job, "activation_figure", lambda layer, maps, path, **kw: (
        shown.append((layer, maps, kw)), real(layer, maps, path, **kw))[1])
    out = tmp_path / "out"
    assert main(["explain", str(images["crop"]), "--model", str(ckpt), "--method", "activations", "--layer",
                 "stages.2", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["crop_face0_activations_stages.2_p1.png",
                                                     "crop_face0_activations_stages.2_p2.png"]
    acts = explain.activations(checkpoint.load(ckpt), crops_of(images["crop"]), "stages.2")["stages.2"][0].numpy()
    assert sum((kw["channels"] for _, _, kw in shown), []) == list(range(128))  # all 128, none cut
    for _, maps, kw in shown:
        assert kw["total"] == 128 and np.allclose(maps, acts[kw["channels"]], atol=1e-5)
    shown.clear()
    assert main(["explain", str(images["crop"]), "--model", str(ckpt), "--method", "activations", "--layer",
                 "stages.2", "--channels", "0-3,100", "--out", str(tmp_path / "o2")]) == 0
    assert [kw["channels"] for _, _, kw in shown] == [[0, 1, 2, 3, 100]]


def crops_of(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"))


def test_cli_target_all_panels_share_one_scale(ckpt, images, tmp_path, monkeypatch):
    from ferlab.explain import job

    seen = {}
    monkeypatch.setattr(job, "attribution_figure", lambda image, maps, path, probs, title, shared: (
        seen.update(maps=maps, shared=shared, title=title), Path(path))[1])
    assert main(["explain", str(images["crop"]), "--model", str(ckpt), "--target", "all", "--out", str(tmp_path)]) == 0
    loaded = checkpoint.load(ckpt)
    face = crops_of(images["crop"])
    expected = explain.shared_scale([explain.gradcam(loaded, face, c) for c in loaded.classes])[:, 0]
    assert seen["shared"] and len(seen["maps"]) == 7
    assert np.allclose(np.stack([m for _, m in seen["maps"]]), expected, atol=1e-6)
    assert max(m.max() for _, m in seen["maps"]) == pytest.approx(1.0)
    assert sorted(m.max() for _, m in seen["maps"])[0] < 1.0  # not every panel stretched to its own peak


def test_cli_masked_writes_the_masked_figure(ckpt, images, tmp_path):
    assert main(["explain", str(images["crop"]), "--model", str(ckpt), "--method", "masked", "--keep", "0.2",
                 "--out", str(tmp_path)]) == 0
    with Image.open(tmp_path / "crop_face0_masked.png") as im:
        assert im.format == "PNG" and im.size[0] > 3 * im.size[1]  # input, heatmap, masked face, probabilities
    assert main(["explain", str(images["crop"]), "--model", str(ckpt), "--method", "masked", "--keep", "1.5"]) == 2
    assert main(["explain", str(images["crop"]), "--model", str(ckpt), "--method", "masked", "--target", "all"]) == 2


def test_explain_on_a_labelled_folder(ckpt, crops, tmp_path, capsys, monkeypatch):
    from ferlab.explain import job

    root = tmp_path / "faces"
    for c in ("happy", "sad"):
        (root / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(crops[i % 2]).save(root / c / f"{i}.png")
    (root / "notes.txt").write_text("not an image")
    items = job.items([str(root)], list(FER2013_CLASSES), per_folder=2)
    assert [(it.stem, it.truth) for it in items] == [("happy_0", "happy"), ("happy_1", "happy"), ("sad_0", "sad"),
                                                     ("sad_1", "sad")]
    assert [it.truth for it in job.items([str(root / "sad")], list(FER2013_CLASSES))] == ["sad"] * 3
    titles = []
    real = job.attribution_figure
    monkeypatch.setattr(job, "attribution_figure", lambda *a, **kw: (titles.append(kw["title"]), real(*a, **kw))[1])
    out = tmp_path / "out"
    assert main(["explain", str(root), "--model", str(ckpt), "--per-folder", "1", "--method", "saliency",
                 "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["happy_0_face0_saliency.png", "sad_0_face0_saliency.png"]
    assert [t.endswith(f"true: {c}") for t, c in zip(titles, ("happy", "sad"))] == [True, True]
    assert "Is a directory" not in capsys.readouterr().out


def test_filters_of_the_first_conv_layer_are_its_kernels(ckpt, tmp_path, monkeypatch):
    from ferlab.explain import job

    seen = {}
    monkeypatch.setattr(job, "kernel_figure", lambda layer, weights, path, filters: (
        seen.update(layer=layer, weights=weights, filters=filters), Path(path))[1])
    assert main(["explain", "--method", "filters", "--layer", "stem.0", "--model", str(ckpt),
                 "--out", str(tmp_path)]) == 0
    conv = checkpoint.load(ckpt).model.stem[0]
    assert seen["layer"] == "stem.0" and seen["filters"] == list(range(16))
    assert np.array_equal(seen["weights"], conv.weight.detach().numpy())
    k = explain.conv_kernels(checkpoint.load(ckpt), filters=[2, 5])
    assert k.layer == "stem.0" and np.array_equal(k.weights, conv.weight.detach()[[2, 5]].numpy())


def test_filter_images_flag_filters_that_did_not_rise(loaded):
    r = explain.visualize_filters(loaded, "stages.1.1.0", [0, 1], steps=2)
    assert np.array_equal(r.rose, r.activation > r.start_activation)
    r.activation = r.start_activation.copy()
    assert not r.rose.any()

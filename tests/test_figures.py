"""Figures from arrays, and the numbers they are drawn from: stages, channel labels, overlays, the
layer graph behind `ferlab summary --png`."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ferlab import figures
from ferlab.cli import main
from ferlab.figures import explanation as explanation_figures
from ferlab.figures.architecture import _columns
from ferlab.models import get_spec, create_model, list_models
from ferlab.models.summary import layer_graph, summarize


def _png(path: Path, min_side: int = 100) -> tuple[int, int]:
    with Image.open(path) as im:
        assert im.format == "PNG" and min(im.size) >= min_side
        return im.size


def _rows(n: int, stages: list[int] | None = None) -> list[dict]:
    rows = [{"epoch": float(e), "train_acc": 0.3 + 0.05 * e, "val_acc": 0.35 + 0.04 * e, "train_loss": 2.0 - 0.1 * e,
             "val_loss": 1.9 - 0.08 * e} for e in range(1, n + 1)]
    for r, s in zip(rows, stages or []):
        r["stage"] = float(s)
    return rows


def test_stage_starts_and_curves_with_best_epoch(tmp_path):
    assert figures.stage_starts(_rows(4)) == []
    assert figures.stage_starts(_rows(6, [1, 1, 1, 2, 2, 3])) == [(4.0, 2.0), (6.0, 3.0)]
    _png(figures.plot_curves(_rows(6, [1, 1, 1, 2, 2, 3]), tmp_path / "c.png", "run", best_epoch=5))
    classes = ["happy", "sad"]
    rows = [{**r, **{f"val_{k}_{c}": 0.5 for k in ("precision", "recall") for c in classes}} for r in _rows(3)]
    _png(figures.plot_class_curves(rows, classes, tmp_path / "pc.png"))
    _png(figures.plot_compare([("a", _rows(3)), ("b", _rows(5))], tmp_path / "cmp.png",
                              f1={"a": {"happy": 0.5, "sad": 0.2}, "b": {"happy": 0.7, "sad": 0.1}}))


def test_confusion_pair_and_reliability(tmp_path):
    m = {"confusion": [[5, 1], [2, 7]], "classes": ["happy", "sad"], "accuracy": 12 / 15}
    w, h = _png(figures.plot_confusion_pair(m, tmp_path / "cm.png"))
    assert w > 1.5 * h  # counts and normalised side by side
    bins = {"count": [0, 3, 5], "confidence": [0.0, 0.5, 0.9], "accuracy": [0.0, 0.4, 0.8], "ece": 0.1}
    _png(figures.plot_reliability([("uncalibrated", bins)], tmp_path / "rel.png"))


def test_overlay_blends_the_heatmap_over_the_face():
    from matplotlib import colormaps

    face = np.full((4, 4), 100, np.uint8)
    heat = np.linspace(0, 1, 16).reshape(4, 4)
    out = figures.overlay(face, heat, alpha=0.5)
    expected = 0.5 * 100 + 0.5 * 255 * colormaps["jet"](heat)[..., :3]
    assert out.shape == (4, 4, 3) and out.dtype == np.uint8 and np.abs(out - expected).max() <= 0.5


def test_channel_labels_and_titles_say_what_is_shown(tmp_path, monkeypatch):
    assert figures.channel_ranges([0, 1, 2, 5, 7, 8]) == "0-2, 5, 7-8"
    seen = {}
    real = explanation_figures.grid_figure

    def spy(images, labels, path, title="", **kw):
        seen.update(n=len(images), labels=list(labels), title=title, colours=kw.get("label_colours"))
        return real(images, labels, path, title, **kw)

    monkeypatch.setattr(explanation_figures, "grid_figure", spy)
    maps = np.random.default_rng(0).random((70, 6, 6)).astype(np.float32)
    figures.activation_figure("stages.2", maps, tmp_path / "a.png", total=70)
    assert seen["n"] == 70 and seen["labels"] == [str(i) for i in range(70)]  # nothing cut at 64
    assert "all 70 channels" in seen["title"]
    figures.activation_figure("stages.2", maps[64:], tmp_path / "b.png", channels=range(64, 70), total=128,
                              page=(2, 2))
    assert seen["labels"] == [str(i) for i in range(64, 70)] and "channels 64-69 of 128 (page 2/2)" in seen["title"]
    with pytest.raises(ValueError, match="6 feature maps but 2 channel indices"):
        figures.activation_figure("x", maps[:6], tmp_path / "c.png", channels=[0, 1])
    images = np.zeros((3, 8, 8), np.uint8)
    figures.filter_figure("conv", [4, 5, 6], images, [0.1, 0.5, 0.2], [0.9, 0.5, 0.1], tmp_path / "f.png")
    assert seen["colours"] == ["black", "tab:red", "tab:red"]
    assert [lab.endswith("no rise") for lab in seen["labels"]] == [False, True, True]
    assert "2 did not rise" in seen["title"]


def test_kernel_gallery_and_attribution_figures_are_pngs(tmp_path):
    rng = np.random.default_rng(0)
    _png(figures.kernel_figure("stem.0", rng.normal(size=(16, 1, 3, 3)), tmp_path / "k.png"), 80)
    _png(figures.kernel_figure("stem.1.0", rng.normal(size=(8, 4, 3, 3)), tmp_path / "k4.png"), 80)
    face = rng.integers(0, 255, (48, 48), dtype=np.uint8)
    _png(figures.gallery_figure([("happy", [(face, "-> sad 90%"), (face, "-> fear 80%", "tab:red")]), ("sad", [])],
                                tmp_path / "g.png"))
    heat = rng.random((48, 48))
    _png(figures.attribution_figure(face, [("happy", heat)], tmp_path / "one.png", {"happy": 0.9, "sad": 0.1}))
    _png(figures.attribution_figure(face, [("happy", heat), ("sad", 0.2 * heat)], tmp_path / "two.png", shared=True))
    _png(figures.masked_figure(face, heat, face * (heat > 0.9), 0.1, tmp_path / "m.png"))


@pytest.mark.parametrize("name", [n for n in list_models() if n != "seed_cnn_b"])
def test_layer_graph_matches_the_summary(name):
    model = create_model(name)
    nodes = layer_graph(model)
    assert nodes[0]["kind"] == "input" and nodes[0]["shape"] == (model.in_chans, model.input_size, model.input_size)
    assert nodes[-1]["shape"] == (model.num_classes,)
    assert sum(n["params"] for n in nodes) == sum(p.numel() for p in model.parameters())
    shapes = {r["layer"]: r["output"] for r in summarize(model)["rows"]}
    for n in nodes:
        assert all(i < nodes.index(n) for i in n["inputs"])  # execution order
        if n["layers"]:  # the box shows the output of the last layer merged into it
            assert n["shape"] == shapes[n["layers"][-1]] and len(n["layers"]) == len(n["ops"]) - (n["kind"] != "module")
    if get_spec(name).options:  # timm's traced graphs (shape reads, long skips) may offer no clean break
        return
    # columns are never broken inside a residual block: only the arrow to the next box crosses a break
    column_of = _columns(nodes)
    for j, n in enumerate(nodes):
        for i in n["inputs"]:
            assert column_of[i] == column_of[j] or (j == i + 1 and column_of[j] == column_of[i] + 1)


def test_layer_graph_shows_residual_connections():
    nodes = layer_graph(create_model("fernet_s"))
    adds = [n for n in nodes if n["ops"][0] == "add"]
    assert len(adds) == 3 and all(len(n["inputs"]) == 2 for n in adds)
    stem = nodes[1]
    assert stem["name"] == "stem.0" and stem["ops"] == ["Conv2d 3x3 -> 32", "BN", "ReLU"] and stem["shape"] == (32, 48, 48)
    many = [{"inputs": [i - 1] if i else []} for i in range(60)]
    assert sorted(set(_columns(many))) == [0, 1, 2]


def test_summary_png_from_the_command_line(tmp_path, capsys):
    assert main(["summary", "fernet_tiny", "--png", str(tmp_path / "arch.png")]) == 0
    assert f"wrote {tmp_path / 'arch.png'}" in capsys.readouterr().out
    w, h = _png(tmp_path / "arch.png")
    assert h > w  # one column of boxes, top to bottom
    assert main(["summary", "fernet_tiny", "--png", str(tmp_path / "arch.svg")]) == 2

import math
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import synthetic_faces, write_folder

from ferlab.cli import build_parser, main
from ferlab.cli.options import build
from ferlab.data.augment import augment
from ferlab.data.augment_config import PRESETS, AugmentConfig, AugmentRanges, resolve
from ferlab.data.preview import grid_shape, pick_faces, preview_grid, tile_origin, tile_side
from ferlab.data.preview_config import PreviewConfig
from ferlab.preprocess import Preprocess

OFF = {"flip": 0, "rotate_deg": 0, "scale": 0, "shift": 0, "brightness": 0, "contrast": 0, "erase": 0}


@pytest.mark.parametrize("name,field,value", [
    ("flip", "flip", 1.0), ("rotate", "rotate_deg", 30.0), ("zoom", "scale", 0.2), ("shift", "shift", 0.1),
    ("brightness", "brightness", 0.4), ("contrast", "contrast", 0.35), ("erase", "erase", 0.9)])
@pytest.mark.parametrize("preset_name", ["none", "standard", "strong"])
def test_a_range_replaces_exactly_its_preset_value(preset_name, name, field, value):
    got = resolve(preset_name, AugmentRanges(**{name: value}))
    assert got == replace(PRESETS[preset_name], **{field: value})


def test_no_ranges_keep_the_preset():
    for name, cfg in PRESETS.items():
        assert resolve(name, AugmentRanges()) == cfg


def test_zero_range_turns_a_preset_value_off():
    assert resolve("strong", AugmentRanges(rotate=0, erase=0)).rotate_deg == 0
    assert resolve("strong", AugmentRanges(rotate=0, erase=0)).erase == 0


def test_invalid_ranges_are_listed_in_one_error():
    with pytest.raises(ValueError) as e:
        AugmentRanges(flip=-0.1, rotate=181, shift=1.5, erase=2, zoom=1, contrast=-1, brightness=float("nan"))
    msg = str(e.value)
    assert msg.startswith("invalid augmentation ranges:") and "\n" not in msg
    for part in ("flip must be >= 0", "rotate must be <= 180", "shift must be <= 1", "erase must be <= 1",
                 "zoom must be < 1", "contrast must be >= 0", "brightness must be a finite number"):
        assert part in msg


def test_limits_themselves_are_valid():
    cfg = resolve("none", AugmentRanges(flip=1, rotate=180, shift=1, erase=1, zoom=0.9))
    assert (cfg.flip, cfg.rotate_deg, cfg.shift, cfg.erase, cfg.scale) == (1, 180, 1, 1, 0.9)


def test_unknown_preset_lists_the_choices():
    with pytest.raises(ValueError, match="unknown augmentation preset 'wild'; choose one of: none, flip"):
        resolve("wild", AugmentRanges())


def test_report_recipe_flags_reach_the_resolved_config():
    args = build_parser().parse_args(["augment-preview", "--data", "faces", "--rotate", "30", "--shift", "0.1",
                                      "--zoom", "0.2", "--flip", "0.5"])
    cfg = build(args, PreviewConfig)
    assert cfg.aug == AugmentRanges(flip=0.5, rotate=30, zoom=0.2, shift=0.1)
    got = resolve(cfg.augment, cfg.aug)
    assert got == replace(PRESETS["standard"], flip=0.5, rotate_deg=30, scale=0.2, shift=0.1)
    assert math.isclose(got.shift * 48, 4.8)  # +-4.8 px at 48 px


def test_building_the_preview_options_imports_no_torch():
    code = ("import sys, argparse\n"
            "from ferlab.cli import augment_preview\n"
            "p = argparse.ArgumentParser(); augment_preview.add_parsers(p.add_subparsers())\n"
            "p.parse_args(['augment-preview', '--rotate', '30'])\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr


def _fit_affine(y: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(2, S, S) output of augmenting a coordinate ramp -> A, t with source = A @ target + t (pixels,
    centred), fitted on a central disc that no geometric change in the tests moves outside."""
    s = y.shape[-1]
    c = torch.arange(s, dtype=torch.float64) + 0.5 - s / 2
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    inside = (xx**2 + yy**2) < 12**2
    target = torch.stack([xx[inside], yy[inside], torch.ones(int(inside.sum()), dtype=torch.float64)], 1)
    source = torch.stack([y[1][inside], y[0][inside]], 1).double()
    sol = torch.linalg.lstsq(target, source).solution.numpy()  # (3, 2)
    resid = target.numpy() @ sol - source.numpy()
    assert np.abs(resid).max() < 1e-3  # an affine map, exactly (bilinear sampling of a ramp is exact)
    return sol[:2].T, sol[2]


def _ramps(b: int, s: int = 48) -> torch.Tensor:
    c = torch.arange(s, dtype=torch.float32) + 0.5 - s / 2
    rows = c.view(s, 1).expand(s, s)
    return torch.stack([rows, rows.T]).unsqueeze(0).repeat(b, 1, 1, 1)  # channel 0: row, 1: column


def test_rotate_only_really_rotates_within_the_range():
    cfg = resolve("none", AugmentRanges(rotate=30))
    y = augment(_ramps(32), cfg, torch.Generator().manual_seed(0))
    angles = []
    for img in y:
        a, t = _fit_affine(img)
        assert np.allclose(a.T @ a, np.eye(2), atol=1e-4) and np.isclose(np.linalg.det(a), 1, atol=1e-4)
        assert np.allclose(t, 0, atol=1e-3)
        angles.append(math.degrees(math.atan2(a[1, 0], a[0, 0])))
    angles = np.abs(angles)
    assert angles.max() <= 30 + 1e-3 and angles.max() > 20 and (angles > 1).mean() > 0.8


def test_zoom_only_scales_within_the_range():
    cfg = resolve("none", AugmentRanges(zoom=0.2))
    y = augment(_ramps(32), cfg, torch.Generator().manual_seed(0))
    zooms = []
    for img in y:
        a, t = _fit_affine(img)
        assert np.allclose(a, a[0, 0] * np.eye(2), atol=1e-4) and np.allclose(t, 0, atol=1e-3)
        zooms.append(1 / a[0, 0])  # a maps output to source: 1 / zoom
    assert min(zooms) >= 0.8 - 1e-4 and max(zooms) <= 1.2 + 1e-4 and max(zooms) - min(zooms) > 0.2


def test_shift_only_moves_by_at_most_the_fraction_of_the_side():
    cfg = resolve("none", AugmentRanges(shift=0.1))
    y = augment(_ramps(32), cfg, torch.Generator().manual_seed(0))
    shifts = []
    for img in y:
        a, t = _fit_affine(img)
        assert np.allclose(a, np.eye(2), atol=1e-4)
        shifts.append(np.abs(t).max())
    assert max(shifts) <= 4.8 + 1e-3 and max(shifts) > 3.5


def test_flip_one_with_all_else_off_mirrors_exactly():
    x = torch.randn(4, 1, 48, 48)
    cfg = resolve("none", AugmentRanges(flip=1))
    assert cfg == AugmentConfig(**{**OFF, "flip": 1.0, "erase_max": 0})
    assert torch.allclose(augment(x, cfg, torch.Generator().manual_seed(0)), x.flip(-1), atol=1e-5)


def _faces(classes: list[str], n: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    faces = synthetic_faces(n, classes, seed=3)
    images = torch.from_numpy(np.stack([a for c in classes for a in faces[c]]))[:, None]  # (N, 1, 48, 48)
    labels = torch.tensor([i for i in range(len(classes)) for _ in range(n)])
    return images, labels


def _tile(grid: np.ndarray, row: int, col: int, size: int = 48) -> np.ndarray:
    y, x = tile_origin(row, col, size)
    side = tile_side(size)
    return grid[y:y + side, x:x + side]


def _big(face: np.ndarray, k: int = 2) -> np.ndarray:
    return np.repeat(face.repeat(k, 0).repeat(k, 1)[..., None], 3, axis=2)


def test_preview_grid_shows_the_original_then_the_augmented_copies():
    images, labels = _faces(["a", "b", "c"])
    pp = Preprocess()
    none = preview_grid(images, labels, ["a", "b", "c"], pp, PRESETS["none"], copies=3, seed=0)
    assert none.shape == grid_shape(6, 3, 48) and none.dtype == np.uint8
    flipped = preview_grid(images, labels, ["a", "b", "c"], pp, resolve("none", AugmentRanges(flip=1)), 3, 0)
    for row in range(6):
        face = images[row, 0].numpy()
        for col in range(4):
            assert np.array_equal(_tile(none, row, col), _big(face))
            assert np.array_equal(_tile(flipped, row, col), _big(face if col == 0 else face[:, ::-1]))
    # the label column holds text: dark pixels left of every row
    for row in range(6):
        y, _ = tile_origin(row, 0, 48)
        assert (none[y:y + tile_side(48), :tile_origin(0, 0, 48)[1]] < 128).any()


def test_preview_grid_is_deterministic_and_copies_differ():
    images, labels = _faces(["a", "b"])
    cfg = resolve("standard", AugmentRanges(rotate=30, shift=0.1, zoom=0.2, flip=0.5))
    a = preview_grid(images, labels, ["a", "b"], Preprocess(), cfg, 4, seed=5)
    assert np.array_equal(a, preview_grid(images, labels, ["a", "b"], Preprocess(), cfg, 4, seed=5))
    assert not np.array_equal(a, preview_grid(images, labels, ["a", "b"], Preprocess(), cfg, 4, seed=6))
    copies = [_tile(a, 0, col) for col in range(1, 5)]
    assert all(not np.array_equal(copies[0], c) for c in copies[1:])


def test_pick_faces_takes_one_of_each_class_first():
    labels = torch.tensor([0] * 10 + [1] * 3 + [2] * 1 + [3] * 6)
    idx = pick_faces(labels, 4, rows=7, seed=0)
    assert labels[idx[:4]].tolist() == [0, 1, 2, 3] and len(set(idx.tolist())) == 7
    assert torch.equal(idx, pick_faces(labels, 4, rows=7, seed=0))
    assert labels[pick_faces(labels, 4, rows=2, seed=0)].tolist() == [0, 1]
    assert len(pick_faces(labels, 4, rows=50, seed=0)) == 20


def test_augment_preview_writes_the_grid_png(tmp_path, capsys):
    from PIL import Image

    data = write_folder(tmp_path / "ds" / "train", ["angry", "happy", "sad"], 4)
    out = tmp_path / "out" / "preview.png"
    code = main(["augment-preview", "--data", str(data.parent), "--rows", "5", "--copies", "3", "--rotate", "30",
                 "--shift", "0.1", "--zoom", "0.2", "--flip", "0.5", "--out", str(out)])
    assert code == 0
    stdout = capsys.readouterr().out
    assert f"wrote {out}" in stdout
    rows = stdout.split("rows: ")[1].split(")")[0].split(", ")
    assert len(rows) == 5 and set(rows[:3]) == {"angry", "happy", "sad"}  # one of each class first
    assert "rotate +-30 deg" in stdout and "zoom 0.8-1.2" in stdout and "+-4.8 px at 48 px" in stdout
    with Image.open(out) as im:
        assert im.format == "PNG" and im.mode == "RGB"
        grid = np.asarray(im)
    assert grid.shape == grid_shape(5, 3, 48)
    files = sorted(data.rglob("*.png"))
    originals = [np.asarray(Image.open(f)) for f in files]
    for row in range(5):  # column 0 holds a dataset face as it is
        assert any(np.array_equal(_tile(grid, row, 0), _big(face)) for face in originals)
    assert not list(out.parent.glob(".*.tmp"))  # atomic write left no temp file


@pytest.mark.parametrize("make,args,message", [
    (lambda p: p / "missing", [], "does not exist"),
    (lambda p: p.joinpath("empty").mkdir() or p / "empty", [], "has no 'train' split"),
    (lambda p: write_folder(p / "ds" / "train", ["a"], 1).parent, ["--rotate", "200"], "rotate must be <= 180"),
    (lambda p: write_folder(p / "ds" / "train", ["a"], 1).parent, ["--augment", "wild"],
     "unknown augmentation preset 'wild'; choose one of: none, flip, light, standard, strong"),
])
def test_augment_preview_errors_are_one_line_and_exit_2(tmp_path, capsys, make, args, message):
    out = tmp_path / "preview.png"
    assert main(["augment-preview", "--data", str(make(tmp_path)), "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ferlab augment-preview: error:") and message in err
    assert "\n" not in err and "Traceback" not in err
    assert not out.exists()

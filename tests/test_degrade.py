"""Lighting, blur and JPEG degradations (data/degrade.py), their options, and the robustness benchmark."""
import json
import sys
from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch
from conftest import save_checkpoint, synthetic_faces
from test_benchmarks import _script

from ferlab import checkpoint, train
from ferlab.cli import main
from ferlab.train import config
from ferlab.data.augment_config import PRESETS, AugmentConfig, AugmentRanges, describe, resolve
from ferlab.data.degrade import blur, degrade, gamma, jpeg

OFF = PRESETS["none"]


def _faces(n=16, channels=1, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, channels, 48, 48), generator=g, dtype=torch.uint8)


def test_gamma_maps_each_pixel_by_its_images_exponent():
    x = torch.tensor([0, 64, 128, 255], dtype=torch.uint8).view(1, 1, 2, 2).repeat(2, 1, 1, 1)
    y = gamma(x, torch.tensor([2.0, 0.5]))
    assert torch.allclose(y[0].flatten(), 255 * (x[0].flatten().float() / 255) ** 2)
    assert torch.allclose(y[1].flatten(), 255 * (x[1].flatten().float() / 255) ** 0.5)
    assert y[0, 0, 0, 1] < 64 < y[1, 0, 0, 1]  # > 1 darkens the mid-tones, < 1 brightens them


def test_blur_is_per_image_keeps_the_mean_and_removes_detail():
    x = _faces(3)
    y = blur(x, torch.tensor([0.0, 1.0, 2.0]))
    assert torch.equal(y[0].round(), x[0].float())  # sigma 0: untouched
    assert torch.allclose(y.mean((1, 2, 3)), x.float().mean((1, 2, 3)), atol=2.0)
    stds = [float(t.std()) for t in (x[1].float(), y[1], y[2])]
    assert stds[0] > stds[1] > stds[2]  # noise smoothed, more with the larger sigma
    # the batch's kernels reach 3 x its largest sigma (2): radius 6
    ref = cv2.GaussianBlur(x[1, 0].numpy().astype(np.float32), (13, 13), 1.0, borderType=cv2.BORDER_REFLECT_101)
    assert np.abs(y[1, 0].numpy() - ref).max() < 1e-3  # what OpenCV's Gaussian blur gives


@pytest.mark.parametrize("channels", [1, 3])
def test_jpeg_is_opencvs_round_trip_and_quality_zero_skips(channels):
    x = _faces(3, channels)
    y = jpeg(x, torch.tensor([0, 20, 90]))
    assert y.dtype == torch.uint8 and y.shape == x.shape
    assert torch.equal(y[0], x[0])
    img = x[1].permute(1, 2, 0).numpy()
    bgr = np.ascontiguousarray(img[..., ::-1] if channels == 3 else img[..., 0])
    dec = cv2.imdecode(cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 20])[1], cv2.IMREAD_UNCHANGED)
    dec = dec[..., ::-1] if channels == 3 else dec[..., None]
    assert np.array_equal(y[1].permute(1, 2, 0).numpy(), dec)
    err = lambda i: float((y[i].float() - x[i].float()).abs().mean())
    assert err(1) > err(2) > 0  # lower quality, larger error


def test_jpeg_refuses_float_images():
    with pytest.raises(ValueError, match="uint8"):
        jpeg(_faces(1).float(), torch.tensor([50]))


def test_degrade_is_a_no_op_without_settings_and_seeded_with_them():
    x = _faces()
    assert degrade(x, PRESETS["standard"], torch.Generator().manual_seed(0)) is x
    cfg = PRESETS["photo"]
    a = degrade(x, cfg, torch.Generator().manual_seed(1))
    b = degrade(x, cfg, torch.Generator().manual_seed(1))
    assert a.dtype == torch.uint8 and torch.equal(a, b) and not torch.equal(a, x)


def test_degrade_probabilities_pick_that_share_of_images():
    x = _faces(400)
    g = torch.Generator().manual_seed(0)
    changed = lambda y: (y != x).flatten(1).any(1).float().mean().item()
    assert changed(degrade(x, replace(OFF, blur=1.0), g)) == 1.0
    assert 0.2 < changed(degrade(x, replace(OFF, blur=0.3), g)) < 0.4
    assert 0.2 < changed(degrade(x, replace(OFF, jpeg=0.3), g)) < 0.4


def test_photo_preset_is_standard_plus_the_degradations():
    photo, std = PRESETS["photo"], PRESETS["standard"]
    assert replace(photo, gamma=0, blur=0, jpeg=0) == replace(std, blur_sigma=photo.blur_sigma,
                                                                jpeg_quality=photo.jpeg_quality)
    text = describe(photo)
    assert "gamma 0.67-1.5" in text and "blur p=0.3 (sigma 0.3-1.2 px)" in text and "jpeg p=0.3 (quality 30-95)" in text
    assert "gamma" not in describe(std)


def test_degradation_ranges_override_the_preset_and_are_validated():
    got = resolve("standard", AugmentRanges(gamma=0.3, blur=0.5, blur_sigma=2, jpeg=1, jpeg_quality=10))
    assert (got.gamma, got.blur, got.blur_sigma, got.jpeg, got.jpeg_quality) == (0.3, 0.5, 2, 1, 10)
    with pytest.raises(ValueError) as e:
        AugmentRanges(blur=1.5, jpeg=2, jpeg_quality=0)
    for part in ("blur must be <= 1", "jpeg must be <= 1", "jpeg_quality must be within 1-95"):
        assert part in str(e.value)
    with pytest.raises(ValueError, match="jpeg_quality must be within 1-95"):
        AugmentConfig(jpeg_quality=100)


def test_train_with_the_photo_preset_records_it_and_trains_differently(tiny_fer_dir, tmp_path):
    def run(augment, name, **ranges):
        cfg = config.build(data=str(tiny_fer_dir), arch="fernet_tiny", epochs=1, batch_size=32, lr=0.05,
                           augment=augment, aug=AugmentRanges(**ranges), out=str(tmp_path / "runs"), name=name,
                           threads=1, tta="none", chance_epochs=99, amp=False)
        return checkpoint.load(train.fit(cfg, log=lambda m: None) / "last.pt")

    std, photo = run("standard", "std"), run("photo", "photo", jpeg_quality=20)
    assert photo.meta["config"]["augment"] == "photo" and photo.meta["config"]["aug"]["jpeg_quality"] == 20
    a, b = std.model.state_dict(), photo.model.state_dict()
    assert any(not torch.allclose(a[k].float(), b[k].float()) for k in a if a[k].is_floating_point())


def test_augment_preview_draws_the_degradations(tmp_path, capsys):
    from conftest import write_folder

    data = write_folder(tmp_path / "ds" / "train", ["angry", "happy"], 3)
    out = tmp_path / "p.png"
    assert main(["augment-preview", "--data", str(data.parent), "--augment", "photo", "--jpeg-quality", "15",
                 "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "augmentation photo with --jpeg-quality 15:" in stdout and "jpeg p=0.3 (quality 15-95)" in stdout
    assert out.exists()


def test_robustness_benchmark_scores_every_condition(tiny_fer_dir, tmp_path, monkeypatch):
    ckpt = save_checkpoint(tmp_path / "m.pt", seed=3)
    out = tmp_path / "rob.json"
    monkeypatch.setattr(sys, "argv", ["robustness.py", str(ckpt), "--data", str(tiny_fer_dir), "--out", str(out)])
    rob = _script("robustness")
    rob.main()
    r = json.loads(out.read_text())
    res = r["models"][str(ckpt)]
    assert r["faces"] == 56 and set(res["conditions"]) == set(rob.CONDITIONS)
    degraded = [c["accuracy"] for k, c in res["conditions"].items() if k != "clean"]
    assert res["mean_degraded_accuracy"] == pytest.approx(np.mean(degraded), abs=1e-4)
    from ferlab.evaluate import evaluate

    clean = evaluate(ckpt, tiny_fer_dir, tta="none")["accuracy"]
    assert res["conditions"]["clean"]["accuracy"] == pytest.approx(clean, abs=1e-4)
    table = _script("table").robustness_table(out).splitlines()  # the README's table
    assert len(table) == 2 + len(rob.CONDITIONS) + 1
    assert table[3].startswith("| gamma_0.67 | ")
    assert any(line.startswith("| blur_2.0 (beyond `photo`'s ranges) | ") for line in table)
    assert table[-1] == f"| **mean over the degraded** | **{100 * res['mean_degraded_accuracy']:.1f} %** |"


def test_robustness_conditions_change_the_faces():
    rob = _script("robustness")
    faces = synthetic_faces(2, ["a", "b"])
    x = torch.from_numpy(np.stack([f for imgs in faces.values() for f in imgs]))[:, None]  # (4, 1, 48, 48)
    for name, (fn, _) in rob.CONDITIONS.items():
        y = fn(x)
        assert y.dtype == torch.uint8 and y.shape == x.shape
        assert torch.equal(y, x) == (name == "clean"), name


def test_detector_val_benchmark_finds_real_faces_and_scores_each_margin(tmp_path, monkeypatch):
    # a real face (scikit-image's public-domain astronaut) cut to FER2013's framing, as a val split
    skdata = pytest.importorskip("skimage.data")
    from PIL import Image

    from ferlab import Recognizer

    rgb = skdata.astronaut()
    x, y, w, h = (int(v) for v in Recognizer().predict(rgb).faces[0].box)
    face = Image.fromarray(rgb[y:y + h, x:x + w]).convert("L").resize((48, 48))
    for cls, img in (("happy", face), ("sad", face.transpose(Image.FLIP_LEFT_RIGHT))):
        (tmp_path / "fer" / "val" / cls).mkdir(parents=True)
        img.save(tmp_path / "fer" / "val" / cls / "0.png")
    ckpt = save_checkpoint(tmp_path / "m.pt", seed=0)
    out = tmp_path / "det.json"
    monkeypatch.setattr(sys, "argv", ["detector_val.py", str(ckpt), "--data", str(tmp_path / "fer"),
                                      "--margins", "0", "0.2", "--out", str(out)])
    _script("detector_val").main()
    r = json.loads(out.read_text())
    assert (r["faces"], r["detected"]) == (2, 2)  # YuNet finds the face in both
    p5, _, median, _, p95 = r["box"]["longer_side"]
    assert 0.5 < p5 <= median <= p95 < 2  # YuNet's box is about FER's frame
    row = r["models"][str(ckpt)]
    assert set(row["margins"]) == {"0", "0.2"} and row["crop_margin"] == 0.0
    assert all(v in (0.0, 0.5, 1.0) for v in [row["fer_framing"], *row["margins"].values()])


def test_detector_val_benchmark_says_when_no_face_is_found(tiny_fer_dir, tmp_path, monkeypatch):
    ckpt = save_checkpoint(tmp_path / "m.pt", seed=0)
    monkeypatch.setattr(sys, "argv", ["detector_val.py", str(ckpt), "--data", str(tiny_fer_dir),
                                      "--out", str(tmp_path / "det.json")])
    with pytest.raises(SystemExit, match="YuNet found no face in the 56 val images"):
        _script("detector_val").main()
    assert not (tmp_path / "det.json").exists()

import pytest
import torch

from ferlab.data.augment import augment, mix
from ferlab.data.augment_config import PRESETS, preset


def test_none_preset_is_identity_and_others_change_the_batch():
    x = torch.randn(8, 1, 48, 48)
    g = torch.Generator().manual_seed(0)
    assert torch.allclose(augment(x, preset("none"), g), x, atol=1e-5)
    y = augment(x, preset("standard"), g)
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert not torch.allclose(y, x)


def test_flip_only_mirrors():
    x = torch.randn(4, 1, 48, 48)
    cfg = preset("none").__class__(flip=1.0, rotate_deg=0, scale=0, shift=0, brightness=0, contrast=0, erase=0)
    assert torch.allclose(augment(x, cfg), x.flip(-1), atol=1e-5)


def test_mix_targets_are_distributions():
    x, y = torch.randn(16, 1, 48, 48), torch.randint(0, 7, (16,))
    g = torch.Generator().manual_seed(1)
    xm, t = mix(x, y, 7, mixup=0.4, cutmix=1.0, generator=g)
    assert xm.shape == x.shape and t.shape == (16, 7)
    assert torch.allclose(t.sum(1), torch.ones(16))


def test_unknown_preset_lists_choices():
    with pytest.raises(ValueError, match="choose one of: " + ", ".join(PRESETS)):
        preset("wild")


def test_train_crop_cuts_a_window_of_the_image():
    # Channel 0 holds each pixel's row, channel 1 its column: bilinear sampling of a linear ramp
    # is exact, so every output must be a 40x40 window of unit-step ramps starting inside the image.
    rows = torch.arange(48.0).view(48, 1).expand(48, 48)
    x = torch.stack([rows, rows.T]).unsqueeze(0).repeat(6, 1, 1, 1)
    g = torch.Generator().manual_seed(3)
    y = augment(x, preset("none"), g, crop=40)
    assert y.shape == (6, 2, 40, 40)
    steps = torch.arange(40.0)
    starts = []
    for img in y:
        r, c = img[0, 0, 0].item(), img[1, 0, 0].item()
        assert 0 <= r <= 8 and 0 <= c <= 8
        assert torch.allclose(img[0], r + steps.view(40, 1).expand(40, 40), atol=1e-3)
        assert torch.allclose(img[1], c + steps.view(1, 40).expand(40, 40), atol=1e-3)
        starts.append((round(r, 2), round(c, 2)))
    assert len(set(starts)) > 1  # windows are random, not one fixed crop
    # crop 0 or the full side leaves the size alone
    assert augment(x, preset("none"), g, crop=0).shape == x.shape
    assert augment(x, preset("none"), g, crop=48).shape == x.shape


def test_flip_preset_only_mirrors_or_keeps():
    x = torch.randn(32, 1, 48, 48)
    y = augment(x, preset("flip"), torch.Generator().manual_seed(0))
    same = torch.isclose(y, x, atol=1e-5).flatten(1).all(1)
    mirrored = torch.isclose(y, x.flip(-1), atol=1e-5).flatten(1).all(1)
    assert (same | mirrored).all() and same.any() and mirrored.any()

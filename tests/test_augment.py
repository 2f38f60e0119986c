import pytest
import torch

from ferlab.augment import PRESETS, augment, mix, preset


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

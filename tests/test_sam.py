"""Sharpness-aware minimisation: the ascent step and `train --sam`."""
import pytest
import torch
from torch import nn

from ferlab import checkpoint, train
from ferlab.models import create_model
from ferlab.train import config, sam


def _model_with_grads(seed=0):
    torch.manual_seed(seed)
    model = create_model("fernet_tiny", num_classes=7, in_chans=1, input_size=48).train()
    x, y = torch.randn(8, 1, 48, 48), torch.randint(0, 7, (8,))
    nn.functional.cross_entropy(model(x), y).backward()
    return model, x, y


def test_ascent_moves_the_weights_by_rho_along_the_gradient_and_puts_them_back():
    model, x, _ = _model_with_grads()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    norm = torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads.values()]))
    with sam.ascent(model, 0.05):
        moved = {n: p.detach() - before[n] for n, p in model.named_parameters()}
        model(x)  # a training forward inside: BatchNorm statistics must not move
        inside = {k: v.clone() for k, v in model.state_dict().items()}
    step = torch.linalg.vector_norm(torch.cat([d.flatten() for d in moved.values()]))
    assert step == pytest.approx(0.05, rel=1e-3)
    for n, d in moved.items():  # the move is along the gradient
        assert torch.allclose(d, grads[n] * 0.05 / norm, atol=1e-6)
    for k, v in model.state_dict().items():  # exactly as before, buffers included
        assert torch.equal(v, before[k]), k
    bn = [k for k in before if "running" in k]  # the count moves inside and is put back on exit
    assert bn and all(torch.equal(inside[k], before[k]) for k in bn)
    assert all(m.momentum == 0.1 for m in model.modules() if isinstance(m, nn.BatchNorm2d))


def test_ascent_restores_the_weights_after_an_error_and_a_non_finite_gradient():
    model, _, _ = _model_with_grads()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    next(model.parameters()).grad[0] = float("inf")
    with pytest.raises(RuntimeError, match="inside"):
        with sam.ascent(model, 0.1):
            assert not all(torch.isfinite(p).all() for p in model.parameters())
            raise RuntimeError("inside")
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_ascent_leaves_parameters_without_gradient_alone():
    model, _, _ = _model_with_grads()
    frozen = next(model.parameters())
    frozen.grad = None
    kept = frozen.detach().clone()
    with sam.ascent(model, 0.05):
        assert torch.equal(frozen, kept)
        assert any(not torch.equal(p, q) for p, q in zip(list(model.parameters())[1:], _model_with_grads()[0].parameters()))


def test_train_with_sam_takes_the_second_gradient(tiny_fer_dir, tmp_path):
    # same seed and data, with and without SAM: the weights differ (the steps took the second
    # gradient), and the SAM run still learns the (separable) toy classes
    def run(rho, name):
        cfg = config.build(data=str(tiny_fer_dir), arch="fernet_tiny", epochs=4, batch_size=32, lr=0.05,
                           augment="flip", out=str(tmp_path / "runs"), name=name, threads=1, tta="none",
                           chance_epochs=99, amp=False, sam=rho)
        return checkpoint.load(train.fit(cfg, log=lambda m: None) / "last.pt")

    plain, with_sam = run(0.0, "plain"), run(0.05, "sam")
    assert with_sam.meta["config"]["sam"] == 0.05
    a, b = plain.model.state_dict(), with_sam.model.state_dict()
    assert any(not torch.allclose(a[k].float(), b[k].float()) for k in a if a[k].is_floating_point())
    assert with_sam.meta["metrics"]["val_acc"] > 1 / 7 + 0.15


def test_sam_radius_is_checked():
    with pytest.raises(ValueError, match="sam must be in"):
        config.build(data="x", sam=-0.1)

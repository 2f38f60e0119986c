"""The fused optimizers' lean step: torch's kernels and state, fewer Python calls per step."""
import copy

import pytest
import torch

from ferlab import train
from ferlab.models import create_model
from ferlab.train.optim import FusedAdam, FusedAdamW, make_optimizer


def _groups(model, wd):
    params = list(model.parameters())
    return [{"params": [p for p in params if p.ndim > 1], "weight_decay": wd},
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]


def _train(opt_cls, model, steps, wd=0.01, freeze=None):
    torch.manual_seed(0)
    opt = opt_cls(_groups(model, wd), lr=3e-3, fused=True)
    for _ in range(steps):
        x = torch.randn(8, 1, 48, 48)
        loss = model(x).logsumexp(1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if freeze is not None:
            freeze.grad = None  # a frozen layer: no gradient, skipped by the optimizer
        opt.step()
    return opt


@pytest.mark.parametrize("ours,theirs", [(FusedAdam, torch.optim.Adam), (FusedAdamW, torch.optim.AdamW)])
def test_lean_fused_step_matches_torch_exactly(ours, theirs):
    torch.manual_seed(1)
    a = create_model("seed_dnn").eval()  # eval: dropout off, so both see the same function
    b = copy.deepcopy(a)
    oa, ob = _train(ours, a, 6), _train(theirs, b, 6)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    sa, sb = oa.state_dict(), ob.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    for i in sb["state"]:
        for k in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(sa["state"][i][k], sb["state"][i][k])


def test_groups_that_share_hyperparameters_take_one_kernel_call(monkeypatch):
    model = create_model("seed_dnn").eval()
    opt = _train(FusedAdam, model, 1, wd=0.0)  # the first step is torch's: it creates the state
    calls = []
    real = torch._fused_adam_
    monkeypatch.setattr(torch, "_fused_adam_", lambda *a, **k: (calls.append(len(a[0])), real(*a, **k))[1])
    model(torch.randn(4, 1, 48, 48)).sum().backward()
    opt.step()
    # two groups (weights, biases), equal hyperparameters: one call over all four tensors
    assert calls == [4]
    opt.param_groups[1]["weight_decay"] = 0.1
    model(torch.randn(4, 1, 48, 48)).sum().backward()
    opt.step()
    assert calls[1:] == [2, 2]


def test_frozen_parameters_are_skipped_and_resume_is_torch_compatible():
    torch.manual_seed(2)
    a = create_model("seed_dnn").eval()
    b = copy.deepcopy(a)
    frozen_a, frozen_b = a.head[0].bias, b.head[0].bias
    before = frozen_a.detach().clone()
    oa = _train(FusedAdam, a, 4, freeze=frozen_a)
    _train(torch.optim.Adam, b, 4, freeze=frozen_b)
    assert torch.equal(frozen_a, before)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    # a state saved by the lean step loads into torch's optimizer and back
    torch.optim.Adam(_groups(b, 0.01), lr=3e-3, fused=True).load_state_dict(oa.state_dict())
    FusedAdam(_groups(a, 0.01), lr=3e-3, fused=True).load_state_dict(oa.state_dict())


def test_zero_grad_clears_every_gradient():
    model = create_model("seed_dnn")
    opt = FusedAdam(model.parameters(), lr=1e-3, fused=True)
    model(torch.randn(2, 1, 48, 48)).sum().backward()
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    model(torch.randn(2, 1, 48, 48)).sum().backward()
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in model.parameters())


def test_recipes_get_the_lean_optimizers():
    assert isinstance(make_optimizer(create_model("seed_dnn"), train.build("report", arch="seed_dnn", data="d")),
                      FusedAdam)
    cfg = train.build("report", arch="seed_dnn", data="d", optimizer="adamw")
    assert isinstance(make_optimizer(create_model("seed_dnn"), cfg), FusedAdamW)

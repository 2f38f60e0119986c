"""How training steps use bfloat16 (`ferlab.train.precision`, `devices.bf16_matmuls`)."""
import pytest
import torch

from ferlab import checkpoint, train
from ferlab.devices import bf16_matmuls
from ferlab.models import create_model
from ferlab.train import config, precision

CPU = torch.device("cpu")


def _bf16_matmul_supported() -> bool:
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def test_bf16_matmuls_round_like_bfloat16_and_restore_the_setting():
    before = torch.get_float32_matmul_precision()
    a, b = torch.randn(64, 512), torch.randn(512, 256)
    exact = a.double() @ b.double()
    with bf16_matmuls():
        assert torch.get_float32_matmul_precision() == "medium"
        fast = a @ b
    assert torch.get_float32_matmul_precision() == before
    assert fast.dtype == torch.float32
    err = ((fast.double() - exact).abs().max() / exact.abs().max()).item()
    if _bf16_matmul_supported():  # bfloat16 operands: about 2^-8 relative, not float32's 2^-23
        assert 1e-4 < err < 2e-2
    else:  # no native bfloat16: oneDNN leaves the multiply in float32
        assert err < 1e-5
    with pytest.raises(RuntimeError), bf16_matmuls():
        raise RuntimeError("a failing step")
    assert torch.get_float32_matmul_precision() == before


def test_precision_follows_amp_the_device_and_the_network():
    cfg = config.build("report", arch="seed_dense_bn", data="d")
    assert precision.choose(create_model("seed_dense_bn"), CPU, config.build("report", arch="seed_dense_bn",
                                                                                data="d", amp=False)) == "off"
    assert precision.choose(create_model("seed_cnn_a"), CPU, cfg) == "autocast"  # convolutions: autocast
    assert precision.choose(create_model("seed_dense_bn"), torch.device("cuda"), cfg) == "autocast"
    assert precision.choose(create_model("seed_dense_bn"), CPU, cfg) in ("matmul", "off")


@pytest.mark.parametrize("times,expected", [({"matmul": 4.6, "off": 5.1}, "matmul"),
                                            ({"matmul": 1.33, "off": 1.14}, "off"),
                                            ({"matmul": 1.0, "off": 0.97}, "matmul")])  # near a tie: bf16
def test_a_dense_network_takes_float32_only_when_it_is_clearly_faster(monkeypatch, times, expected):
    monkeypatch.setattr(precision, "step_ms", lambda *a, **k: times)
    assert precision.choose(create_model("seed_dnn"), CPU, config.build("report", arch="seed_dnn", data="d")) == expected


def test_timing_the_precisions_leaves_the_model_and_the_random_stream_alone():
    model = create_model("seed_dense_bn")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(3)
    ms = precision.step_ms(model, config.build("report", arch="seed_dense_bn", data="d", batch_size=8),
                           ("matmul", "off", "autocast"), steps=2, rounds=1)
    assert set(ms) == {"matmul", "off", "autocast"} and all(v > 0 for v in ms.values())
    after = torch.rand(1)
    torch.manual_seed(3)
    assert torch.equal(after, torch.rand(1))  # the run's dropout masks and order are unchanged
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())  # BatchNorm statistics too


def test_a_matmul_precision_run_multiplies_in_bfloat16_in_forward_and_backward(tiny_fer_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "choose", lambda *a: "matmul")
    seen = []
    real = torch.nn.functional.linear

    def spy(*a, **k):
        seen.append(torch.get_float32_matmul_precision())
        return real(*a, **k)

    def hook(grad):  # runs in the backward, when the weight's gradient has been multiplied out
        seen.append(("backward", torch.get_float32_matmul_precision()))

    model = create_model("seed_dnn")
    monkeypatch.setattr(torch.nn.functional, "linear", spy)
    from ferlab.train import loop

    monkeypatch.setattr(loop, "create_model", lambda *a, **k: _hooked(model, hook))
    run = train.fit(config.build(data=str(tiny_fer_dir), arch="seed_dnn", epochs=1, batch_size=16, tta="none",
                                 out=str(tmp_path / "runs"), name="m", threads=1, chance_epochs=99, amp=True),
                    log=lambda m: None)
    metrics = checkpoint.load(run).meta["metrics"]
    assert metrics["precision"] == "matmul" and metrics["amp_dtype"] == "bfloat16"
    training = [s for s in seen if s == "medium" or s == ("backward", "medium")]
    assert ("backward", "medium") in training and "medium" in training
    assert torch.get_float32_matmul_precision() == "highest"  # validation and after: float32 again


def _hooked(model, hook):
    model.head[0].weight.register_hook(hook)
    return model

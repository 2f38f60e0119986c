import pytest
import torch

from ferlab.models import count_params, create_model, format_summary, get_spec, list_models, register, summarize

# Parameter counts of the course reports' Keras models: the reproduction contract.
REPORT_COUNTS = {
    "seed_cnn_a": 422_375,
    "seed_cnn_b": 75_517_766,
    "seed_cnn_b_pool": 4_353_862,
    "seed_dnn": 156_263,
    "seed_cnn_bn": 1_703_623,
    "seed_dense_bn": 1_974_791,
}


@pytest.mark.parametrize("name,expected", sorted(REPORT_COUNTS.items()))
def test_report_parameter_counts(name, expected):
    assert count_params(create_model(name)) == expected


@pytest.mark.parametrize("name", list_models())
def test_forward_backward_every_model(name):
    torch.manual_seed(0)
    spec = get_spec(name)
    m = create_model(name)
    m.train()
    x = torch.randn(2, spec.in_chans, spec.input_size, spec.input_size)
    out = m(x)
    assert out.shape == (2, spec.num_classes)
    assert torch.isfinite(out).all()
    out.float().pow(2).sum().backward() if spec.known_bad else torch.nn.functional.cross_entropy(out, torch.tensor([0, 1])).backward()
    no_grad = [n for n, p in m.named_parameters() if p.grad is None]
    assert not no_grad, f"parameters without gradient: {no_grad}"


@pytest.mark.parametrize("name", list_models())
def test_features_head_compose_to_forward(name):
    spec = get_spec(name)
    m = create_model(name).eval()
    x = torch.randn(2, spec.in_chans, spec.input_size, spec.input_size)
    with torch.no_grad():
        assert torch.allclose(m(x), m.forward_head(m.forward_features(x)), atol=1e-5)


@pytest.mark.parametrize("name", [n for n in list_models() if get_spec(n).input_size <= 48])
def test_cam_layer_names_a_real_module(name):
    m = create_model(name)
    if m.cam_layer is not None:
        assert m.cam_layer in dict(m.named_modules())


def test_custom_classes_channels_and_size():
    m = create_model("fernet_s", num_classes=6, in_chans=3, input_size=64)
    assert m(torch.randn(3, 3, 64, 64)).shape == (3, 6)
    m = create_model("seed_cnn_bn", num_classes=5, in_chans=3, input_size=64)
    assert m(torch.randn(2, 3, 64, 64)).shape == (2, 5)


def test_unknown_model_lists_choices():
    with pytest.raises(ValueError, match="unknown model 'vgg17'; choose one of: .*fernet_s"):
        create_model("vgg17")


def test_duplicate_registration_is_an_error():
    with pytest.raises(ValueError, match="already registered"):
        register("fernet_s", input_size=48, in_chans=1, description="dup")(lambda **k: None)


def test_summary_matches_keras_table():
    m = create_model("seed_cnn_a")
    s = summarize(m)
    assert s["trainable"] == 422_375
    assert sum(r["params"] for r in s["rows"]) == 422_375
    shapes = [r["output"] for r in s["rows"] if r["type"] == "MaxPool2d"]
    assert shapes == [(32, 23, 23), (32, 11, 11), (32, 5, 5)]  # Keras 'valid' conv + floor pooling
    text = format_summary("seed_cnn_a", s, (48, 48, 3))
    assert "Trainable params: 422,375" in text
    assert s["macs"] > 0


def test_drop_path_drops_whole_residual_branches_per_sample_in_training_only():
    from ferlab.models.fernet import _Residual

    model = create_model("fernet_s")
    model.set_drop_path(0.3)
    blocks = [m for m in model.modules() if isinstance(m, _Residual)]
    assert [round(b.drop_path, 6) for b in blocks] == [0.1, 0.2, 0.3]  # linear in depth, the last drops most

    torch.manual_seed(0)
    block = blocks[0]
    torch.nn.init.ones_(block.conv2[1].weight)  # a branch that is not zero, unlike at initialisation
    x = torch.randn(64, 64, 12, 12)
    skip_only = torch.relu(x)
    block.drop_path = 1.0
    assert torch.equal(block.train()(x), skip_only)
    full = block.eval()(x)
    assert not torch.equal(full, skip_only)  # evaluation keeps every branch
    block.drop_path = 0.5
    out = block.train()(x)
    dropped = [torch.equal(o, s) for o, s in zip(out, skip_only)]
    assert 10 < sum(dropped) < 54  # whole samples ("row" mode), about half of them


def test_drop_path_needs_residual_blocks():
    with pytest.raises(ValueError, match="no residual blocks for stochastic depth"):
        create_model("seed_cnn_bn").set_drop_path(0.1)

"""BatchNorm folded into the layer before it for evaluation and prediction (models.fold)."""
import pytest
import torch
from torch import nn

from ferlab.models import create_model, fold_batchnorm


def _trained_like(model):
    # running statistics and affine parameters away from their identity initial values
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    return model.eval()


@pytest.mark.parametrize("arch", ["seed_cnn_bn", "seed_dense_bn", "fernet_tiny"])
def test_folded_copy_gives_the_same_logits_and_leaves_the_model_alone(arch):
    model = _trained_like(create_model(arch))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    n_bn = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    folded = fold_batchnorm(model)
    assert folded is not model
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    assert sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()) == n_bn > 0
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    x = torch.randn(4, model.in_chans, model.input_size, model.input_size)
    with torch.no_grad():
        assert torch.allclose(folded(x), model(x), atol=1e-4, rtol=1e-4)
    assert not folded.training


def test_nothing_to_fold_returns_the_model_in_eval_mode():
    model = create_model("seed_cnn_a").train()
    assert fold_batchnorm(model) is model and not model.training


def test_batchnorm_not_right_after_a_conv_or_linear_stays():
    seq = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.BatchNorm2d(4)).eval()
    assert fold_batchnorm(seq) is seq  # BN after a ReLU is no affine map of the conv's output


def test_prediction_paths_run_the_folded_copy():
    from ferlab.evaluate.tta import predict_logits
    from ferlab.predict.backends import TorchClassifier
    from ferlab.preprocess import Preprocess

    model = _trained_like(create_model("seed_cnn_bn"))
    clf = TorchClassifier(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in clf.model.modules())
    pp = Preprocess(size=48, channels=1, mean=(0.5,), std=(0.25,))
    images = torch.randint(0, 255, (3, 1, 48, 48), dtype=torch.uint8)
    with torch.no_grad():
        ref = model(pp.normalize(images))
    assert torch.allclose(predict_logits(model, images, pp, channels_last=False), ref, atol=1e-4, rtol=1e-4)
    assert torch.allclose(torch.from_numpy(clf(pp.normalize(images).numpy())), ref, atol=1e-4, rtol=1e-4)


def test_ten_crop_tta_averages_the_corner_and_centre_crops_of_the_face_and_its_mirror():
    from ferlab.evaluate.tta import predict_logits
    from ferlab.preprocess import Preprocess

    model = _trained_like(create_model("fernet_tiny"))  # global pooling: takes 40x40 crops
    pp = Preprocess(size=48, channels=1, mean=(0.5,), std=(0.25,))
    images = torch.randint(0, 255, (3, 1, 48, 48), dtype=torch.uint8)
    x = pp.normalize(images)
    crops = [v[..., i:i + 40, j:j + 40] for v in (x, x.flip(-1)) for i, j in ((0, 0), (0, 8), (8, 0), (8, 8), (4, 4))]
    with torch.no_grad():
        ref = torch.stack([model(c) for c in crops]).mean(0)
    got = predict_logits(model, images, pp, "ten_crop", channels_last=False)
    assert torch.allclose(got, ref, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(got, predict_logits(model, images, pp, "flip", channels_last=False), atol=1e-3)
    with pytest.raises(ValueError, match="ten_crop TTA feeds 40x40 crops"):
        predict_logits(create_model("seed_cnn_a", in_chans=1), images, pp, "ten_crop")  # a flatten head

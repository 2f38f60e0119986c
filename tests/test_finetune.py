"""Transfer learning: timm backbones, pretrained weights from a file, staged fine-tuning, --init
onto another label set, and label subsets/maps."""
from __future__ import annotations

import csv

import pytest
import torch

from ferlab import checkpoint, train
from ferlab.data import load as load_dataset, parse_class_map, relabel
from ferlab.data.dataset import BadInputError
from ferlab.models import create_model, get_spec
from ferlab.models.backbones import IMAGENET_MEAN, IMAGENET_STD, PretrainedWeightsError
from ferlab.train import config
from ferlab.train.finetune import apply_stage, collapse_warning, hold_batchnorm, init_from, param_groups

from conftest import write_folder

# (registered name, input side, channels, head): each report's own setting where a report used it
FAMILIES = [("vgg16", 100, 3, "dense1024"), ("vgg19", 48, 3, "linear"), ("resnet18", 48, 1, "linear"),
            ("resnet34", 64, 3, "linear"), ("resnet50", 48, 1, "linear"), ("efficientnet_b0", 48, 1, "linear"),
            ("efficientnet_b2", 96, 3, "conv128"), ("mobilenetv3_small_100", 48, 1, "linear"),
            ("mobilenetv3_large_100", 64, 3, "linear"), ("convnext_atto", 48, 1, "linear"),
            ("convnext_tiny", 48, 3, "linear")]


def _cfg(data, tmp_path, **kw):
    base = dict(data=str(data), arch="fernet_tiny", epochs=3, batch_size=16, lr=0.05, augment="light",
                out=str(tmp_path / "runs"), name="t", threads=1, tta="none", chance_epochs=99, amp=False)
    base.update(kw)
    return config.build(**base)


@pytest.mark.parametrize("name,size,chans,head", FAMILIES)
def test_backbone_runs_forward_and_backward_at_the_reports_sizes(name, size, chans, head):
    torch.manual_seed(0)
    m = create_model(name, num_classes=6, in_chans=chans, input_size=size, head=head)
    out = m(torch.randn(2, chans, size, size))
    assert out.shape == (2, 6)
    out.logsumexp(1).sum().backward()
    assert all(p.grad is not None for p in m.parameters()), "some parameters got no gradient"
    body = m.body_stages()
    assert len(body) >= 4 and all(not m.is_head(n) for st in body for n in st)
    assert m.cam_layer and dict(m.named_modules())[m.cam_layer] is not None


@pytest.mark.parametrize("name", [f[0] for f in FAMILIES])
def test_registry_normalisation_is_timms_pretrained_one(name):
    import timm

    cfg = timm.models.get_pretrained_cfg(name)
    assert tuple(cfg.mean) == IMAGENET_MEAN and tuple(cfg.std) == IMAGENET_STD
    assert get_spec(name).normalization(1) == ((0.449,), (0.226,))


def _imagenet_file(tmp_path, arch="resnet18"):
    """A stand-in for a downloaded ImageNet file: timm's own model (1000 classes) with random weights."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(3)
    src = timm.create_model(arch, num_classes=1000)
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    return src.state_dict(), path


def test_pretrained_file_gives_exactly_those_weights(tmp_path):
    ref, path = _imagenet_file(tmp_path)
    m = create_model("resnet18", num_classes=7, in_chans=3, input_size=48)
    assert m.load_pretrained(str(path)) == str(path)
    for k, v in m.backbone.state_dict().items():
        assert torch.equal(v, ref[k]), k
    gray = create_model("resnet18", num_classes=7, in_chans=1, input_size=48)
    gray.load_pretrained(str(path))
    # timm folds the RGB filters of the first layer into one channel (their sum)
    assert torch.allclose(gray.backbone.conv1.weight, ref["conv1.weight"].sum(1, keepdim=True), atol=1e-6)
    assert torch.equal(gray.backbone.layer4[1].conv2.weight, ref["layer4.1.conv2.weight"])


def test_pretrained_errors_say_where_to_put_the_file(tmp_path, monkeypatch):
    m = create_model("resnet18", input_size=48)
    with pytest.raises(PretrainedWeightsError, match="no such file"):
        m.load_pretrained(str(tmp_path / "missing.safetensors"))
    _, wrong = _imagenet_file(tmp_path, "resnet34")
    with pytest.raises(PretrainedWeightsError, match="does not hold resnet18 weights"):
        m.load_pretrained(str(wrong))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    with pytest.raises(PretrainedWeightsError, match="--pretrained path/to/model.safetensors"):
        m.load_pretrained("hub")


def test_training_from_a_pretrained_file_starts_from_it(tiny_fer_dir, tmp_path):
    ref, path = _imagenet_file(tmp_path)
    cfg = _cfg(tiny_fer_dir, tmp_path, arch="resnet18", image_size=32, channels=3, pretrained=str(path),
               freeze_epochs=1, epochs=2, ema=0.0)
    run = train.fit(cfg, log=lambda m: None)
    payload = torch.load(run / "last.pt", weights_only=True)
    assert payload["metrics"]["pretrained"] == str(path)
    loaded = checkpoint.load(run)
    assert loaded.preprocess.mean == IMAGENET_MEAN and loaded.preprocess.std == IMAGENET_STD
    with pytest.raises(ValueError, match="--pretrained loads ImageNet weights into a timm backbone"):
        train.fit(_cfg(tiny_fer_dir, tmp_path, name="f", pretrained=str(path)), log=lambda m: None)


def test_stage_one_freezes_the_body_and_its_batchnorm():
    torch.manual_seed(0)
    m = create_model("fernet_tiny")
    cfg = config.build(data="x", freeze_epochs=2, epochs=5, lr=0.1)
    body = {n for st in m.body_stages() for n in st}
    before = {k: v.clone() for k, v in m.state_dict().items()}
    assert apply_stage(m, cfg, 1) == 1
    m.train()
    assert hold_batchnorm(m, cfg) > 0
    opt = torch.optim.SGD(param_groups(m, cfg), lr=0.1, momentum=0.9)
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(m(torch.randn(8, 1, 48, 48)), torch.randint(0, 7, (8,))).backward()
        assert all(p.grad is None for n, p in m.named_parameters() if n in body)
        opt.step()
    after = m.state_dict()
    body_keys = [k for k in after if not m.is_head(k)]
    assert any("running_mean" in k for k in body_keys)
    assert all(torch.equal(after[k], before[k]) for k in body_keys), "the frozen body or its BN statistics moved"
    assert not torch.equal(after["fc.weight"], before["fc.weight"]), "the head did not train"
    assert apply_stage(m, cfg, 3) == 2 and all(p.requires_grad for p in m.parameters())
    last = config.build(data="x", freeze_epochs=2, epochs=5, unfreeze=1)
    apply_stage(m, last, 3)
    trainable = {n for n, p in m.named_parameters() if p.requires_grad and not m.is_head(n)}
    assert trainable == set(m.body_stages()[-1])


def test_staged_run_marks_its_stages_and_trains_the_body_in_stage_two(tiny_fer_dir, tmp_path):
    base = train.fit(_cfg(tiny_fer_dir, tmp_path, name="base", epochs=2), log=lambda m: None)
    cfg = _cfg(tiny_fer_dir, tmp_path, name="ft", init=str(base / "last.pt"), freeze_epochs=2, epochs=3,
               ema=0.0, backbone_lr=0.1)
    assert cfg.arch == "fernet_tiny"
    logs = []
    run = train.fit(cfg, log=logs.append)
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [r["stage"] for r in rows] == ["1", "1", "2"]
    assert any("stage 1:" in m and "frozen" in m for m in logs) and any("stage 2:" in m for m in logs)
    src = torch.load(base / "last.pt", weights_only=True)["state_dict"]
    assert float(rows[2]["lr"]) > 0
    after = torch.load(run / "last.pt", weights_only=True)["state_dict"]
    moved = [k for k in src if not k.startswith("fc.") and not torch.equal(src[k].float(), after[k].float())]
    assert moved, "stage 2 should train the body"


def test_init_keeps_matching_head_rows_and_adds_new_classes(tmp_path):
    torch.manual_seed(0)
    src_model = create_model("fernet_tiny")
    from ferlab.preprocess import Preprocess
    payload = checkpoint.make_payload(src_model, "fernet_tiny", ["angry", "disgust", "fear", "happy", "neutral",
                                                                 "sad", "surprise"], Preprocess())
    new = create_model("fernet_tiny", num_classes=3)
    fresh = new.fc.weight.detach().clone()
    rows = init_from(new, payload, ["sad", "pain", "happy"])
    assert rows == {"kept": ["sad", "happy"], "new": ["pain"],
                    "dropped": ["angry", "disgust", "fear", "neutral", "surprise"]}
    assert torch.equal(new.fc.weight[0], src_model.fc.weight[5]) and torch.equal(new.fc.bias[2], src_model.fc.bias[3])
    assert torch.equal(new.fc.weight[1], fresh[1])
    assert torch.equal(new.stem[0].weight, src_model.stem[0].weight)


def test_init_run_on_an_own_label_set_with_a_new_class(tmp_path):
    data = tmp_path / "own"
    write_folder(data / "train", ["happy", "pain", "sad"], 16, seed=1)
    write_folder(data / "val", ["happy", "pain", "sad"], 6, seed=2)
    tiny = checkpoint.load("tiny")
    run = train.fit(_cfg(data, tmp_path, init="tiny", arch=tiny.model_name, freeze_epochs=1, epochs=2),
                    log=lambda m: None)
    loaded = checkpoint.load(run)
    assert loaded.classes == ["happy", "pain", "sad"] and loaded.model_name == tiny.model_name
    assert loaded.preprocess == tiny.preprocess  # inherited
    meta = torch.load(run / "best.pt", weights_only=True)["metrics"]
    assert meta["init_classes"]["new"] == ["pain"]
    with pytest.raises(ValueError, match=f"holds a {tiny.model_name} but the architecture is fernet_s"):
        train.fit(_cfg(data, tmp_path, name="x", init="tiny", arch="fernet_s"), log=lambda m: None)


def test_classes_subset_and_class_map(tiny_fer_dir, tmp_path):
    d = load_dataset(tiny_fer_dir, "train")
    six = [c for c in d.classes if c != "disgust"]
    sub = relabel(d, (), six)
    assert sub.classes == six and len(sub) == len(d) - 24
    assert [sub.classes[i] for i in sub.labels[:3]] == [d.classes[i] for i in d.labels[d.labels != 1][:3]]
    merged = relabel(d, parse_class_map("disgust=angry,surprise=shock"))
    assert merged.classes == ["angry", "fear", "happy", "neutral", "sad", "shock"]
    assert merged.class_counts()["angry"] == 48 and len(merged) == len(d)
    with pytest.raises(BadInputError, match="does not have"):
        relabel(d, parse_class_map("contempt=angry"))
    with pytest.raises(BadInputError, match=r"classes \['pain'\] are not in"):
        relabel(d, (), ["happy", "pain"])
    with pytest.raises(ValueError, match="OLD=NEW"):
        parse_class_map("angry")
    run = train.fit(_cfg(tiny_fer_dir, tmp_path, classes=tuple(six), epochs=1, class_map="disgust=angry"),
                    log=lambda m: None)
    assert checkpoint.load(run).classes == six


def test_collapse_after_unfreezing_is_diagnosed():
    cfg = config.build(data="x", arch="efficientnet_b2", freeze_epochs=2, epochs=5, backbone_lr=1.0)
    msg = collapse_warning(0.55, 0.11, 6, cfg, ((0.5,), (0.25,)))
    assert msg and "11.0%" in msg and "--freeze-bn" in msg and "pretrained on mean [0.449]" in msg
    assert collapse_warning(0.55, 0.53, 6, cfg, ((0.449,), (0.226,))) is None


def test_backbone_options_survive_the_checkpoint(tmp_path):
    from ferlab.preprocess import Preprocess
    m = create_model("efficientnet_b0", num_classes=3, in_chans=1, input_size=48, head="conv128").eval()
    p = checkpoint.save(checkpoint.make_payload(m, "efficientnet_b0", ["a", "b", "c"], Preprocess()), tmp_path / "m.pt")
    loaded = checkpoint.load(p)
    x = torch.randn(2, 1, 48, 48)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), m(x))
    with pytest.raises(ValueError, match="takes no option 'head'"):
        create_model("fernet_s", head="linear")
    with pytest.raises(ValueError, match="head must be one of"):
        create_model("resnet18", head="big")


def test_train_flags_reach_the_config():
    from ferlab.cli import build_parser
    from ferlab.cli.options import given

    args = build_parser().parse_args(["train", "--data", "d", "--arch", "vgg16", "--pretrained", "--head", "linear",
                                      "--freeze-epochs", "2", "--unfreeze", "3", "--backbone-lr", "0.1",
                                      "--rotate", "30", "--shift", "0.1", "--zoom", "0.2", "--flip", "0.5",
                                      "--classes", "angry,happy", "--class-map", "Anger=angry", "--balance",
                                      "oversample", "--oversample-to", "500"])
    cfg = config.build(**given(args, config.TrainConfig))
    assert (cfg.pretrained, cfg.head, cfg.freeze_epochs, cfg.unfreeze, cfg.backbone_lr) == ("hub", "linear", 2, 3, 0.1)
    assert (cfg.aug.rotate, cfg.aug.shift, cfg.aug.zoom, cfg.aug.flip, cfg.aug.erase) == (30, 0.1, 0.2, 0.5, None)
    assert cfg.classes == ("angry", "happy") and cfg.class_map == "angry=angry"
    assert (cfg.balance, cfg.oversample_to) == ("oversample", 500)
    path = build_parser().parse_args(["train", "--data", "d", "--arch", "vgg16", "--pretrained", "w.safetensors"])
    assert given(path, config.TrainConfig)["pretrained"] == "w.safetensors"
    with pytest.raises(ValueError, match="not both"):
        config.build(data="d", init="tiny", pretrained="hub")


def test_oversampling_run_trains_on_the_grown_epoch(tiny_fer_dir, tmp_path):
    run = train.fit(_cfg(tiny_fer_dir, tmp_path, epochs=1, balance="oversample", oversample_to=40),
                    log=lambda m: None)
    row = list(csv.DictReader(open(run / "metrics.csv")))[0]
    seen = float(row["images_per_s"]) * float(row["seconds"])
    assert abs(seen - (7 * 40 // 16) * 16) < 1, "an epoch should hold 7 classes x 40 faces"

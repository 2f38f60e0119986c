import csv
import json
import warnings

import numpy as np
import pytest
import torch
import yaml

from conftest import save_checkpoint
from ferlab import checkpoint, evaluate, train
from ferlab.evaluate.metrics import metrics
from ferlab import history
from ferlab.train import config, guards, resize
from ferlab.train.budget import plan_epochs
from ferlab.train.state import TrainState
from ferlab.data import load as load_dataset
from ferlab.labels import FER2013_CLASSES


def _cfg(data, tmp_path, **kw):
    base = dict(data=str(data), arch="fernet_tiny", epochs=4, batch_size=32, lr=0.05, augment="light",
                out=str(tmp_path / "runs"), name="t", threads=1, tta="flip", chance_epochs=99, amp=False)
    base.update(kw)
    return config.build(**base)


def test_end_to_end_train_checkpoint_reload_evaluate(tiny_fer_dir, tmp_path):
    run = train.fit(_cfg(tiny_fer_dir, tmp_path), log=lambda m: None)
    for f in ("config.yaml", "metrics.csv", "best.pt", "last.pt", "eval_val.json", "confusion_val.csv",
              "confusion_val.png", "curves.png"):
        assert (run / f).exists(), f
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert set(history.FIELDS) <= set(rows[0])
    assert yaml.safe_load(open(run / "config.yaml"))["arch"] == "fernet_tiny"

    loaded = checkpoint.load(run)
    assert loaded.classes == list(FER2013_CLASSES)
    assert loaded.preprocess.size == 48 and loaded.preprocess.channels == 1
    assert loaded.meta["config"]["epochs"] == 4 and "torch" in loaded.meta["versions"]
    assert not loaded.model.training

    m = evaluate.evaluate(run, tiny_fer_dir, "val", json_path=tmp_path / "e.json")
    saved = json.loads((tmp_path / "e.json").read_text())
    assert {"accuracy", "macro_f1", "per_class", "confusion"} <= set(saved)
    assert sum(map(sum, saved["confusion"])) == 56
    # the synthetic classes are easy: a working pipeline is far above chance (1/7)
    assert m["accuracy"] > 0.6
    assert (run / "eval_val.json").exists() and (run / "confusion_val.png").stat().st_size > 1000
    # the best checkpoint's recorded val accuracy is the best epoch's
    assert loaded.meta["metrics"]["val_acc"] == max(float(r["val_acc"]) for r in rows)


def test_train_crop_trains_on_windows_and_evaluates_full_faces(tiny_fer_dir, tmp_path):
    # fernet2_s (space-to-depth stem) on 40x40 random crops, validated on whole 48x48 faces in bf16
    run = train.fit(_cfg(tiny_fer_dir, tmp_path, arch="fernet2_s", train_crop=40, augment="flip", epochs=3,
                         amp=True), log=lambda m: None)
    loaded = checkpoint.load(run)
    assert loaded.preprocess.size == 48 and loaded.meta["config"]["train_crop"] == 40
    m = evaluate.evaluate(run, tiny_fer_dir, "val")
    assert m["accuracy"] > 0.6


def test_train_crop_larger_than_the_image_is_refused(tiny_fer_dir, tmp_path):
    with pytest.raises(ValueError, match="train_crop must be between 0 and image_size"):
        _cfg(tiny_fer_dir, tmp_path, image_size=48, train_crop=64)
    with pytest.raises(ValueError, match="train_crop 64 exceeds the 48-pixel input of fernet_tiny"):
        train.fit(_cfg(tiny_fer_dir, tmp_path, train_crop=64), log=lambda m: None)


def test_drop_path_trains_is_recorded_and_leaves_the_checkpoint_plain(tiny_fer_dir, tmp_path):
    run = train.fit(_cfg(tiny_fer_dir, tmp_path, epochs=1, drop_path=0.2), log=lambda m: None)
    assert yaml.safe_load(open(run / "config.yaml"))["drop_path"] == 0.2
    model = checkpoint.load(run).model  # rebuilt without it: stochastic depth is for training only
    assert all(getattr(m, "drop_path", 0.0) == 0.0 for m in model.modules())
    with pytest.raises(ValueError, match=r"drop_path must be in \[0, 1\), got 1.0"):
        _cfg(tiny_fer_dir, tmp_path, drop_path=1.0)
    with pytest.raises(ValueError, match="no residual blocks"):
        train.fit(_cfg(tiny_fer_dir, tmp_path, arch="seed_cnn_bn", drop_path=0.1, name="u"), log=lambda m: None)


def test_resume_continues_where_it_stopped(tiny_fer_dir, tmp_path):
    run = train.fit(_cfg(tiny_fer_dir, tmp_path, epochs=2), log=lambda m: None)
    with pytest.raises(FileExistsError, match="--resume"):
        train.fit(_cfg(tiny_fer_dir, tmp_path, epochs=2), log=lambda m: None)
    train.resume(run, epochs=3, log=lambda m: None)
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert checkpoint.read(run / "last.pt")["epoch"] == 3


def test_then_runs_the_follow_up_stage_from_best_pt(tiny_fer_dir, tmp_path):
    lines = []
    final = train.fit(_cfg(tiny_fer_dir, tmp_path, epochs=2, then="polish"), log=lines.append)
    first = tmp_path / "runs" / "t"
    assert final == tmp_path / "runs" / "t_polish"
    assert any(m.startswith(f"then polish: from {first / 'best.pt'}") for m in lines)
    assert yaml.safe_load(open(first / "config.yaml"))["then"] == "polish"
    polished = yaml.safe_load(open(final / "config.yaml"))
    assert (polished["init"], polished["then"]) == (str(first / "best.pt"), "")
    assert (polished["epochs"], polished["lr"], polished["sam"], polished["augment"]) == (8, 0.01, 0.05, "photo")
    # the run's own options carry over, and the stage started from the first stage's weights
    assert (polished["arch"], polished["batch_size"], polished["tta"]) == ("fernet_tiny", 32, "flip")
    assert [int(r["epoch"]) for r in csv.DictReader(open(final / "metrics.csv"))] == list(range(1, 9))
    assert checkpoint.load(final).meta["metrics"]["init"] == str(first / "best.pt")


def test_then_refuses_a_taken_follow_up_directory_before_training(tiny_fer_dir, tmp_path):
    taken = tmp_path / "runs" / "t_polish"
    taken.mkdir(parents=True)
    (taken / "best.pt").write_bytes(b"an earlier run's")
    with pytest.raises(FileExistsError, match=r"t_polish already holds a run.*--then ''"):
        train.fit(_cfg(tiny_fer_dir, tmp_path, epochs=2, then="polish"), log=lambda m: None)
    assert not (tmp_path / "runs" / "t").exists()  # refused before the first stage trained
    assert (taken / "best.pt").read_bytes() == b"an earlier run's"


def test_default_recipe_is_the_bundled_models_two_commands():
    # README "The bundled models": `--recipe default`, then the same recipe from its best.pt with
    # --epochs 8 --lr 0.01 --warmup-epochs 0 --sam 0.05 --augment photo
    first = config.build("default", data="d", name="default120", out="runs")
    assert first.then == "polish"
    second = config.build("default", data="d", init="runs/default120/best.pt", epochs=8, lr=0.01, warmup_epochs=0,
                          sam=0.05, augment="photo", name="default120_polish", out="runs", then="")
    assert config.follow_up(first, "runs/default120") == second


def test_unknown_follow_up_stage_names_the_choices():
    with pytest.raises(ValueError, match="unknown follow-up stage then='shine'; choose one of: polish"):
        config.build(data="d", then="shine")


def test_val_fraction_own_classes(tmp_path):
    from conftest import write_folder

    root = write_folder(tmp_path / "own", ["happy", "pain", "sad"], 20)
    run = train.fit(_cfg(root, tmp_path, val_split="", val_fraction=0.25, train_split="all", epochs=2),
                    log=lambda m: None)
    assert checkpoint.load(run).classes == ["happy", "pain", "sad"]


def test_known_bad_relu_head_is_refused(tiny_fer_dir, tmp_path):
    with pytest.raises(train.BadHeadError, match="ReLU|relu"):
        train.fit(_cfg(tiny_fer_dir, tmp_path, arch="known_bad_relu_head", image_size=48, channels=1),
                  log=lambda m: None)


def test_softmax_head_detected():
    probs = torch.softmax(torch.randn(8, 7), 1)
    with pytest.raises(train.BadHeadError, match="softmax"):
        guards.check_logits(probs, 7)
    with pytest.raises(train.BadHeadError, match="expected"):
        guards.check_logits(torch.randn(8, 5), 7)
    guards.check_logits(torch.randn(8, 7), 7)


def test_nan_loss_stops_with_diagnosis(tiny_fer_dir, tmp_path):
    cfg = _cfg(tiny_fer_dir, tmp_path, arch="seed_cnn_c", lr=1e12, optimizer="sgd", schedule="constant",
               epochs=3, augment="none")
    with pytest.raises(train.TrainingDiverged, match="NaN/inf.*learning rate too high"):
        train.fit(cfg, log=lambda m: None)


def test_chance_level_warning(tiny_fer_dir, tmp_path):
    assert "chance level" in guards.chance_warning(0.143, torch.arange(7).repeat(10), 7, 3)
    assert guards.chance_warning(0.6, torch.arange(7).repeat(10), 7, 3) is None
    # lr ~0: the model cannot learn, so the run must warn
    cfg = _cfg(tiny_fer_dir, tmp_path, lr=1e-9, epochs=2, chance_epochs=2, schedule="constant")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        train.fit(cfg, log=lambda m: None)
    assert any("chance level" in str(x.message) for x in w)


def test_lr_schedule_shape():
    cfg = config.build(lr=0.1, schedule="cosine", lr_floor=1e-3)
    lrs = [train.lr_at(TrainState(step=s, total_steps=100, warmup_steps=10), cfg) for s in range(101)]
    assert lrs[0] == pytest.approx(0.01) and lrs[0] < lrs[9] <= 0.1 + 1e-9 and abs(max(lrs) - 0.1) < 1e-3
    assert lrs[100] == pytest.approx(1e-4)  # the floor: lr x lr_floor
    assert train.lr_at(TrainState(step=50, total_steps=100), config.build(lr=0.1, schedule="constant")) == 0.1


def test_plan_epochs_fits_the_time_left_at_the_recent_median_pace():
    cfg = config.build(max_minutes=10, fit_budget=True, epochs=30)
    state = TrainState(epoch=3, elapsed=150.0)
    # the first epoch (70 s: warm-up costs) is not the pace once others are timed; their median is
    assert plan_epochs(state, cfg, [70.0, 40.0, 50.0], 48) == 3 + 450 // 45
    # one slow epoch (a neighbour's burst) does not shorten the plan; a lasting slowdown does
    state = TrainState(epoch=7, elapsed=300.0)
    assert plan_epochs(state, cfg, [70.0, 40.0, 40.0, 80.0, 40.0, 40.0, 40.0], 48) == 7 + 300 // 40
    assert plan_epochs(state, cfg, [70.0, 40.0, 40.0, 40.0, 80.0, 80.0, 80.0], 48) == 7 + 300 // 80
    assert plan_epochs(TrainState(epoch=1, elapsed=70.0), cfg, [70.0], 48) == 1 + 530 // 70
    assert plan_epochs(state, config.build(max_minutes=10, fit_budget=True, epochs=8), [40.0] * 3, 48) == 8
    assert plan_epochs(TrainState(epoch=5, elapsed=620.0), cfg, [40.0] * 5, 48) == 5  # over: stop now


def test_progressive_sides_rise_to_full_size_for_the_last_quarter():
    cfg = config.build(progressive=32, epochs=16)
    sides = [resize.side(cfg, 48, e, 16) for e in range(1, 17)]
    assert sides[0] == 32 and sides == sorted(sides) and all(s % 4 == 0 for s in sides)
    assert sides[11:] == [48] * 5 and sides[9] < 48  # full size by epoch 12 = 0.75 x 16 (rounded: from 11)
    assert {resize.side(config.build(), 48, e, 16) for e in range(1, 17)} == {48}  # off
    assert resize.cost(48, 48) == 1 and 0.5 < resize.cost(32, 48) < 0.6
    x = torch.rand(2, 1, 48, 48)
    assert resize.shrink(x, 32).shape == (2, 1, 32, 32) and resize.shrink(x, 48) is x
    for bad in (dict(progressive=4), dict(progressive=56, image_size=48), dict(progressive=32, train_crop=40)):
        with pytest.raises(ValueError, match="progressive"):
            config.build(**bad)


def test_plan_epochs_counts_progressive_epochs_at_their_cost():
    cfg = config.build(max_minutes=10, fit_budget=True, epochs=40, progressive=32)
    state = TrainState(epoch=2, elapsed=60.0)  # two epochs at 32 px: 30 s each, 55 s per full-size epoch
    planned = plan_epochs(state, cfg, [55.0, 55.0], 48)
    full_size = plan_epochs(state, config.build(max_minutes=10, fit_budget=True, epochs=40), [55.0, 55.0], 48)
    assert full_size == 2 + 540 // 55 and planned > full_size  # smaller epochs: more of them fit
    cost = sum(resize.cost(resize.side(cfg, 48, e, planned), 48) for e in range(3, planned + 1))
    assert 55.0 * cost <= 540 < 55.0 * (cost + 1)  # fills the time left; one more epoch would not fit


def test_progressive_resizing_trains_small_then_full_size(tiny_fer_dir, tmp_path):
    log = []
    run = train.fit(_cfg(tiny_fer_dir, tmp_path, epochs=4, progressive=32), log=log.append)
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [int(r["side"]) for r in rows] == [32, 40, 48, 48]
    assert "at 32 px" in next(m for m in log if m.startswith("epoch 1/"))
    loaded = checkpoint.load(run)  # evaluated and recorded at the full size
    assert loaded.preprocess.size == 48 and loaded.meta["config"]["progressive"] == 32
    assert loaded.meta["metrics"]["val_acc"] > 0.5


def test_fit_budget_ends_the_cosine_inside_the_time_budget(tiny_fer_dir, tmp_path):
    # 1,000 epochs would take minutes; the plan cuts them to what 3 s allow and ends the cosine there
    # (3 s, not less: a cold first epoch, loading compiled kernels, can take most of a second)
    log = []
    run = train.fit(_cfg(tiny_fer_dir, tmp_path, epochs=1000, max_minutes=0.05, fit_budget=True, lr=0.1,
                         lr_floor=0.001), log=log.append)
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert 2 <= len(rows) < 1000
    assert any("epochs fit in 0.05 min" in m for m in log)
    state = checkpoint.read(run / "last.pt")["train_state"]
    assert state["planned_epochs"] == len(rows) or float(rows[-1]["elapsed"]) >= 3
    # a cosine over 1,000 epochs would still be near its 0.1 peak; this one has come down to its floor
    assert float(rows[-1]["lr"]) < 0.02
    with pytest.raises(ValueError, match="--max-minutes"):
        config.build(fit_budget=True)

    # resumed with less time than it has used, the run trains no further; with more, the plan extends
    train.resume(run, max_minutes=0.01, log=lambda m: None)
    assert len(list(csv.DictReader(open(run / "metrics.csv")))) == len(rows)
    train.resume(run, max_minutes=0.1, log=log.append)
    more = list(csv.DictReader(open(run / "metrics.csv")))
    assert len(more) > len(rows) and any("epochs in all fit in 0.1 min" in m for m in log)
    assert float(more[-1]["lr"]) < 0.02


def test_old_schedule_and_model_names_still_load(tmp_path):
    f = tmp_path / "old.yaml"
    f.write_text("model: fernet_tiny\nschedule: onecycle\n")
    with pytest.warns(DeprecationWarning, match="arch"):
        cfg = config.build(file=f)
    assert (cfg.arch, cfg.schedule, cfg.lr_floor) == ("fernet_tiny", "cosine", 1e-3)
    f.write_text("schedule: cosine\n")  # the old cosine decayed to 1e-2
    assert config.build(file=f).lr_floor == 1e-2


def test_config_validation_reports_all_problems():
    with pytest.raises(ValueError) as e:
        config.build(epochs=0, lr=-1, optimizer="rmsprop", augment="wild")
    msg = str(e.value)
    assert "epochs must be >= 1" in msg and "lr must be > 0" in msg and "optimizer must be one of" in msg
    assert "augment must be one of" in msg
    with pytest.raises(ValueError, match="unknown config option"):
        config.build(epoch=3)
    with pytest.raises(ValueError, match="unknown recipe 'best'; choose one of"):
        config.build("best")


def test_config_file_then_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("epochs: 7\nlr: 0.01\nclasses: [happy, sad]\n")
    cfg = config.build("fast", f, lr=0.02)
    assert cfg.epochs == 7 and cfg.lr == 0.02 and cfg.classes == ("happy", "sad")
    assert cfg.arch == config.RECIPES["fast"]["arch"]


def test_atomic_save_keeps_previous_file_on_failure(tmp_path, monkeypatch):
    p = save_checkpoint(tmp_path / "m.pt", seed=None)
    before = p.read_bytes()

    def full_disk(obj, f):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="previous file, if any, is unchanged"):
        checkpoint.save({"x": 1}, p)
    assert p.read_bytes() == before
    assert [x.name for x in tmp_path.iterdir()] == ["m.pt"]  # no temp file left behind


def test_missing_and_corrupt_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        checkpoint.load(tmp_path / "none.pt")
    with pytest.raises(FileNotFoundError, match="no best.pt or last.pt"):
        checkpoint.load(tmp_path)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a readable ferlab checkpoint"):
        checkpoint.load(bad)
    torch.save({"hello": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a ferlab checkpoint"):
        checkpoint.load(tmp_path / "other.pt")


def test_metrics_per_class():
    m = metrics([0, 0, 1, 1, 2], [0, 1, 1, 1, 0], ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(0.6)
    assert m["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert m["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    assert m["per_class"]["a"]["recall"] == pytest.approx(0.5)
    assert m["per_class"]["c"]["f1"] == 0.0
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)


def test_bf16_validation_agrees_with_fp32(tiny_fer_dir, tmp_path):
    # per-epoch validation runs under bf16 autocast; it must pick the same classes as fp32
    run = train.fit(_cfg(tiny_fer_dir, tmp_path, epochs=2), log=lambda m: None)
    loaded = checkpoint.load(run)
    val = load_dataset(tiny_fer_dir, "val")
    fp32 = evaluate.predict_logits(loaded.model, val.images, loaded.preprocess, "flip")
    bf16 = evaluate.predict_logits(loaded.model, val.images, loaded.preprocess, "flip", amp=True)
    assert bf16.dtype == torch.float32 and bf16.shape == fp32.shape
    assert (bf16.argmax(1) == fp32.argmax(1)).float().mean() >= 0.95
    assert (bf16 - fp32).abs().max() < 0.1 * fp32.abs().max()


def test_ece_of_known_probabilities():
    from ferlab.evaluate.calibration import ece, reliability

    # 10 answers at confidence 0.9 of which 6 are right: |0.6 - 0.9| = 0.3 in one bin
    probs = np.array([[0.9, 0.1]] * 10)
    labels = np.array([0] * 6 + [1] * 4)
    assert ece(probs, labels) == pytest.approx(0.3)
    r = reliability(probs, labels)
    assert r["count"][13] == 10 and sum(r["count"]) == 10 and r["accuracy"][13] == pytest.approx(0.6)
    assert ece(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 1])) == 0.0


def test_temperature_fit_recovers_an_overconfident_model():
    from ferlab.evaluate.calibration import calibrate

    g = torch.Generator().manual_seed(0)
    true_logits = torch.randn(4000, 7, generator=g) * 2
    labels = torch.multinomial(true_logits.softmax(1), 1, generator=g)[:, 0]  # calibrated at T = 1
    cal = calibrate(true_logits * 3, labels, "val")                          # 3x overconfident
    assert cal["temperature"] == pytest.approx(3.0, rel=0.1)
    assert cal["ece_after"] < 0.02 < cal["ece_before"]


def test_run_stores_a_temperature_that_every_verb_applies(tiny_fer_dir, tmp_path, astronaut_crop=None):
    from ferlab.predict import Recognizer

    run = train.fit(_cfg(tiny_fer_dir, tmp_path, epochs=2), log=lambda m: None)
    loaded = checkpoint.load(run)
    t = loaded.temperature
    assert loaded.meta["calibration"]["split"] == "val" and t > 0 and t != 1.0
    assert (run / "reliability_val.png").stat().st_size > 1000
    face = np.asarray(load_dataset(tiny_fer_dir, "val").images[0, 0])
    probs = Recognizer(loaded, "none").classify_faces([face])[0]
    x = loaded.preprocess.model_input([face])
    with torch.no_grad():
        expected = (loaded.model(x) / t).softmax(1)[0].numpy()
    assert np.allclose(probs, expected, atol=1e-5)
    m = evaluate.evaluate(run, tiny_fer_dir, "val")
    assert m["temperature"] == t and 0 <= m["ece"] <= 1


def test_pixel_maxabs_normalization_is_recorded_and_used_everywhere(tiny_fer_dir, tmp_path):
    from ferlab.export.onnx import OnnxClassifier, export_onnx

    run = train.fit(_cfg(tiny_fer_dir, tmp_path, epochs=1, normalization="pixel_maxabs"), log=lambda m: None)
    loaded = checkpoint.load(run)
    pre = loaded.preprocess
    tr = load_dataset(tiny_fer_dir, "train")
    assert len(pre.pixel_mean) == 48 * 48 and len(pre.std) == 1
    x = pre.normalize(tr.images)
    assert x.abs().max().item() == pytest.approx(1.0, abs=1e-5)          # divided by the largest |value|
    assert x.mean(0).abs().max().item() < 1e-4                           # centred pixel by pixel
    assert np.array_equal(pre.denormalize(x[:4]), tr.images[:4, 0].numpy())
    onnx = OnnxClassifier(export_onnx(loaded, tmp_path / "m.onnx"))
    assert onnx.preprocess == pre

"""Knowledge distillation: `ferlab teacher` files and `train --teacher`."""
import numpy as np
import pytest
import torch

from conftest import save_checkpoint
from ferlab import checkpoint, train
from ferlab.cli import main
from ferlab.data import load as load_dataset
from ferlab.evaluate.tta import predict_logits
from ferlab.labels import FER2013_CLASSES
from ferlab.train import config, teacher
from ferlab.train.teacher import TeacherError, distill_loss


def _teacher_file(path, logits, classes, keys):
    np.savez_compressed(path, logits=np.asarray(logits, np.float16), classes=np.array(classes), keys=np.array(keys),
                        models=np.array(["made by hand"]), split=np.array("train"))
    return path


def test_written_logits_follow_the_run_s_images_and_classes(tiny_fer_dir, tmp_path):
    ckpt = save_checkpoint(tmp_path / "t.pt")
    out = teacher.write([str(ckpt)], str(tiny_fer_dir), "train", tmp_path / "t.npz", tta="flip", log=lambda m: None)
    full = load_dataset(str(tiny_fer_dir), "train")
    m = checkpoint.load(ckpt)
    want = (predict_logits(m.model, full.images, m.preprocess, "flip") / m.temperature).log_softmax(1)
    assert torch.allclose(teacher.load(str(out), full, list(FER2013_CLASSES)), want, atol=2e-2)

    # another order, a subset of the images and of the classes (columns reordered to the run's)
    idx = torch.randperm(len(full))[:40]
    part = full.subset(idx)
    classes = ["sad", "happy", "angry"]
    cols = [FER2013_CLASSES.index(c) for c in classes]
    got = teacher.load(str(out), part, classes)
    assert got.shape == (40, 3) and torch.allclose(got, want[idx][:, cols], atol=2e-2)


def test_an_ensemble_averages_log_probabilities(tiny_fer_dir, tmp_path):
    a, b = save_checkpoint(tmp_path / "a.pt", seed=1), save_checkpoint(tmp_path / "b.pt", seed=2)
    full = load_dataset(str(tiny_fer_dir), "train")
    ta = teacher.load(str(teacher.write([str(a)], str(tiny_fer_dir), "train", tmp_path / "a.npz", tta="none",
                                        log=lambda m: None)), full, list(FER2013_CLASSES))
    tb = teacher.load(str(teacher.write([str(b)], str(tiny_fer_dir), "train", tmp_path / "b.npz", tta="none",
                                        log=lambda m: None)), full, list(FER2013_CLASSES))
    both = teacher.load(str(teacher.write([str(a), str(b)], str(tiny_fer_dir), "train", tmp_path / "ab.npz",
                                          tta="none", log=lambda m: None)), full, list(FER2013_CLASSES))
    assert torch.allclose(both, (ta + tb) / 2, atol=2e-2)
    assert not torch.allclose(ta, tb, atol=0.1)

    # a teacher grows from its file: b.npz and a.pt make the ensemble ab.npz made, with both names;
    # a file's members count as they were averaged there (ab.npz + a.pt = (2 a + b) / 3)
    c = save_checkpoint(tmp_path / "c.pt", seed=1)  # a's weights under another name
    grown = teacher.write([str(tmp_path / "b.npz"), str(c)], str(tiny_fer_dir), "train", tmp_path / "g.npz",
                          tta="none", log=lambda m: None)
    assert torch.allclose(teacher.load(str(grown), full, list(FER2013_CLASSES)), both, atol=2e-2)
    with np.load(grown) as f:
        assert sorted(map(str, f["models"])) == sorted([str(b), str(c)])
    thirds = teacher.write([str(tmp_path / "ab.npz"), str(c)], str(tiny_fer_dir), "train", tmp_path / "t.npz",
                           tta="none", log=lambda m: None)
    assert torch.allclose(teacher.load(str(thirds), full, list(FER2013_CLASSES)), (2 * ta + tb) / 3, atol=3e-2)
    np.savez(tmp_path / "bare.npz", logits=np.zeros((len(full), 7), np.float16), classes=np.array(FER2013_CLASSES),
             keys=np.array(teacher.image_keys(full)))
    with pytest.raises(TeacherError, match="not a teacher file"):  # it does not say which models it averages
        teacher.write([str(tmp_path / "bare.npz"), str(c)], str(tiny_fer_dir), "train", tmp_path / "x.npz",
                      log=lambda m: None)


def test_csv_rows_are_keyed_by_their_pixels():
    imgs = torch.arange(3 * 4, dtype=torch.uint8).reshape(3, 1, 2, 2)
    from ferlab.data import FaceData
    ds = FaceData(imgs, torch.tensor([0, 1, 0]), ["a", "b"])
    keys = teacher.image_keys(ds)
    assert len(set(keys)) == 3
    assert teacher.image_keys(ds.subset(torch.tensor([2, 0]))) == [keys[2], keys[0]]


def test_teacher_files_that_do_not_fit_are_refused(tiny_fer_dir, tmp_path):
    full = load_dataset(str(tiny_fer_dir), "train")
    keys = teacher.image_keys(full)
    classes = list(FER2013_CLASSES)
    logits = np.zeros((len(keys), 7))
    with pytest.raises(TeacherError, match="not the run's class"):
        teacher.load(str(_teacher_file(tmp_path / "c.npz", logits[:, :6], classes[:6], keys)), full, classes)
    with pytest.raises(TeacherError, match="1 of the run's .* not in the teacher"):
        teacher.load(str(_teacher_file(tmp_path / "k.npz", logits[1:], classes, keys[1:])), full, classes)
    bad = logits.copy()
    bad[3, 2] = np.nan
    with pytest.raises(TeacherError, match="NaN"):
        teacher.load(str(_teacher_file(tmp_path / "n.npz", bad, classes, keys)), full, classes)
    with pytest.raises(TeacherError, match="do not match"):
        teacher.load(str(_teacher_file(tmp_path / "s.npz", logits[:5], classes, keys)), full, classes)
    (tmp_path / "junk.npz").write_bytes(b"\x00not a zip" * 50)
    with pytest.raises(TeacherError, match="not a teacher file"):
        teacher.load(str(tmp_path / "junk.npz"), full, classes)
    # object arrays unpickle on load: a hostile file is refused, nothing is run
    np.savez(tmp_path / "pickle.npz", logits=np.array([object()], dtype=object), classes=np.array(classes),
             keys=np.array(keys))
    with pytest.raises(TeacherError, match="not a teacher file"):
        teacher.load(str(tmp_path / "pickle.npz"), full, classes)
    with pytest.raises(TeacherError, match="no teacher file"):
        teacher.load(str(tmp_path / "missing.npz"), full, classes)


def test_distill_loss_is_the_scaled_kl():
    s, t = torch.randn(5, 7), torch.randn(5, 7)
    assert distill_loss(t, t, 4.0).abs() < 1e-6
    p = (t / 2).softmax(1)
    manual = (p * (p.log() - (s / 2).log_softmax(1))).sum(1).mean() * 4
    assert torch.allclose(distill_loss(s, t, 2.0), manual, atol=1e-5)


def test_a_student_learns_what_its_teacher_says(tiny_fer_dir, tmp_path):
    # a teacher that names the *next* class of every image: with the loss all distillation, the
    # student follows the teacher, not the folders' labels
    full = load_dataset(str(tiny_fer_dir), "train")
    shifted = (full.labels + 1) % 7
    logits = np.full((len(full), 7), -4.0)
    logits[np.arange(len(full)), shifted.numpy()] = 4.0
    path = _teacher_file(tmp_path / "shift.npz", logits, list(FER2013_CLASSES), teacher.image_keys(full))
    cfg = config.build(data=str(tiny_fer_dir), arch="fernet_tiny", epochs=6, batch_size=32, lr=0.05, augment="flip",
                       out=str(tmp_path / "runs"), name="kd", threads=1, tta="none", chance_epochs=99, amp=False,
                       teacher=str(path), distill=1.0, distill_temperature=1.0)
    run = train.fit(cfg, log=lambda m: None)
    m = checkpoint.load(run / "last.pt")  # best.pt is chosen by val accuracy on the true labels
    pred = predict_logits(m.model, full.images, m.preprocess).argmax(1)
    assert (pred == shifted).float().mean() > 0.8
    assert m.meta["config"]["teacher"] == str(path)

    # that student, as an online teacher, labels every augmented and mixed batch (a file cannot label
    # mixed images): its own student learns the shifted labels too, never having seen the file
    cfg2 = config.build(data=str(tiny_fer_dir), arch="fernet_tiny", epochs=6, batch_size=32, lr=0.05,
                        augment="standard", mixup=0.2, out=str(tmp_path / "runs"), name="online", threads=1,
                        tta="none", chance_epochs=99, amp=False, teacher=str(run / "last.pt"), distill=1.0,
                        distill_temperature=1.0)
    m2 = checkpoint.load(train.fit(cfg2, log=lambda m: None) / "last.pt")
    pred2 = predict_logits(m2.model, full.images, m2.preprocess).argmax(1)
    assert (pred2 == shifted).float().mean() > 0.6 and (pred2 == full.labels).float().mean() < 0.2

    # benchmarks/distill.py collects such runs for the README
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location("bench_distill", Path(__file__).parents[1] / "benchmarks" / "distill.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    entry = bench.run_entry(run)
    assert entry["distill"] == 1.0 and entry["distill_temperature"] == 1.0 and entry["epochs"] == 6
    assert 0 <= entry["val_acc_tta"] <= 1 and entry["teacher"] == str(path)


def test_teacher_cli_and_option_checks(tiny_fer_dir, tmp_path, capsys):
    ckpt = save_checkpoint(tmp_path / "t.pt")
    out = tmp_path / "soft.npz"
    assert main(["teacher", str(ckpt), "--data", str(tiny_fer_dir), "--out", str(out), "--tta", "none"]) == 0
    with np.load(out, allow_pickle=False) as f:
        assert f["logits"].shape == (7 * 24, 7) and f["logits"].dtype == np.float16
    assert main(["teacher", str(ckpt), "--data", str(tiny_fer_dir), "--out", str(tmp_path / "soft.txt")]) == 2
    assert "FILE.npz" in capsys.readouterr().err
    with pytest.raises(ValueError, match="mixed image"):
        config.build(data="d", teacher=str(out), mixup=0.2)
    assert config.build(data="d", teacher=str(ckpt), mixup=0.2).mixup == 0.2  # a checkpoint labels the mixed batch
    with pytest.raises(ValueError, match=r"distill must be in \(0, 1\]"):
        config.build(data="d", teacher=str(out), distill=0)


def test_the_shipped_fer2013_teacher_is_found_by_name_and_fits_only_fer2013(tiny_fer_dir):
    path = teacher.resolve("fer2013")
    assert path == checkpoint.bundled_path("default").with_name("teacher_fer2013.npz")
    with np.load(path, allow_pickle=False) as f:
        logits, keys = f["logits"], [str(k) for k in f["keys"]]
        assert logits.shape == (28709, 7) and logits.dtype == np.float16 and np.isfinite(logits).all()
        assert [str(c) for c in f["classes"]] == list(FER2013_CLASSES) and str(f["split"]) == "train"
        assert len(f["models"]) == 3
    assert len(set(keys)) == len(keys)
    # the key's folder is the image's label: the ensemble agrees with it on most of train (81-85 % per member)
    folder = np.array([list(FER2013_CLASSES).index(k.split("/")[0]) for k in keys])
    assert (logits.argmax(1) == folder).mean() > 0.8
    full = load_dataset(str(tiny_fer_dir), "train")
    with pytest.raises(TeacherError, match="not in the teacher.*Kaggle train folders only; --teacher '' trains"):
        teacher.load("fer2013", full, list(FER2013_CLASSES))


def test_fast_kd_recipe_distils_from_the_shipped_teacher_and_refuses_other_data(tiny_fer_dir, tmp_path):
    cfg = config.build("fast_kd", data=str(tiny_fer_dir), out=str(tmp_path), epochs=1)
    assert (cfg.teacher, cfg.distill, cfg.lr, cfg.arch, cfg.epochs) == ("fer2013", 0.9, 0.2, "fernet_s", 1)
    assert (cfg.max_minutes, cfg.fit_budget) == (10.0, True)  # the cosine ends where 10 minutes do
    assert cfg.augment == "flip"  # the views the teacher labelled: the face and its mirror, unshifted
    with pytest.raises(TeacherError, match="Kaggle train folders only"):
        train.fit(cfg, log=lambda m: None)
    assert not [*tmp_path.rglob("best.pt"), *tmp_path.rglob("last.pt")]  # refused before any training


def test_an_online_teacher_labels_the_batch_it_is_given_and_must_read_the_student_s_inputs(tiny_fer_dir, tmp_path):
    full = load_dataset(str(tiny_fer_dir), "train")
    ckpt = save_checkpoint(tmp_path / "t.pt", seed=3)
    m = checkpoint.load(ckpt)
    classes = ["sad", "happy", "angry"]  # a subset of the teacher's classes, in the run's order
    online = teacher.prepare(str(ckpt), full, classes, m.preprocess, torch.device("cpu"))
    x = torch.randn(5, 1, 48, 48)
    cols = [FER2013_CLASSES.index(c) for c in classes]
    want = (m.model(x) / m.temperature).log_softmax(1)[:, cols]
    got = online(x, torch.arange(5))
    assert torch.allclose(got, want, atol=1e-5) and not got.requires_grad
    assert not any(model.training for model in online.models)  # eval mode: BatchNorm's running statistics
    assert not torch.allclose(online(x.flip(3), torch.arange(5)), got)  # the view it is given, not the image's

    # an ensemble: the mean of its members' log-probabilities
    other = save_checkpoint(tmp_path / "u.pt", seed=4)
    m2 = checkpoint.load(other)
    pair = teacher.prepare(f"{ckpt},{other}", full, classes, m.preprocess, torch.device("cpu"))
    want2 = (m2.model(x) / m2.temperature).log_softmax(1)[:, cols]
    assert len(pair.models) == 2 and torch.allclose(pair(x, torch.arange(5)), (want + want2) / 2, atol=1e-5)
    with pytest.raises(TeacherError, match="online ensemble takes checkpoints only.*ferlab teacher"):
        teacher.prepare(f"{ckpt},fer2013", full, classes, m.preprocess, torch.device("cpu"))

    # a teacher file is read by index, whatever the batch holds
    path = _teacher_file(tmp_path / "f.npz", np.eye(7)[np.arange(len(full)) % 7], list(FER2013_CLASSES),
                         teacher.image_keys(full))
    fixed = teacher.prepare(str(path), full, list(FER2013_CLASSES), m.preprocess, torch.device("cpu"))
    assert torch.equal(fixed(x, torch.tensor([8, 2])).argmax(1), torch.tensor([1, 2]))

    from ferlab.preprocess import Preprocess
    with pytest.raises(TeacherError, match="reads 40x40x1 inputs.*--image-size"):
        teacher.prepare(str(save_checkpoint(tmp_path / "s.pt", preprocess=Preprocess(size=40))), full, classes,
                        m.preprocess, torch.device("cpu"))
    with pytest.raises(TeacherError, match="not the run's class.*pain"):
        teacher.prepare(str(ckpt), full, ["happy", "pain"], m.preprocess, torch.device("cpu"))
    with pytest.raises(TeacherError, match="neither a teacher file .* nor a usable checkpoint"):
        teacher.prepare(str(tmp_path / "nowhere.pt"), full, classes, m.preprocess, torch.device("cpu"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint" * 10)
    with pytest.raises(TeacherError, match="nor a usable checkpoint"):
        teacher.prepare(str(tmp_path / "junk.pt"), full, classes, m.preprocess, torch.device("cpu"))

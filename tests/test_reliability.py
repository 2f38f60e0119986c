"""Regression tests for the faults that fault injection found in training, resume, checkpoints and
data (issue 8, part B). Each fails on the code before the fix."""
from __future__ import annotations

import csv
import json
import os
import time

import pytest
import torch

from conftest import save_checkpoint, write_folder
from ferlab import checkpoint, data, train
from ferlab.cli import main
from ferlab.fileio import SaveError, dumps
from ferlab.train import config, loop


def _cfg(data_dir, tmp_path, **kw):
    base = dict(data=str(data_dir), arch="fernet_tiny", epochs=3, batch_size=32, lr=0.05, augment="light",
                out=str(tmp_path / "runs"), name="r", threads=1, tta="none", chance_epochs=99, amp=False)
    base.update(kw)
    return config.build(**base)


def _quiet(msg):
    pass


def _epochs(run):
    with open(run / "metrics.csv", newline="") as f:
        return [int(float(r["epoch"])) for r in csv.DictReader(f)]


class _Kill(BaseException):
    """Stands for SIGKILL: raised from the log callback, it skips every save of that epoch."""


# ------------------------------------------------------------------------------------ 1. security

class _Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_resume_never_unpickles_code(tiny_fer_dir, tmp_path, monkeypatch):
    run = train.fit(_cfg(tiny_fer_dir, tmp_path, epochs=1), log=_quiet)
    torch.save({"format": checkpoint.FORMAT, "evil": _Payload()}, run / "last.pt")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(checkpoint.CheckpointError, match=r"last\.pt is not a readable ferlab checkpoint"):
        train.resume(run, epochs=2, log=_quiet)
    assert not (tmp_path / "PWNED").exists()


def test_metadata_is_validated_with_the_file_named(tmp_path):
    good = checkpoint.read(save_checkpoint(tmp_path / "good.pt"))
    cases = {
        "missing": ({k: v for k, v in good.items() if k != "classes"}, "missing classes"),
        "classes": ({**good, "classes": ["a", "b"]}, "names 2 classes but its model has 7 outputs"),
        "model": ({**good, "model": {**good["model"], "name": "vgg17"}}, "model 'vgg17', which this ferlab"),
        "head": ({**good, "model": {**good["model"], "num_classes": 6}, "classes": good["classes"][:6]},
                 "weights do not fit model 'fernet_tiny' with 6 classes"),
    }
    for name, (payload, message) in cases.items():
        p = tmp_path / f"{name}.pt"
        torch.save(payload, p)
        with pytest.raises(checkpoint.CheckpointError, match=message) as e:
            checkpoint.load(p)
        assert str(p) in str(e.value)


# ------------------------------------------------------------------------------------ 2. resume

def test_kill_after_best_save_keeps_the_better_best_and_one_row_per_epoch(tiny_fer_dir, tmp_path):
    run = train.fit(_cfg(tiny_fer_dir, tmp_path, epochs=2), log=_quiet)
    # As if epoch 3 of a longer run wrote its row and a perfect best.pt, then was killed before last.pt.
    best = checkpoint.read(run / "best.pt")
    best["metrics"].update(val_acc=1.0, best_epoch=3)
    checkpoint.save(best, run / "best.pt")
    with open(run / "metrics.csv", "a", newline="") as f:
        f.write("3,1,1,1,1,1,0.01,1,1,1\n")
    train.resume(run, epochs=3, log=_quiet)
    assert _epochs(run) == [1, 2, 3]
    assert checkpoint.read(run / "best.pt")["metrics"]["best_epoch"] == 3
    assert checkpoint.read(run / "best.pt")["metrics"]["val_acc"] == 1.0


def test_resumed_run_repeats_the_uninterrupted_one_exactly(tiny_fer_dir, tmp_path):
    whole = train.fit(_cfg(tiny_fer_dir, tmp_path, name="whole"), log=_quiet)

    def kill_at_epoch_2(msg):
        if msg.startswith("epoch 2/"):
            raise _Kill

    with pytest.raises(_Kill):
        train.fit(_cfg(tiny_fer_dir, tmp_path, name="cut"), log=kill_at_epoch_2)
    cut = tmp_path / "runs" / "cut"
    assert _epochs(cut) == [1, 2]  # epoch 2's row was written, its last.pt was not
    train.resume(cut, log=_quiet)
    assert _epochs(cut) == [1, 2, 3]
    a, b = checkpoint.read(whole / "last.pt")["state_dict"], checkpoint.read(cut / "last.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a), "a resumed run must draw the same random stream"


def test_resume_with_more_epochs_says_what_the_schedule_does(tiny_fer_dir, tmp_path):
    run = train.fit(_cfg(tiny_fer_dir, tmp_path, epochs=2), log=_quiet)
    lines = []
    train.resume(run, epochs=3, log=lines.append)
    assert any("keeping the original cosine over 2 epochs" in m and "--restart-schedule" in m for m in lines)
    floor = 0.05 * 1e-3
    with open(run / "metrics.csv", newline="") as f:
        lr = [float(r["lr"]) for r in csv.DictReader(f)]
    assert lr[2] == pytest.approx(floor)
    lines.clear()
    train.resume(run, epochs=4, restart_schedule=True, log=lines.append)
    assert any("fresh warm-up + cosine over epochs 4-4" in m for m in lines)
    with open(run / "metrics.csv", newline="") as f:
        lr = [float(r["lr"]) for r in csv.DictReader(f)]
    assert lr[3] > 10 * floor


def test_resume_cleans_stale_temp_files(tiny_fer_dir, tmp_path):
    run = train.fit(_cfg(tiny_fer_dir, tmp_path, epochs=1), log=_quiet)
    stale = run / ".last.pt.x1y2.tmp"
    stale.write_bytes(b"half a checkpoint")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    train.resume(run, epochs=2, log=_quiet)
    assert not stale.exists()


def test_corrupt_last_pt_is_a_message_not_a_traceback(tiny_fer_dir, tmp_path, capsys):
    run = train.fit(_cfg(tiny_fer_dir, tmp_path, epochs=1), log=_quiet)
    (run / "last.pt").write_bytes((run / "last.pt").read_bytes()[:1000])
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert "last.pt is not a readable ferlab checkpoint" in err and "Traceback" not in err


# ------------------------------------------------------------------------------------ 3. non-finite weights

def test_weights_that_go_non_finite_are_never_saved(tiny_fer_dir, tmp_path, monkeypatch):
    real = loop.train_one_epoch

    def blow_up_batchnorm(job):
        out = real(job)
        bn = next(m for m in job.model.modules() if isinstance(m, torch.nn.BatchNorm2d))
        bn.running_var.fill_(float("inf"))  # the loss stays finite; BatchNorm statistics do not
        return out

    monkeypatch.setattr(loop, "train_one_epoch", blow_up_batchnorm)
    with pytest.raises(train.TrainingDiverged, match="the weights became NaN/inf at epoch 1"):
        train.fit(_cfg(tiny_fer_dir, tmp_path), log=_quiet)
    assert not (tmp_path / "runs" / "r" / "best.pt").exists()


def test_non_finite_checkpoints_are_refused_on_save_and_load(tmp_path):
    p = save_checkpoint(tmp_path / "m.pt")
    payload = checkpoint.read(p)
    key = [k for k, v in payload["state_dict"].items() if v.is_floating_point()][-1]
    payload["state_dict"][key] = payload["state_dict"][key] * float("nan")
    with pytest.raises(checkpoint.NonFiniteWeightsError, match=key):
        checkpoint.save(payload, tmp_path / "nan.pt")
    torch.save(payload, tmp_path / "nan.pt")
    with pytest.raises(checkpoint.CheckpointError, match="NaN/inf weights"):
        checkpoint.load(tmp_path / "nan.pt")


def test_json_never_holds_nan():
    text = dumps({"val_loss": float("nan"), "per_class": [{"f1": float("inf")}], "ok": 0.5})
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}")) == \
        {"val_loss": None, "per_class": [{"f1": None}], "ok": 0.5}


# ------------------------------------------------------------------------------------ 4. full disk

def test_full_disk_in_torch_save_names_the_path(tmp_path, monkeypatch):
    p = save_checkpoint(tmp_path / "m.pt")
    before = p.read_bytes()

    def zip_writer_fails(obj, f):
        f.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file")

    monkeypatch.setattr(torch, "save", zip_writer_fails)
    with pytest.raises(SaveError, match=r"could not save checkpoint .*m\.pt.*Free disk space"):
        checkpoint.save(checkpoint.read(p), p)
    assert p.read_bytes() == before and [x.name for x in tmp_path.iterdir()] == ["m.pt"]


def test_a_cache_that_cannot_be_written_does_not_stop_loading(tiny_fer_dir, monkeypatch, capsys):
    def zip_writer_fails(obj, f):
        raise RuntimeError("PytorchStreamWriter failed writing file")

    monkeypatch.setattr(torch, "save", zip_writer_fails)
    d = data.load(tiny_fer_dir, "train")
    assert len(d) == 7 * 24
    assert "could not write cache" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ 5. classes on resume

def test_resume_matches_classes_by_name(tmp_path):
    root = write_folder(tmp_path / "own", ["happy", "pain", "sad"], 20)
    cfg = dict(val_split="", val_fraction=0.25, train_split="all", epochs=2)
    run = train.fit(_cfg(root, tmp_path, classes=("happy", "pain", "sad"), **cfg), log=_quiet)
    train.resume(run, epochs=3, classes=("sad", "pain", "happy"), log=_quiet)  # same set, other order
    assert checkpoint.load(run).classes == ["happy", "pain", "sad"]
    (root / "pain").rename(root / "hurt")
    with pytest.raises(ValueError, match=r"cannot resume .*trained on classes \['happy', 'pain', 'sad'\]"):
        train.resume(run, epochs=4, log=_quiet)
    with pytest.raises(ValueError, match="cannot resume"):
        train.resume(run, epochs=4, classes=("happy", "sad"), log=_quiet)


# ------------------------------------------------------------------------------------ 6. data

def test_short_csv_rows_and_a_byte_order_mark(tmp_path):
    px = " ".join(["128"] * 2304)
    p = tmp_path / "fer.csv"
    # Excel writes a UTF-8 BOM before the header; one row has no Usage cell
    p.write_text("\ufeffemotion,pixels,Usage\n3," + px + ",Training\n4," + px + "\n", encoding="utf-8")
    with pytest.raises(data.BadInputError, match=r"fer\.csv:3: row has no Usage value"):
        data.load(p, "train")
    d = data.load(p, "train", skip_bad=True)
    assert len(d) == 1 and d.skipped[0][0].endswith(":3")


def test_broken_and_looping_symlinks_are_skipped_with_skip_bad(tmp_path):
    root = write_folder(tmp_path / "ds", ["happy", "sad"], 4)
    os.symlink(root / "nowhere.png", root / "happy" / "dangling.png")
    os.symlink(root / "sad" / "loop.png", root / "sad" / "loop.png")
    with pytest.raises(data.BadInputError, match="dangling.png"):
        data.load(root, "all")
    d = data.load(root, "all", skip_bad=True)
    assert len(d) == 8
    assert sorted(os.path.basename(p) for p, _ in d.skipped) == ["dangling.png", "loop.png"]


def test_an_empty_class_is_never_trained(tmp_path):
    root = write_folder(tmp_path / "ds", ["happy", "sad"], 8)
    (root / "angry").mkdir()
    with pytest.raises(data.BadInputError, match="empty class folder"):
        data.load(root, "all")
    with pytest.raises(data.BadInputError, match=r"class\(es\) \['angry'\] have no training images"):
        train.fit(_cfg(root, tmp_path, train_split="all", val_split="", val_fraction=0.25, skip_bad=True),
                  log=_quiet)

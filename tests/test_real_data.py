"""Checks on real FER2013 faces from ../shared (skipped with a reason when it is absent)."""
import pytest

from conftest import SHARED_FER
from ferlab import checkpoint, data, train
from ferlab.train import config

pytestmark = pytest.mark.skipif(not (SHARED_FER / "train").is_dir(),
                                reason=f"FER2013 not found at {SHARED_FER} (bring your own copy to run these)")


def test_short_real_run_learns(tmp_path):
    cfg = config.build("tiny", data=str(SHARED_FER), epochs=2, out=str(tmp_path), name="real", threads=2,
                       ema=0.0, tta="none")
    run = train.fit(cfg, log=lambda m: None)
    acc = checkpoint.load(run).meta["metrics"]["val_acc"]
    assert acc > 0.40, f"2 epochs of fernet_tiny reached only {acc:.3f} on val (chance 0.249)"


def test_real_folder_counts_match_dataset_card():
    d = data.load(SHARED_FER, "val")
    assert d.class_counts() == {"angry": 467, "disgust": 56, "fear": 496, "happy": 895, "neutral": 607,
                                "sad": 653, "surprise": 415}


def test_the_shipped_teacher_covers_fer2013_train_in_the_run_s_order():
    import numpy as np

    from ferlab.train import teacher

    train_split = data.load(SHARED_FER, "train")
    logits = teacher.load("fer2013", train_split, list(train_split.classes))
    assert logits.shape == (len(train_split), 7)
    agree = (logits.argmax(1) == train_split.labels).float().mean().item()
    assert agree > 0.8, f"the teacher agrees with FER2013's labels on only {agree:.3f} of train"
    assert np.isfinite(logits.numpy()).all()

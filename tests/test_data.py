import csv

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import write_folder
from ferlab import data, labels


def _write_csv(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["emotion", "pixels", "Usage"])
        w.writerows(rows)


def _px(value, n=2304):
    return " ".join([str(value)] * n)


def test_fer_csv_codes_map_by_name_not_position(tmp_path):
    p = tmp_path / "fer2013.csv"
    # code 4 is sad and 6 is neutral in FER2013; ferlab's order is alphabetical.
    _write_csv(p, [[4, _px(10), "Training"], [6, _px(20), "Training"], [0, _px(30), "PublicTest"],
                   [3, _px(40), "PrivateTest"]])
    train = data.load(p, "train")
    assert train.classes == list(labels.FER2013_CLASSES)
    assert [train.classes[i] for i in train.labels] == ["sad", "neutral"]
    assert train.images.shape == (2, 1, 48, 48) and train.images.dtype == torch.uint8
    assert int(train.images[0, 0, 0, 0]) == 10
    assert [train.classes[i] for i in data.load(p, "val").labels] == ["angry"]
    assert [train.classes[i] for i in data.load(p, "test").labels] == ["happy"]


def test_fer_csv_bad_rows_named_and_skippable(tmp_path):
    p = tmp_path / "bad.csv"
    _write_csv(p, [[3, _px(1), "Training"], [9, _px(1), "Training"], [2, _px(1, 100), "Training"]])
    with pytest.raises(data.BadInputError) as e:
        data.load(p, "train")
    msg = str(e.value)
    assert "bad.csv:3" in msg and "unknown FER2013 emotion code" in msg
    assert "bad.csv:4" in msg and "100 pixel values" in msg and "--skip-bad" in msg
    d = data.load(p, "train", skip_bad=True)
    assert len(d) == 1 and len(d.skipped) == 2


def test_fer_csv_resized_rgb(tmp_path):
    p = tmp_path / "f.csv"
    _write_csv(p, [[3, _px(100), "Training"]])
    d = data.load(p, "train", size=64, channels=3)
    assert d.images.shape == (1, 3, 64, 64)


def test_folder_layout_with_splits_and_counts(tiny_fer_dir):
    d = data.load(tiny_fer_dir, "train")
    assert d.classes == list(labels.FER2013_CLASSES)
    assert d.class_counts() == {c: 24 for c in labels.FER2013_CLASSES}
    assert data.available_splits(tiny_fer_dir) == ["train", "val"]
    with pytest.raises(data.BadInputError, match="no 'test' split; available: train, val"):
        data.load(tiny_fer_dir, "test")


def test_own_dataset_with_own_classes_size_and_colour(tmp_path):
    root = write_folder(tmp_path / "own", ["Happiness", "pain", "Sadness", "neutral", "anger", "surprised"], 3,
                        size=100, mode="RGB")
    d = data.load(root, "all", size=64, channels=3)
    assert d.classes == ["angry", "happy", "neutral", "pain", "sad", "surprise"]
    assert d.images.shape == (18, 3, 64, 64)
    # a val folder must map into the training label set by name
    with pytest.raises(data.BadInputError, match=r"\['pain'\] are not in the label set"):
        data.load(root, "all", classes=["angry", "happy", "neutral", "sad", "surprise"])


def test_corrupt_non_image_and_empty_folder(tmp_path):
    root = write_folder(tmp_path / "ds", ["happy", "sad"], 4)
    (root / "happy" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "sad" / "notes.txt").write_text("hello")
    (root / "angry").mkdir()
    with pytest.raises(data.BadInputError) as e:
        data.load(root, "all")
    msg = str(e.value)
    assert "broken.jpg: unreadable image" in msg and "notes.txt: not an image file" in msg
    assert "empty class folder" in msg
    d = data.load(root, "all", skip_bad=True)
    assert len(d) == 8
    assert sorted(p.split("/")[-1] for p, _ in d.skipped) == ["angry", "broken.jpg", "notes.txt"]


def test_truncated_png_is_reported(tmp_path):
    root = write_folder(tmp_path / "ds", ["happy"], 2)
    f = root / "happy" / "0000.png"
    f.write_bytes(f.read_bytes()[:60])
    with pytest.raises(data.BadInputError, match="0000.png: unreadable image"):
        data.load(root, "all")


def test_missing_path_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.load(tmp_path / "nope", "train")


def test_cache_hit_returns_same_tensors_and_invalidates_on_change(tiny_fer_dir, tmp_path):
    first = data.load(tiny_fer_dir, "train")
    cached = list(data.cache_dir().glob("*.pt"))
    assert len(cached) == 1
    second = data.load(tiny_fer_dir, "train")
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    assert len(list(data.cache_dir().glob("*.pt"))) == 1
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(tiny_fer_dir / "train" / "happy" / "new.png")
    third = data.load(tiny_fer_dir, "train")
    assert len(third) == len(first) + 1
    assert len(list(data.cache_dir().glob("*.pt"))) == 2


def test_damaged_cache_is_rebuilt(tiny_fer_dir):
    data.load(tiny_fer_dir, "val")
    (cache,) = data.cache_dir().glob("*.pt")
    cache.write_bytes(b"garbage")
    d = data.load(tiny_fer_dir, "val")
    assert len(d) == 56


def test_stratified_split_keeps_class_proportions(tiny_fer_dir):
    d = data.load(tiny_fer_dir, "train")
    tr, va = data.stratified_split(d, 0.25, seed=0)
    assert len(tr) + len(va) == len(d)
    assert set(va.class_counts().values()) == {6}
    assert not set(va.paths) & set(tr.paths)

"""The Recognizer, image reading, folders, videos and `ferlab predict`, on a small untrained checkpoint."""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import save_checkpoint
from ferlab.cli import main
from ferlab.labels import FER2013_CLASSES
from ferlab.predict import PredictConfig, Recognizer, read_image, run
from ferlab.preprocess import Preprocess
from ferlab.predict.video import IoUTracker, open_capture, process_video

skdata = pytest.importorskip("skimage.data")
FACE_X, FACE_Y = (178, 268), (63, 176)  # the astronaut's face in the 512x512 image


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", preprocess=Preprocess(crop_margin=0.1))


@pytest.fixture(scope="module")
def rec(ckpt) -> Recognizer:
    torch.set_num_threads(1)
    return Recognizer(ckpt)


@pytest.fixture(scope="module")
def astronaut():
    return skdata.astronaut()


def _inside_face(box) -> bool:
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    return FACE_X[0] < cx < FACE_X[1] and FACE_Y[0] < cy < FACE_Y[1]


def test_one_face_with_probabilities_in_checkpoint_order(rec, astronaut):
    res = rec.predict(astronaut)
    assert res.error is None and len(res.faces) == 1
    f = res.faces[0]
    assert _inside_face(f.box) and all(isinstance(v, int) for v in f.box)
    assert list(f.probs) == list(FER2013_CLASSES)
    assert sum(f.probs.values()) == pytest.approx(1, abs=1e-5)
    assert f.label == max(f.probs, key=f.probs.get)
    assert len(f.landmarks) == 5


def test_no_face_is_an_empty_list_not_an_error(rec):
    res = rec.predict(skdata.chelsea())
    assert res.faces == [] and res.error is None


def test_model_input_is_the_checkpoints_preprocessing(rec, astronaut):
    crop = astronaut[60:180, 170:290]
    expected = rec.preprocess.normalize(torch.from_numpy(np.stack([rec.preprocess.image_to_array(crop)]))).numpy()
    assert np.array_equal(rec.preprocess.model_input([crop]).numpy(), expected)
    assert expected.shape == (1, 1, 48, 48)


def test_batch_equals_single(rec, astronaut):
    images = [astronaut, skdata.chelsea(), np.ascontiguousarray(astronaut[::-1, ::-1]), astronaut[60:150, 180:270]]
    batch = rec.predict_batch(images)
    for image, b in zip(images, batch):
        single = rec.predict(image)
        assert [f.box for f in single.faces] == [f.box for f in b.faces]
        for fs, fb in zip(single.faces, b.faces):
            assert np.allclose(list(fs.probs.values()), list(fb.probs.values()), atol=1e-5)
    crops = np.stack([cv2.resize(astronaut[60:180, 170:290], (64, 64)), cv2.resize(astronaut[:200, :200], (64, 64))])
    together = rec.classify_faces(crops)
    apart = np.concatenate([rec.classify_faces(crops[i:i + 1]) for i in range(2)])
    assert np.allclose(together, apart, atol=1e-5)
    assert not np.allclose(together[0], together[1], atol=1e-4)  # different faces, different outputs


def test_small_inputs_are_taken_as_face_crops(rec, ckpt, astronaut):
    crop = cv2.resize(astronaut[60:180, 170:290], (48, 48), interpolation=cv2.INTER_AREA)
    res = rec.predict(crop)
    assert [(f.box, f.score, f.landmarks) for f in res.faces] == [((0, 0, 48, 48), 1.0, None)]
    assert np.allclose(list(res.faces[0].probs.values()), rec.classify_faces([crop])[0], atol=1e-6)
    whole = Recognizer(ckpt, detector="none").predict(astronaut)
    assert [f.box for f in whole.faces] == [(0, 0, 512, 512)]


def test_tta_averages_the_logits_of_the_crop_and_its_views(rec, ckpt, astronaut):
    from ferlab.predict.recognizer import softmax

    crop = cv2.resize(astronaut[60:180, 170:290], (48, 48), interpolation=cv2.INTER_AREA)
    x = rec.preprocess.model_input([crop])
    logits = lambda v: rec.classifier(v.contiguous().numpy())
    flip = Recognizer(ckpt, tta="flip")
    want = softmax((logits(x) + logits(x.flip(-1))) / 2 / flip.temperature)
    assert np.allclose(flip.classify_faces([crop]), want, atol=1e-6)
    assert not np.allclose(flip.classify_faces([crop]), rec.classify_faces([crop]), atol=1e-4)
    shifted = Recognizer(ckpt, tta="flip_shift").classify_faces([crop])
    assert shifted.shape == (1, 7) and not np.allclose(shifted, want, atol=1e-4)


def test_tta_auto_takes_the_checkpoints_and_unknown_names_fail(ckpt):
    from ferlab import checkpoint

    assert Recognizer("default", tta="auto").tta == checkpoint.load("default").meta["config"]["tta"] == "flip_shift"
    assert Recognizer(ckpt, tta="auto").tta == "none"  # a checkpoint without a recorded TTA
    with pytest.raises(ValueError, match="unknown tta 'ten_crop'; choose one of: none, flip, flip_shift, auto"):
        Recognizer(ckpt, tta="ten_crop")


def test_predict_cli_applies_tta(ckpt, astronaut, tmp_path):
    crop = cv2.resize(astronaut[60:180, 170:290], (48, 48), interpolation=cv2.INTER_AREA)
    Image.fromarray(crop).save(tmp_path / "face.png")
    out = tmp_path / "faces.json"
    assert main(["predict", str(tmp_path / "face.png"), "--model", str(ckpt), "--tta", "flip", "--json", str(out),
                 "--no-progress", "--out", str(tmp_path / "annotated")]) == 0
    probs = json.loads(out.read_text())[0]["faces"][0]["probs"]
    want = Recognizer(ckpt, tta="flip").classify_faces([crop])[0]
    assert np.allclose([probs[c] for c in FER2013_CLASSES], want, atol=1e-5)


@pytest.mark.parametrize("mode,fmt", [("L", "PNG"), ("RGBA", "PNG"), ("CMYK", "JPEG"), ("I;16", "PNG"),
                                      ("P", "PNG"), ("LA", "PNG"), ("1", "PNG")])
def test_odd_colour_modes_are_read_as_rgb(rec, astronaut, tmp_path, mode, fmt):
    pil = Image.fromarray(astronaut)
    if mode == "I;16":
        pil = Image.fromarray(np.asarray(pil.convert("L")).astype(np.uint16) * 257)
    else:
        pil = pil.convert(mode)
    path = tmp_path / f"x.{fmt.lower()}"
    pil.save(path, fmt)
    assert Image.open(path).mode == mode
    rgb = read_image(path)
    assert rgb.dtype == np.uint8 and rgb.shape == (512, 512, 3)
    if mode != "1":  # a 1-bit dither is no face for any detector
        faces = rec.predict(path).faces
        assert len(faces) == 1 and _inside_face(faces[0].box)


def test_transparent_pixels_become_white(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    assert (read_image(tmp_path / "t.png") == 255).all()


def test_exif_orientation_is_applied(rec, astronaut, tmp_path):
    # Orientation 6 = "rotate 90 degrees clockwise to display": the stored pixels are turned counter-clockwise.
    stored = Image.fromarray(np.rot90(astronaut, k=1).copy())
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    upright = read_image(tmp_path / "phone.jpg")
    assert upright.shape == (512, 512, 3)
    assert np.abs(upright.astype(int) - astronaut).mean() < 6
    res = rec.predict(tmp_path / "phone.jpg")
    assert len(res.faces) == 1 and _inside_face(res.faces[0].box)


def _folder(tmp_path, astronaut) -> Path:
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    Image.fromarray(astronaut).save(root / "astronaut.jpg")
    Image.fromarray(skdata.chelsea()).save(root / "sub" / "cat.png")
    data = (root / "astronaut.jpg").read_bytes()
    (root / "broken.jpg").write_bytes(data[: len(data) // 2])
    (root / "notes.txt").write_text("not a photo")
    (root / "sub" / "empty.png").write_bytes(b"")
    return root


def test_folder_with_bad_files_gives_error_records_and_processes_the_rest(ckpt, astronaut, tmp_path):
    root = _folder(tmp_path, astronaut)
    out = tmp_path / "out"
    report = run(PredictConfig(inputs=(str(root),), model=str(ckpt), out=str(out), csv=str(tmp_path / "faces.csv"),
                               progress=False))
    by_name = {Path(r["path"]).name: r for r in report.records}
    assert set(by_name) == {"astronaut.jpg", "broken.jpg", "notes.txt", "cat.png", "empty.png"}
    assert len(by_name["astronaut.jpg"]["faces"]) == 1 and by_name["astronaut.jpg"]["error"] is None
    assert by_name["cat.png"]["faces"] == [] and by_name["cat.png"]["error"] is None
    assert "truncated" in by_name["broken.jpg"]["error"]
    assert "not an image" in by_name["notes.txt"]["error"] and "not an image" in by_name["empty.png"]["error"]
    assert (report.errors, report.no_face) == (3, 1)
    assert sorted(Path(p).relative_to(out).as_posix() for p in report.annotated) == \
        ["photos/astronaut.jpg", "photos/sub/cat.png"]
    assert json.loads((out / "predictions.json").read_text()) == report.records
    rows = list(csv.DictReader(open(tmp_path / "faces.csv")))
    assert len(rows) == 5 and sum(bool(r["error"]) for r in rows) == 3
    assert rows[0].keys() >= {"path", "face", "x", "y", "w", "h", "score", "label", *FER2013_CLASSES}


def test_labelled_folder_gives_truth_csv_and_accuracy(ckpt, astronaut, tmp_path):
    root = tmp_path / "data"
    for cls, img in [("Happiness", astronaut), ("sad", astronaut[:, ::-1]), ("neutral", skdata.chelsea())]:
        (root / cls).mkdir(parents=True)
        Image.fromarray(np.ascontiguousarray(img)).save(root / cls / "x.png")
    report = run(PredictConfig(inputs=(str(root),), model=str(ckpt), labelled_csv=str(tmp_path / "truth.csv"),
                               progress=False))
    rows = list(csv.DictReader(open(tmp_path / "truth.csv")))
    assert [r["true"] for r in rows] == ["happy", "neutral", "sad"]
    for r, rec in zip(rows, report.records):
        expected = rec["faces"][0]["label"] if rec["faces"] else ""
        assert r["predicted"] == expected
    assert rows[1]["predicted"] == ""  # the cat: no face counts as a wrong answer
    assert report.labelled == 3
    assert report.accuracy == pytest.approx(sum(r["true"] == r["predicted"] for r in rows) / 3)


def _clip(path: Path, astronaut, frames: int = 20) -> Path:
    bgr = cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 240))
    assert writer.isOpened()
    for i in range(frames):
        frame = np.full((240, 320, 3), 90, np.uint8)
        x = 10 + 5 * i  # the face drifts right by 5 px a frame
        frame[20:220, x:x + 180] = bgr[30:230, 130:310]
        writer.write(frame)
    writer.release()
    return path


def test_video_rows_track_and_annotated_output(rec, astronaut, tmp_path):
    clip = _clip(tmp_path / "clip.mp4", astronaut)
    v = process_video(rec, clip, tmp_path / "out", stride=2, progress=False)
    assert v.error is None and (v.frames, v.frames_processed) == (20, 10)
    rows = list(csv.DictReader(open(v.csv)))
    assert [int(r["frame"]) for r in rows] == list(range(0, 20, 2))
    assert {r["track"] for r in rows} == {"1"}
    xs = [int(r["x"]) for r in rows]
    assert xs[-1] - xs[0] > 60  # the box followed the face
    summary = json.loads(Path(v.summary).read_text())
    assert [(t["id"], t["frames"], t["first_frame"], t["last_frame"]) for t in summary["tracks"]] == [(1, 10, 0, 18)]
    assert sum(summary["tracks"][0]["mean_probs"].values()) == pytest.approx(1, abs=1e-3)
    cap = open_capture(v.annotated)
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 20
    cap.release()


def test_unreadable_video_is_an_error_record(rec, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 100)
    assert "cannot open" in process_video(rec, bad, tmp_path / "out", progress=False).error


def test_missing_webcam_raises_a_clear_error():
    with pytest.raises(RuntimeError, match="no camera at index 97"):
        open_capture(97)


def test_tracker_smooths_and_splits_tracks():
    from ferlab.predict import FaceResult

    classes = ["a", "b"]

    def face(x, pa):
        return FaceResult((x, 0, 10, 10), 0.9, None, "a" if pa > 0.5 else "b", {"a": pa, "b": 1 - pa})

    tracker = IoUTracker(classes, iou_threshold=0.3, smoothing=0.5)
    t1 = tracker.update(0, [face(0, 1.0)])[0]
    t2, t3 = tracker.update(1, [face(1, 0.0), face(100, 0.2)])
    assert t2 is t1 and t3.id != t1.id
    assert t1.probs == pytest.approx([0.5, 0.5])  # 0.5 * 1.0 + 0.5 * 0.0
    assert t3.probs == pytest.approx([0.2, 0.8])  # a new track starts from its first frame


def test_cli_json_schema(ckpt, astronaut, tmp_path, capsys):
    Image.fromarray(astronaut).save(tmp_path / "a.png")
    Image.fromarray(skdata.coffee()).save(tmp_path / "c.jpg")
    out = tmp_path / "p.json"
    rc = main(["predict", str(tmp_path / "a.png"), str(tmp_path / "c.jpg"), str(tmp_path / "missing.jpg"),
               "--model", str(ckpt), "--json", str(out), "--no-progress"])
    assert rc == 0
    records = json.loads(out.read_text())
    assert [Path(r["path"]).name for r in records] == ["a.png", "c.jpg", "missing.jpg"]
    assert all(set(r) == {"path", "faces", "error"} for r in records)
    (face,) = records[0]["faces"]
    assert set(face) == {"box", "score", "landmarks", "label", "probs"}
    assert len(face["box"]) == 4 and all(isinstance(v, int) for v in face["box"]) and _inside_face(face["box"])
    assert np.array(face["landmarks"]).shape == (5, 2)
    assert list(face["probs"]) == list(FER2013_CLASSES) and face["label"] in FER2013_CLASSES
    assert records[1]["faces"] == [] and records[1]["error"] is None
    assert records[2]["faces"] == [] and "No such file" in records[2]["error"]
    assert "1 face(s)" in capsys.readouterr().out


def test_cli_demo_writes_images_and_json(ckpt, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "demo"
    assert main(["predict", "--demo", "--model", str(ckpt), "--out", str(out), "--no-progress"]) == 0
    records = json.loads((out / "predictions.json").read_text())
    assert [len(r["faces"]) for r in records] == [1, 1, 0]  # astronaut, Grace Hopper, the cat
    for name in ("astronaut.png", "grace_hopper.jpg", "chelsea.png"):
        img = np.asarray(Image.open(out / name))
        assert img.ndim == 3 and img.shape[0] > 200
    drawn = np.asarray(Image.open(out / "astronaut.png").convert("RGB")).astype(int)
    assert np.abs(drawn - skdata.astronaut()).max() > 100  # something was drawn on it


def test_cli_rejects_bad_options(ckpt, capsys):
    assert main(["predict", "--model", str(ckpt), "--stride", "0", "x.jpg"]) == 2
    assert "stride must be >= 1" in capsys.readouterr().err


def test_onnx_backend_matches_torch(ckpt, rec, astronaut):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("ferlab.export")
    onnx_rec = Recognizer(ckpt, backend="onnx")
    a, b = rec.predict(astronaut).faces[0], onnx_rec.predict(astronaut).faces[0]
    assert a.box == b.box
    assert np.allclose(list(a.probs.values()), list(b.probs.values()), atol=1e-4)


def test_bytes_of_a_non_image_are_not_an_exception(rec, tmp_path):
    p = tmp_path / "fake.jpg"
    p.write_bytes(io.BytesIO(b"GIF89a garbage").getvalue())
    res = rec.predict(p)
    assert res.faces == [] and res.error


def test_hostile_inputs_become_error_records_and_the_batch_goes_on(ckpt, astronaut, tmp_path, capsys):
    good = tmp_path / "good.png"
    Image.fromarray(astronaut).save(good)
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)  # reading it would block forever
    odd = Path(os.fsdecode(b"caf\xe9.png"))  # a file name that is not UTF-8
    Image.fromarray(astronaut).save(tmp_path / odd)
    thin = tmp_path / "thin.png"
    Image.fromarray(np.full((2000, 20, 3), 200, np.uint8)).save(thin)  # YuNet returns garbage rows here
    out_csv, out_json = tmp_path / "faces.csv", tmp_path / "p.json"
    code = main(["predict", str(good), str(fifo), str(tmp_path / odd), str(thin), "--model", str(ckpt),
                 "--csv", str(out_csv), "--json", str(out_json), "--no-progress"])
    assert code == 0
    records = {Path(r["path"]).name: r for r in json.loads(out_json.read_text())}
    assert "not a regular file" in records["pipe.png"]["error"]
    assert records["caf\\xe9.png"]["error"] is None and len(records["caf\\xe9.png"]["faces"]) == 1
    assert records["thin.png"] == {"path": str(thin), "faces": [], "error": None}
    rows = list(csv.DictReader(out_csv.open(encoding="utf-8")))
    assert [Path(r["path"]).name for r in rows] == ["good.png", "pipe.png", "caf\\xe9.png", "thin.png"]


def test_no_readable_input_exits_1(ckpt, tmp_path, capsys):
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    assert main(["predict", str(tmp_path / "junk.jpg"), str(tmp_path / "missing.jpg"), "--model", str(ckpt),
                 "--no-progress"]) == 1


def test_a_full_disk_for_annotated_images_keeps_every_record(ckpt, astronaut, tmp_path, monkeypatch):
    for i in range(3):
        Image.fromarray(astronaut).save(tmp_path / f"a{i}.png")

    def disk_full(self, *args, **kw):
        raise OSError(28, "No space left on device")

    real_save = Image.Image.save
    monkeypatch.setattr(Image.Image, "save", disk_full)
    report = run(PredictConfig(inputs=tuple(str(tmp_path / f"a{i}.png") for i in range(3)), model=str(ckpt),
                               out=str(tmp_path / "out"), progress=False))
    monkeypatch.setattr(Image.Image, "save", real_save)
    assert len(report.warnings) == 3 and "No space left" in report.warnings[0]
    saved = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert saved == report.records and all(len(r["faces"]) == 1 for r in saved)


def test_records_are_on_disk_before_the_job_ends(ckpt, astronaut, tmp_path, monkeypatch):
    from ferlab.predict import job

    for i in range(3):
        Image.fromarray(astronaut).save(tmp_path / f"a{i}.png")
    real = job.Recognizer.predict_batch
    calls = []

    def crash_on_second_batch(self, images, names=None):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, images, names)

    monkeypatch.setattr(job.Recognizer, "predict_batch", crash_on_second_batch)
    with pytest.raises(KeyboardInterrupt):
        run(PredictConfig(inputs=tuple(str(tmp_path / f"a{i}.png") for i in range(3)), model=str(ckpt),
                          json=str(tmp_path / "p.json"), batch_size=2, progress=False))
    assert [Path(r["path"]).name for r in json.loads((tmp_path / "p.json").read_text())] == ["a0.png", "a1.png"]

"""End-to-end photo and video benchmarks: the test photos, the JSON written, the faces and frames counted."""
from __future__ import annotations

import json

import cv2
import pytest
import torch

from conftest import save_checkpoint
from ferlab.bench.use import EXPECTED_FACES, bench_photo, bench_video, make_test_video, sample_photos
from ferlab.cli import main
from ferlab.predict.detect import make_detector


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("bench_use") / "m.pt")


def test_sample_photos_hold_the_expected_faces():
    photos = sample_photos()
    assert set(photos) == set(EXPECTED_FACES)
    detector = make_detector("yunet")
    for name, rgb in photos.items():
        assert rgb.shape == (480, 640, 3) and rgb.dtype == "uint8"
        assert len(detector.detect(rgb)) == EXPECTED_FACES[name], name
    assert EXPECTED_FACES["several_faces"] >= 4


def test_bench_photo_writes_json_with_latencies_and_faces(ckpt, tmp_path):
    out = tmp_path / "sub" / "photo.json"
    before = torch.get_num_threads(), cv2.getNumThreads()
    report = bench_photo(str(ckpt), threads=1, seconds=0.01, out=out)
    assert (torch.get_num_threads(), cv2.getNumThreads()) == before  # restored
    assert json.loads(out.read_text()) == report
    assert report["model"] == "fernet_tiny" and report["target_ms"] == 25.0
    assert report["threads"] == report["torch_threads"] == report["opencv_threads"] == 1
    assert len(report["load_avg_before"]) == len(report["load_avg_after"]) == 3
    assert all(n > 0 for n in report["jpeg_bytes"].values())
    assert set(report["backends"]) == {"torch", "onnx"}
    for b in report["backends"].values():
        photos = b["photos"]
        assert photos["one_face"]["array"]["faces"] == photos["one_face"]["jpeg"]["faces"] == 1
        assert photos["several_faces"]["array"]["faces"] >= 4 and photos["several_faces"]["jpeg"]["faces"] >= 4
        assert photos["no_face"]["array"]["faces"] == photos["no_face"]["jpeg"]["faces"] == 0
        for photo in photos.values():
            for kind in ("array", "jpeg"):
                m = photo[kind]
                assert 0 < m["latency_ms_p50"] <= m["latency_ms_p90"] and m["calls"] >= 3
        assert b["one_face_jpeg_ms"] == photos["one_face"]["jpeg"]["latency_ms_p50"]
        assert b["within_target"] == (b["one_face_jpeg_ms"] <= 25.0)
        assert b["classify_one_face"]["latency_ms_p50"] > 0
    stages = report["one_face_stages"]
    assert set(stages) == {"decode_jpeg", "detect", "align_preprocess"}
    assert all(s["latency_ms_p50"] > 0 for s in stages.values())
    # Every photo held its expected faces, so the only warning allowed is a busy machine.
    assert not [w for w in report["warnings"] if "expected" in w]


def test_bench_photo_rejects_unknown_backend(ckpt):
    with pytest.raises(ValueError, match="choose from: torch, onnx"):
        bench_photo(str(ckpt), backends=("tensorrt",))


def test_make_test_video_has_the_frames_asked_for(tmp_path):
    path = make_test_video(tmp_path / "v.mp4", frames=7)
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    assert n == 7


def test_bench_video_counts_frames_and_fps(ckpt, tmp_path):
    out = tmp_path / "video.json"
    report = bench_video(str(ckpt), backends=("onnx",), threads=1, frames=8, repeats=2, out=out)
    assert json.loads(out.read_text()) == report
    assert report["decode_only_fps"] > 0 and report["repeats"] == 2
    b = report["backends"]["onnx"]
    assert b["fps"] == b["annotated_video"]["fps"]
    for setting in ("annotated_video", "csv_only"):
        r = b[setting]
        assert r["frames"] == r["frames_processed"] == 8
        assert len(r["fps_runs"]) == 2 and all(f > 0 for f in r["fps_runs"])
        assert min(r["fps_runs"]) <= r["fps"] <= max(r["fps_runs"])
        # One face moving slowly: one track, found in every frame.
        assert r["tracks"] == 1 and r["face_detections"] == 8
    assert not [w for w in report["warnings"] if "tracks" in w]


def test_cli_bench_photo(ckpt, tmp_path, capsys):
    out = tmp_path / "photo.json"
    assert main(["bench", "photo", "--model", str(ckpt), "--backends", "torch", "--threads", "1",
                 "--seconds", "0.01", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report["backends"]) == {"torch"}
    printed = capsys.readouterr().out
    assert "torch: one face" in printed and f"written: {out}" in printed

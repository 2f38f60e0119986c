"""Inference benchmark: the JSON it writes and the choices it makes."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import save_checkpoint
from ferlab.bench.infer import BACKENDS, TORCH_VARIANTS, bench_infer
from ferlab.export import export_onnx


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("bench") / "m.pt")


def test_bench_writes_json_with_both_backends(ckpt, tmp_path):
    out = tmp_path / "sub" / "infer.json"
    before = torch.get_num_threads()
    # threads=1 keeps the test quick when another job holds the machine's other core.
    report = bench_infer([str(ckpt)], out, batch_sizes=(1, 3), threads=1, seconds=0.02)
    assert torch.get_num_threads() == before  # restored
    assert json.loads(out.read_text()) == report
    assert report["threads"] == report["torch_threads"] == 1
    assert len(report["load_avg_before"]) == len(report["load_avg_after"]) == 3
    assert bool(report["warnings"]) == (report["load_avg_before"][0] > 0.5 or report["load_avg_after"][0] > 1.5)
    (entry,) = report["models"]
    assert entry["model"] == "fernet_tiny" and entry["input"] == [1, 48, 48]
    for backend in ("torch", "onnx"):
        res = entry["backends"][backend]
        assert set(res["batches"]) == {"1", "3"}
        for b in res["batches"].values():
            assert b["faces_per_s"] > 0 and b["latency_ms_p50"] > 0
        assert res["one_face_latency_ms"] == res["batches"]["1"]["latency_ms_p50"] > 0
    assert entry["backends"]["onnx"]["export_check"]["max_abs_diff"] < 1e-3
    for b in entry["backends"]["torch"]["batches"].values():
        assert set(b["variants"]) == set(TORCH_VARIANTS)
        # The headline is the fastest variant that stayed numerically close to fp32 eager.
        chosen = b["variants"][b["variant"]]
        assert chosen["close"] and chosen["faces_per_s"] == b["faces_per_s"]
        assert all(v["faces_per_s"] <= b["faces_per_s"] for v in b["variants"].values() if v.get("close"))
        assert b["variants"]["eager"]["max_abs_diff"] == 0.0


def test_bench_registered_name_and_onnx_file(ckpt, tmp_path):
    onnx_file = export_onnx(ckpt, tmp_path / "m.onnx")
    report = bench_infer(["seed_cnn_a", str(onnx_file)], None, batch_sizes=(2,), threads=1, seconds=0.01,
                         backends=("torch", "onnx"))
    by_name = {m["ref"]: m for m in report["models"]}
    assert by_name["seed_cnn_a"]["input"] == [3, 48, 48]  # the architecture's own input
    assert by_name["seed_cnn_a"]["backends"]["onnx"]["batches"]["2"]["faces_per_s"] > 0
    from_file = by_name[str(onnx_file)]["backends"]
    assert "skipped" in from_file["torch"] and from_file["onnx"]["batches"]["2"]["faces_per_s"] > 0
    assert from_file["onnx"]["one_face_latency_ms"] is None  # batch 1 was not measured


def test_bench_rejects_unknown_backend(ckpt):
    with pytest.raises(ValueError, match="choose from: " + ", ".join(BACKENDS)):
        bench_infer([str(ckpt)], None, backends=("tensorrt",))

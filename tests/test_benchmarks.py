"""The benchmark scripts that feed the README: ensemble scoring and the levers table."""
import importlib.util
import json
import sys
from pathlib import Path

from conftest import save_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_ensemble_scores_members_and_combinations(tiny_fer_dir, tmp_path, monkeypatch):
    a = save_checkpoint(tmp_path / "a.pt", seed=1)
    b = save_checkpoint(tmp_path / "b.pt", seed=2)
    out = tmp_path / "ens.json"
    monkeypatch.setattr(sys, "argv", ["ensemble.py", str(a), str(b), "--data", str(tiny_fer_dir), "--tta", "flip",
                                      "--threads", "1", "--out", str(out)])
    _script("ensemble").main()
    r = json.loads(out.read_text())
    assert set(r["singles"]) == {str(a), str(b)} and all(0 <= v <= 1 for v in r["singles"].values())
    (combo,) = r["ensembles"]
    assert combo["members"] == [str(a), str(b)]
    assert abs(combo["gain_over_best_member"] - (combo["accuracy"] - max(r["singles"].values()))) < 1e-9


def test_levers_table_reports_difference_from_baseline(tmp_path):
    row = lambda lever, tta: {"lever": lever, "overrides": {}, "best_val_acc": tta - 0.01, "val_acc_tta": tta,
                              "val_macro_f1_tta": 0.5, "tta": "flip", "minutes": 2.0, "loadavg_before": 1.0}
    p = tmp_path / "levers.json"
    p.write_text(json.dumps({"recipe": "tiny", "epochs": 20, "levers": [row("baseline", 0.60), row("mixup 0.2", 0.615)]}))
    table = _script("table").levers_table(p)
    lines = table.splitlines()
    assert lines[0].startswith("| lever (tiny recipe, 20 epochs)")
    assert "| baseline | 59.0 % | 60.0 % (flip) | - |" in lines[2]
    assert "| mixup 0.2 | 60.5 % | 61.5 % (flip) | +1.5 |" in lines[3]


def test_onnx_accuracy_matches_pytorch_for_an_fp32_export(tiny_fer_dir, tmp_path, monkeypatch):
    from ferlab.export import export_onnx

    ckpt = save_checkpoint(tmp_path / "m.pt", seed=3)
    onnx_path = export_onnx(ckpt, tmp_path / "m.onnx")
    out = tmp_path / "acc.json"
    monkeypatch.setattr(sys, "argv", ["onnx_accuracy.py", str(ckpt), str(onnx_path), "--data", str(tiny_fer_dir),
                                      "--out", str(out)])
    _script("onnx_accuracy").main()
    r = json.loads(out.read_text())
    assert r["faces"] == 56
    assert r[str(onnx_path)] == r["torch_fp32"]  # same weights, same faces: same predictions

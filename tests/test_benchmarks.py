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


def test_distill_groups_seeds_of_one_setting_and_averages_them():
    cfg = lambda seed, lr, name: {"arch": "fernet_s", "lr": lr, "seed": seed, "name": name, "out": "runs"}
    entry = lambda name, seed, acc: {"run": name, "seed": seed, "best_val_acc": acc, "val_acc_tta": acc + 0.01,
                                     "val_macro_f1_tta": acc - 0.05}
    configs = [cfg(0, 0.2, "a"), cfg(0, 0.3, "b"), cfg(1, 0.2, "c"), cfg(2, 0.2, "d")]
    entries = [entry("a", 0, 0.65), entry("b", 0, 0.66), entry("c", 1, 0.66), entry("d", 2, 0.67)]
    lr02, lr03 = _script("distill").seed_groups(entries, configs)
    assert (lr02["runs"], lr02["seeds"], lr02["n"]) == (["a", "c", "d"], [0, 1, 2], 3)
    assert abs(lr02["best_val_acc"]["mean"] - 0.66) < 1e-9
    assert (lr02["best_val_acc"]["min"], lr02["best_val_acc"]["max"]) == (0.65, 0.67)
    assert abs(lr02["val_acc_tta"]["mean"] - 0.67) < 1e-9
    assert lr03["runs"] == ["b"] and lr03["best_val_acc"]["mean"] == 0.66
    # a run saved before an option existed is a seed of the runs that have it at its default
    older, newer = cfg(0, 0.2, "e"), {**cfg(1, 0.2, "f"), "fit_budget": False}
    (group,) = _script("distill").seed_groups([entry("e", 0, 0.65), entry("f", 1, 0.66)], [older, newer])
    assert group["runs"] == ["e", "f"]
    (_, other) = _script("distill").seed_groups([entry("e", 0, 0.65), entry("f", 1, 0.66)],
                                                 [older, {**newer, "fit_budget": True}])
    assert other["runs"] == ["f"]


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


def test_keras_compare_table_pairs_each_ferlab_run_with_the_keras_run_beside_it():
    kc = _script("keras_compare")
    run = lambda rate, **kw: {"train_images_per_s": rate, "eval_images_per_s": 2 * rate, "val_acc": 0.4,
                              "loadavg_before": [1.0], "others_cores": 0.01, "config": {"amp": True, "channels_last": True},
                              "versions": {"tensorflow": "2.21.0", "keras": "3.15.1"}, **kw}
    net = {"params": 10, "keras": [run(100), run(200), run(50)], "ferlab": [run(300), run(300), run(150)],
           "keras_versions": {"tensorflow": "2.21.0", "keras": "3.15.1"}}
    assert kc.paired_ratios(net) == [3.0, 1.5, 3.0]
    for key in ("train_images_per_s", "eval_images_per_s", "val_acc"):
        net[key] = {side: kc._summary([r[key] for r in net[side]]) for side in ("keras", "ferlab")}
        net[key]["ratio_ferlab_over_keras"] = net[key]["ferlab"]["median"] / net[key]["keras"]["median"]
    r = {"networks": {"seed_cnn_a": net}, "repeats": 3, "batch_size": 64, "threads": 2, "limit": 8192, "epochs": 2,
         "versions": {"torch": "2.14.1"}, "cpu": {"model": "AMD EPYC", "count": 2}, "seconds": 60}
    row = kc.table(r).splitlines()[2]
    # medians 100 and 300: 3.00x; the pairs' median 3.00x, their range 1.50-3.00
    assert "**3.00x**" in row and "3.00x (1.50-3.00)" in row


def test_conv_backward_shifted_weight_gradient_is_oneDNNs():
    import torch

    mod = _script("conv_backward")
    torch.manual_seed(0)
    x, g = torch.randn(3, 5, 7, 6), torch.randn(3, 4, 7, 6)  # odd sizes: rows, images and channels must not mix
    w = torch.randn(4, 5, 3, 3)
    want = torch.ops.aten.convolution_backward(g, x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1,
                                               (False, True, False))[1]
    torch.testing.assert_close(mod.shifted_weight_grad(g, x), want, rtol=1e-4, atol=1e-4)

from ferlab.bench import train as bench
from ferlab import train
from ferlab.train import config
from ferlab.data.augment_config import AugmentRanges


def test_accuracy_at_time_points():
    rows = [{"val_acc": 0.4, "elapsed": 50.0}, {"val_acc": 0.6, "elapsed": 110.0}, {"val_acc": 0.55, "elapsed": 170.0}]
    assert bench.accuracy_at(rows, 1) == 0.4          # epochs done within 60 s
    assert bench.accuracy_at(rows, 2) == 0.6          # the best so far, not the last
    assert bench.accuracy_at(rows, 5) is None         # the run ended before 5 minutes: no claim
    assert bench.accuracy_at([], 1) is None


def test_summarize_run_reports_throughput_and_accuracy(tiny_fer_dir, tmp_path):
    cfg = config.build(data=str(tiny_fer_dir), arch="fernet_tiny", epochs=2, batch_size=32, out=str(tmp_path),
                       name="b", threads=1, amp=False, augment="light", tta="none", chance_epochs=99)
    run = train.fit(cfg, log=lambda m: None)
    r = bench.summarize_run(run, "custom", peaks=(100.0, 400.0), load_before=(0.5, 0.5, 0.5))
    assert r["epochs_run"] == 2 and r["model"] == "fernet_tiny"
    assert r["images_per_s_median"] > 0
    assert r["peak_used"] == "fp32" and r["matmul_peak_gflops_fp32"] == 100.0
    assert abs(r["fraction_of_peak"] - r["train_gflops"] / 100.0) < 1e-12
    assert abs(r["mflops_per_image"] - 9.5) < 0.1
    assert 0 <= r["val_acc_tta"] <= 1 and r["best_val_acc"] is not None
    assert r["val_acc_at_minutes"]["90"] is None

    # a SAM run computes two forward and backward passes per image: twice the GFLOP/s at one img/s
    import yaml
    saved = yaml.safe_load((run / "config.yaml").read_text())
    (run / "config.yaml").write_text(yaml.safe_dump({**saved, "sam": 0.05}))
    s = bench.summarize_run(run, "custom", peaks=(100.0, 400.0), load_before=(0.5, 0.5, 0.5))
    assert s["images_per_s_median"] == r["images_per_s_median"]
    assert abs(s["train_gflops"] - 2 * r["train_gflops"]) < 1e-9


def test_recipe_label_names_the_flags_that_differ():
    cfg = config.build("fast", data="d", arch="fernet2_s", train_crop=40, name="x", max_minutes=10)
    assert bench.recipe_label(cfg, "fast") == "fast (--arch fernet2_s, --train-crop 40)"
    assert bench.recipe_label(config.build("fast", data="d", out="elsewhere"), "fast") == "fast"
    assert bench.recipe_label(cfg, "my own") == "my own"
    ranges = config.build("default", data="d", augment="photo", aug=AugmentRanges(zoom=0.2, shift=0.12))
    assert bench.recipe_label(ranges, "default") == "default (--augment photo, --zoom 0.2, --shift 0.12)"

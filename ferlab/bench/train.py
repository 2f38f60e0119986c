"""Training benchmark: a recipe for a wall-clock budget, with accuracy at fixed time points and
achieved GFLOP/s against a matmul peak measured in the same process."""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import torch

from .. import checkpoint
from ..models import create_model, get_spec, summarize
from .. import history
from ..train import config as config_mod, resize
from ..fileio import write_json

TIME_POINTS_MIN = (2, 5, 10, 20, 30, 45, 60, 90)


def matmul_peak(dtype: torch.dtype = torch.float32, n: int = 2048, seconds: float = 2.0) -> float:
    """Sustained GFLOP/s of an n x n matmul with the current thread setting."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
    return 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9


def accuracy_at(rows: list[dict], minutes: float) -> float | None:
    """Best validation accuracy among epochs finished within `minutes` of training time; None when
    the run ended before that time point (it says nothing about what a longer run would reach)."""
    if not rows or rows[-1]["elapsed"] < minutes * 60:
        return None
    done = [r["val_acc"] for r in rows if r["elapsed"] <= minutes * 60]
    return max(done) if done else None


def bench_train(recipe: str, data: str, out: str | Path, budget_minutes: float = 0.0, runs_dir: str = "runs",
                name: str = "", **overrides) -> dict:
    """Train `recipe` on `data` (optionally cut at `budget_minutes`) and write a JSON of figures."""
    from ..train.loop import fit

    # One stage is timed: a recipe's follow-up stage (`then`) is a run of its own, not part of the curve.
    cfg = config_mod.build(recipe, data=data, out=runs_dir, name=name or f"bench-{recipe}-{time.strftime('%Y%m%d-%H%M%S')}",
                           **({"max_minutes": budget_minutes} if budget_minutes else {}), **{"then": "", **overrides})
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    load_before = os.getloadavg()
    peaks = (matmul_peak(torch.float32), matmul_peak(torch.bfloat16))
    t0 = time.perf_counter()
    run_dir = fit(cfg)
    result = summarize_run(run_dir, recipe, peaks, load_before, wall_minutes=(time.perf_counter() - t0) / 60)
    write_json(out, result)
    return result


#: config fields that say where and how long a run went, not what it trained (`then`: the benchmark
#: times one stage)
_NOT_RECIPE = {"data", "out", "name", "max_minutes", "threads", "then"}


def recipe_label(cfg: config_mod.TrainConfig, recipe: str) -> str:
    """`recipe`, plus the flags by which `cfg` departs from it (e.g. "fast (--arch fernet2_s)")."""
    if recipe not in config_mod.RECIPES:
        return recipe
    base = config_mod.build(recipe, data=cfg.data).to_dict()
    flag = lambda k, v: f"--{k.replace('_', '-')} {v}"
    diff = []
    for k, v in cfg.to_dict().items():
        if k in _NOT_RECIPE or v == base.get(k):
            continue
        if isinstance(v, dict):  # nested options (the augmentation ranges) are flags of their own
            diff += [flag(kk, vv) for kk, vv in v.items() if vv != (base.get(k) or {}).get(kk)]
        else:
            diff.append(flag(k, v))
    return f"{recipe} ({', '.join(diff)})" if diff else recipe


def summarize_run(run_dir: str | Path, recipe: str, peaks: tuple[float, float] | None = None,
                  load_before: tuple[float, ...] | None = None, wall_minutes: float | None = None) -> dict:
    """The benchmark figures of a finished run directory (metrics.csv, eval_val.json, best.pt).

    `peaks` are (fp32, bf16) matmul GFLOP/s measured alongside the run; None measures them now,
    which is only comparable when the machine is as quiet as it was during training.
    """
    run_dir = Path(run_dir)
    cfg = config_mod.build(file=run_dir / "config.yaml")
    spec = get_spec(cfg.arch)
    size = cfg.image_size or spec.input_size
    macs = summarize(create_model(cfg.arch, in_chans=cfg.channels or spec.in_chans, input_size=size))["macs"]
    if load_before is None:
        load_before = os.getloadavg()
    peak32, peak16 = peaks or (matmul_peak(torch.float32), matmul_peak(torch.bfloat16))
    rows = history.read(run_dir / "metrics.csv")
    if not rows:
        raise ValueError(f"{run_dir}/metrics.csv has no epochs")
    ips = sorted(r["images_per_s"] for r in rows)
    median_ips = ips[len(ips) // 2]
    # a conv net's cost scales with pixels: --train-crop and --progressive train on (side/size)^2 of
    # the full-face FLOPs (runs older than the `side` column predate --progressive: the crop, or the full size)
    crop = resize.side(cfg, size, 1, 1)
    passes = 2 if cfg.sam else 1  # SAM: a second forward and backward per step, at the moved weights
    # forward + backward ~ 3x forward; the median epoch's rate
    gflops = sorted(passes * r["images_per_s"] * 3 * 2 * macs * ((r.get("side") or crop) / size) ** 2 / 1e9
                    for r in rows)
    train_gflops = gflops[len(gflops) // 2]
    peak = peak16 if cfg.amp else peak32
    final = json.loads((run_dir / "eval_val.json").read_text())
    best = checkpoint.read(run_dir / "best.pt")["metrics"]
    return {
        "recipe": recipe_label(cfg, recipe), "config": cfg.to_dict(), "run_dir": str(run_dir), "model": cfg.arch,
        "params": best.get("params"), "mflops_per_image": 2 * macs / 1e6,
        "epochs_run": len(rows), "train_minutes": rows[-1]["elapsed"] / 60, "wall_minutes": wall_minutes,
        "images_per_s_median": median_ips, "train_gflops": train_gflops,
        "matmul_peak_gflops_fp32": peak32, "matmul_peak_gflops_bf16": peak16,
        "peaks_measured": "with the run" if peaks else "after the run",
        "fraction_of_peak": train_gflops / peak, "peak_used": "bf16" if cfg.amp else "fp32",
        "val_acc_at_minutes": {str(t): accuracy_at(rows, t) for t in TIME_POINTS_MIN},
        "best_val_acc": best.get("val_acc"), "val_acc_tta": final["accuracy"], "val_macro_f1_tta": final["macro_f1"],
        "tta": final.get("tta"),
        "loadavg_before": list(load_before), "loadavg_after": list(os.getloadavg()), "threads": torch.get_num_threads(),
        "machine": {"cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine()},
        "torch": str(torch.__version__), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }

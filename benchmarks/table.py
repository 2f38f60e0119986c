"""Render the README's results tables from benchmark JSON files (so no figure is typed by hand).

    python benchmarks/table.py benchmarks/results/train_*.json
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
        at = r["val_acc_at_minutes"]
        lines.append(
            f"| {r['recipe']} | {r['model']} | {r['params']:,} | {r['mflops_per_image']:.0f} | "
            f"{r['images_per_s_median']:.0f} | {r['train_gflops']:.0f} ({100 * r['fraction_of_peak']:.0f} % of "
            f"{r['peak_used']} matmul {r['matmul_peak_gflops_' + r['peak_used']]:.0f}) | {r['train_minutes']:.1f} | "
            f"{fmt(at.get('10'))} | {fmt(at.get('30'))} | {fmt(at.get('60'))} | {fmt(r['best_val_acc'])} | "
            f"{fmt(r['val_acc_tta'])} ({r['tta']}) | {r['val_macro_f1_tta']:.3f} | "
            f"{r['loadavg_before'][0]:.1f} -> {r['loadavg_after'][0]:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(train_table([Path(p) for p in sys.argv[1:]]))

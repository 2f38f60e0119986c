"""Figures of training histories (rows of metrics.csv as `ferlab.history.read` returns them)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ._canvas import figure, save


def stage_starts(rows: Sequence[dict]) -> list[tuple[float, float | None]]:
    """(epoch, stage) where a fine-tuning run's `stage` column changes value, first row excluded."""
    if not rows or "stage" not in rows[0]:
        return []
    return [(cur["epoch"], cur["stage"]) for prev, cur in zip(rows, rows[1:]) if cur["stage"] != prev["stage"]]


def _integer_epochs(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)


def _mark_stages(ax, rows: Sequence[dict]) -> None:
    for epoch, stage in stage_starts(rows):
        ax.axvline(epoch - 0.5, color="tab:purple", lw=1, ls="--")
        name = "stage" if stage is None else f"stage {stage:g}"
        ax.text(epoch - 0.4, 0.02, name, transform=ax.get_xaxis_transform(), color="tab:purple", fontsize=8)


def plot_curves(rows: Sequence[dict], out: str | Path, title: str = "", best_epoch: int | None = None) -> Path:
    """Train vs validation accuracy and loss per epoch, from metrics.csv rows (`ferlab.history.read`).

    `best_epoch` (the epoch of best.pt) is marked on both panels; a `stage` column (fine-tuning
    runs) draws a dashed line where each new stage starts."""
    ep = [r["epoch"] for r in rows]
    fig = figure(10, 4)
    axes = fig.subplots(1, 2)
    for ax, key in zip(axes, ("acc", "loss")):
        ax.plot(ep, [r[f"train_{key}"] for r in rows], label="train")
        val = [r[f"val_{key}"] for r in rows]
        ax.plot(ep, val, label="val")
        if best_epoch is not None and best_epoch in ep:
            ax.axvline(best_epoch, color="tab:red", lw=1, ls=":")
            ax.plot([best_epoch], [val[ep.index(best_epoch)]], "o", color="tab:red",
                    label=f"best epoch {best_epoch}")
        _mark_stages(ax, rows)
        _integer_epochs(ax)
        ax.set_ylabel(key)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return save(fig, out)


def plot_class_curves(rows: Sequence[dict], classes: Sequence[str], out: str | Path, title: str = "") -> Path:
    """Validation precision and recall of each class per epoch (columns `val_precision_<class>` and
    `val_recall_<class>` of metrics.csv)."""
    ep = [r["epoch"] for r in rows]
    fig = figure(10, 4)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, key in zip(axes, ("precision", "recall")):
        for c in classes:
            ax.plot(ep, [r.get(f"val_{key}_{c}") for r in rows], label=c, lw=1.3)
        _mark_stages(ax, rows)
        _integer_epochs(ax)
        ax.set_ylim(0, 1)
        ax.set_title(f"val {key} per class", fontsize=10)
    axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    if title:
        fig.suptitle(title)
    return save(fig, out)


def plot_compare(runs: Sequence[tuple[str, Sequence[dict]]], out: str | Path,
                 f1: Mapping[str, Mapping[str, float]] | None = None, title: str = "") -> Path:
    """Runs side by side: validation accuracy and loss per epoch overlaid (one colour per run,
    train accuracy dashed), and when `f1` ({run: {class: F1}}) is given, per-class F1 bars."""
    panels = 3 if f1 else 2
    fig = figure(4.6 * panels, 4)
    axes = fig.subplots(1, panels)
    for i, (name, rows) in enumerate(runs):
        colour = f"C{i % 10}"
        ep = [r["epoch"] for r in rows]
        axes[0].plot(ep, [r["val_acc"] for r in rows], color=colour, label=name)
        axes[0].plot(ep, [r["train_acc"] for r in rows], color=colour, ls="--", lw=0.9, alpha=0.7)
        axes[1].plot(ep, [r["val_loss"] for r in rows], color=colour, label=name)
    for ax, what in zip(axes, ("accuracy (val solid, train dashed)", "val loss")):
        _integer_epochs(ax)
        ax.set_title(what, fontsize=10)
    axes[0].legend(fontsize=8)
    if f1:
        ax = axes[2]
        names = list(f1)
        classes = list(dict.fromkeys(c for per in f1.values() for c in per))
        width = 0.8 / len(names)
        x = np.arange(len(classes))
        colour_of = {name: f"C{i % 10}" for i, (name, _) in enumerate(runs)}
        for i, name in enumerate(names):
            ax.bar(x + (i - (len(names) - 1) / 2) * width, [f1[name].get(c, 0.0) for c in classes], width,
                   color=colour_of.get(name, f"C{i % 10}"), label=name)
        ax.set_xticks(x, classes, rotation=45, ha="right", fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_title("val F1 per class", fontsize=10)
        ax.grid(alpha=0.3, axis="y")
    if title:
        fig.suptitle(title)
    return save(fig, out)

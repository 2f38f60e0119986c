"""Figures of an evaluation: confusion matrices and reliability diagrams."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._canvas import figure, save


def _matrix(ax, shown: np.ndarray, text: Sequence[Sequence[str]], classes: Sequence[str], vmax: float) -> None:
    ax.imshow(shown, cmap="Blues", vmin=0, vmax=vmax)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, text[i][j], ha="center", va="center", fontsize=7,
                    color="white" if shown[i, j] > 0.5 * vmax else "black")


def _normalised(cm: np.ndarray) -> np.ndarray:
    return cm / np.maximum(cm.sum(1, keepdims=True), 1)


def plot_confusion(m: dict, out: str | Path, title: str = "") -> Path:
    """Row-normalised confusion matrix with counts (`m` as `evaluate.metrics.metrics` returns it)."""
    cm = np.asarray(m["confusion"], dtype=float)
    classes = m["classes"]
    norm = _normalised(cm)
    fig = figure(1 + 0.8 * len(classes), 1 + 0.7 * len(classes))
    ax = fig.add_subplot()
    _matrix(ax, norm, [[f"{norm[i, j]:.2f}\n{int(cm[i, j])}" for j in range(len(classes))]
                       for i in range(len(classes))], classes, 1.0)
    ax.set_title(title or f"accuracy {m['accuracy']:.3f}")
    return save(fig, out)


def plot_confusion_pair(m: dict, out: str | Path, title: str = "") -> Path:
    """The confusion matrix twice, side by side: counts (shaded by count) and row-normalised
    (each true class sums to 1, so the diagonal is that class's recall)."""
    cm = np.asarray(m["confusion"], dtype=float)
    classes = m["classes"]
    k = len(classes)
    norm = _normalised(cm)
    fig = figure(2 * (1 + 0.75 * k), 1.3 + 0.7 * k)
    left, right = fig.subplots(1, 2)
    _matrix(left, cm, [[str(int(cm[i, j])) for j in range(k)] for i in range(k)], classes, max(cm.max(), 1))
    left.set_title("counts", fontsize=10)
    _matrix(right, norm, [[f"{norm[i, j]:.2f}" for j in range(k)] for i in range(k)], classes, 1.0)
    right.set_title("normalised by true class (rows sum to 1)", fontsize=10)
    fig.suptitle(title or f"accuracy {m['accuracy']:.3f}", fontsize=11)
    return save(fig, out)


def plot_reliability(curves: Sequence[tuple[str, dict]], out: str | Path, title: str = "") -> Path:
    """Reliability diagram: accuracy against confidence per bin, one line per (label, bins) with
    the bins of `evaluate.calibration.reliability`; the diagonal is perfect calibration."""
    fig = figure(4.6, 4.4)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="gray", lw=1, ls="--", label="perfect")
    for name, r in curves:
        used = [i for i, n in enumerate(r["count"]) if n > 0]
        ax.plot([r["confidence"][i] for i in used], [r["accuracy"][i] for i in used], marker="o", ms=3,
                label=f"{name} (ECE {100 * r['ece']:.1f} %)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top-class probability)")
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(title or "reliability", fontsize=10)
    return save(fig, out)

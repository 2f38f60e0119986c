"""PNG figures from arrays: training curves, confusion matrices, and the explanation figures of
`ferlab explain` (attribution overlays, feature-map and filter grids). Nothing here knows a
model, a checkpoint or an explainer: callers pass numbers and images."""
from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np


@functools.cache
def _pyplot():
    # Imported on first use, so importing this module (as `explain` does) neither loads pyplot nor
    # changes the backend of whoever imports it.
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def plot_curves(rows: Sequence[dict], out: str | Path, title: str = "") -> Path:
    """Train vs validation accuracy and loss per epoch, from metrics.csv rows (`train.history.read`)."""
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    ep = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key in zip(axes, ("acc", "loss")):
        ax.plot(ep, [r[f"train_{key}"] for r in rows], label="train")
        ax.plot(ep, [r[f"val_{key}"] for r in rows], label="val")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return Path(out)


def plot_confusion(m: dict, out: str | Path, title: str = "") -> Path:
    """Row-normalised confusion matrix with counts."""
    plt = _pyplot()
    cm = np.asarray(m["confusion"], dtype=float)
    classes = m["classes"]
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1 + 0.8 * len(classes), 1 + 0.7 * len(classes)))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{norm[i, j]:.2f}\n{int(cm[i, j])}", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_title(title or f"accuracy {m['accuracy']:.3f}")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return Path(out)


def plot_reliability(curves: Sequence[tuple[str, dict]], out: str | Path, title: str = "") -> Path:
    """Reliability diagram: accuracy against confidence per bin, one line per (label, bins) with
    the bins of `evaluate.calibration.reliability`; the diagonal is perfect calibration."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
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
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return Path(out)


# ---------------------------------------------------------------------------------------------
# Explanation figures (matplotlib's Agg canvas, no pyplot state)


def _figure(w: float, h: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), dpi=100, layout="constrained")


def _show(ax, image: np.ndarray) -> None:
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest")
    ax.set_axis_off()


def attribution_figure(image: np.ndarray, maps: Sequence[tuple[str, np.ndarray]], path: str | Path,
                       probs: dict[str, float] | None = None, title: str = "") -> Path:
    """Save the face, one overlay per (title, map), and (if given) a probability bar chart as PNG."""
    panels = 1 + len(maps) + (probs is not None)
    cols = min(panels, 4)
    rows = -(-panels // cols)
    fig = _figure(2.6 * cols, 2.7 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    _show(axes[0], image)
    axes[0].set_title("model input", fontsize=9)
    for ax, (name, m) in zip(axes[1:], maps):
        _show(ax, image)
        ax.imshow(m, cmap="jet", alpha=0.45, vmin=0, vmax=1, interpolation="bilinear")
        ax.set_title(name, fontsize=9)
    if probs is not None:
        ax = axes[len(maps) + 1]
        names = list(probs)
        ax.barh(names[::-1], [probs[c] for c in names[::-1]], color="tab:blue")
        ax.set_xlim(0, 1)
        ax.tick_params(labelsize=8)
        ax.set_title("probabilities", fontsize=9)
    for ax in axes[panels:]:
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def grid_figure(images: np.ndarray, labels: Sequence[str], path: str | Path, title: str = "",
                cmap: str = "viridis", max_cols: int = 8) -> Path:
    """Save images (N, H, W) or (N, H, W, 3) as one labelled mosaic; float maps are coloured with
    `cmap`, each scaled to its own range (uint8 images are shown as they are)."""
    tiles = _rgb_tiles(np.asarray(images), cmap)  # (N, h, w, 3) uint8
    n, h, w = tiles.shape[:3]
    cols = min(n, max_cols)
    rows = -(-n // cols)
    gap = max(1, h // 8)
    mosaic = np.full((rows * (h + gap) + gap, cols * (w + gap) + gap, 3), 255, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        mosaic[gap + r * (h + gap):gap + r * (h + gap) + h, gap + c * (w + gap):gap + c * (w + gap) + w] = t
    # One imshow for the whole grid: a subplot per tile costs about a second per 64 tiles.
    fig = _figure(1.2 * cols + 0.3, 1.25 * rows + 0.5)
    ax = fig.add_subplot()
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_axis_off()
    for i, label in enumerate(labels[:n]):
        r, c = divmod(i, cols)
        ax.text(gap + c * (w + gap), gap + r * (h + gap) - 0.3, label, fontsize=6, va="bottom", ha="left")
    if title:
        ax.set_title(title, fontsize=9)
    return _save(fig, path)


def _rgb_tiles(images: np.ndarray, cmap: str) -> np.ndarray:
    if images.dtype == np.uint8:
        return np.repeat(images[..., None], 3, axis=3) if images.ndim == 3 else images
    from matplotlib import colormaps

    a = images.astype(np.float64)
    lo = a.min(axis=(1, 2), keepdims=True)
    span = a.max(axis=(1, 2), keepdims=True) - lo
    a = np.where(span > 0, (a - lo) / np.where(span > 0, span, 1), 0.0)
    return (colormaps[cmap](a)[..., :3] * 255).round().astype(np.uint8)


def activation_figure(layer: str, maps: np.ndarray, path: str | Path, max_maps: int = 64) -> Path:
    """Save the first `max_maps` channels of one input's feature maps (C, h, w) as a grid."""
    maps = np.asarray(maps, dtype=np.float32)[:max_maps]
    labels = [f"{i}" for i in range(len(maps))]
    return grid_figure(maps, labels, path, title=f"{layer}: {len(maps)} feature map(s), each scaled to its own range")


def filter_figure(layer: str, filters: Sequence[int], images: np.ndarray, start: Sequence[float],
                  end: Sequence[float], path: str | Path) -> Path:
    """Gradient-ascent images of conv filters, labelled with each filter's mean activation start->end."""
    labels = [f"#{f} {a0:.2f}->{a:.2f}" for f, a0, a in zip(filters, start, end)]
    return grid_figure(images, labels, path, title=f"{layer}: inputs maximising each filter (mean activation start->end)")


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path

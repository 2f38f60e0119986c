"""Explanation figures: attribution overlays and heatmaps, masked faces, feature-map and filter
grids, conv kernels and labelled face galleries. Callers pass images (uint8) and maps (float)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._canvas import HEAT_CMAP, OVERLAY_ALPHA, figure, save, show


def _colourbar(fig, axes, label: str) -> None:
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    bar = fig.colorbar(ScalarMappable(Normalize(0, 1), HEAT_CMAP), ax=axes, shrink=0.8, pad=0.02)
    bar.set_label(label, fontsize=8)
    bar.ax.tick_params(labelsize=7)


def _probs(ax, probs: dict[str, float]) -> None:
    names = list(probs)
    ax.barh(names[::-1], [probs[c] for c in names[::-1]], color="tab:blue")
    ax.set_xlim(0, 1)
    ax.tick_params(labelsize=8)
    ax.set_title("probabilities", fontsize=9)


def attribution_figure(image: np.ndarray, maps: Sequence[tuple[str, np.ndarray]], path: str | Path,
                       probs: dict[str, float] | None = None, title: str = "", shared: bool = False) -> Path:
    """Save the face, one overlay per (title, map in [0, 1]) and (if given) a probability bar chart.

    One map also gets a panel of its own: the heatmap alone, with its colour bar. `shared=True`
    says the maps were scaled together (1 = the largest value over all of them), so panels compare
    in strength; otherwise each map was scaled to its own peak. The colour bar says which."""
    single = len(maps) == 1
    panels = 1 + len(maps) + single + (probs is not None)
    cols = min(panels, 4)
    rows = -(-panels // cols)
    fig = figure(2.7 * cols + 0.6, 2.7 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    show(axes[0], image)
    axes[0].set_title("model input", fontsize=9)
    for ax, (name, m) in zip(axes[1:], maps):
        show(ax, image)
        ax.imshow(m, cmap=HEAT_CMAP, alpha=OVERLAY_ALPHA, vmin=0, vmax=1, interpolation="bilinear")
        ax.set_title(name, fontsize=9)
    label = "one scale for all panels (1 = largest)" if shared else "1 = the map's own peak"
    used = 1 + len(maps)
    if single:
        ax = axes[used]
        ax.imshow(maps[0][1], cmap=HEAT_CMAP, vmin=0, vmax=1, interpolation="nearest")
        ax.set_axis_off()
        ax.set_title("heatmap", fontsize=9)
        _colourbar(fig, ax, label)
        used += 1
    else:
        _colourbar(fig, list(axes[1:used]), label)
    if probs is not None:
        _probs(axes[used], probs)
    for ax in axes[panels:]:
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    return save(fig, path)


def masked_figure(image: np.ndarray, heat: np.ndarray, masked: np.ndarray, keep: float, path: str | Path,
                  probs: dict[str, float] | None = None, title: str = "") -> Path:
    """The face, its saliency heatmap (with colour bar) and the face masked to its `keep` most
    salient pixels (the rest black)."""
    panels = 3 + (probs is not None)
    fig = figure(2.7 * panels + 0.6, 2.9)
    axes = fig.subplots(1, panels)
    show(axes[0], image)
    axes[0].set_title("model input", fontsize=9)
    axes[1].imshow(heat, cmap=HEAT_CMAP, vmin=0, vmax=1, interpolation="nearest")
    axes[1].set_axis_off()
    axes[1].set_title("saliency", fontsize=9)
    _colourbar(fig, axes[1], "1 = the map's peak")
    show(axes[2], masked)
    axes[2].set_title(f"top {100 * keep:g} % of pixels", fontsize=9)
    if probs is not None:
        _probs(axes[3], probs)
    if title:
        fig.suptitle(title, fontsize=10)
    return save(fig, path)


def grid_figure(images: np.ndarray, labels: Sequence[str], path: str | Path, title: str = "",
                cmap: str = "viridis", max_cols: int = 8, label_colours: Sequence[str] | None = None) -> Path:
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
    fig = figure(1.2 * cols + 0.3, 1.25 * rows + 0.5)
    ax = fig.add_subplot()
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_axis_off()
    for i, label in enumerate(labels[:n]):
        r, c = divmod(i, cols)
        colour = label_colours[i] if label_colours is not None else "black"
        ax.text(gap + c * (w + gap), gap + r * (h + gap) - 0.3, label, fontsize=6, va="bottom", ha="left",
                color=colour)
    if title:
        ax.set_title(title, fontsize=9)
    return save(fig, path)


def _rgb_tiles(images: np.ndarray, cmap: str) -> np.ndarray:
    if images.dtype == np.uint8:
        return np.repeat(images[..., None], 3, axis=3) if images.ndim == 3 else images
    from matplotlib import colormaps

    a = images.astype(np.float64)
    lo = a.min(axis=(1, 2), keepdims=True)
    span = a.max(axis=(1, 2), keepdims=True) - lo
    a = np.where(span > 0, (a - lo) / np.where(span > 0, span, 1), 0.0)
    return (colormaps[cmap](a)[..., :3] * 255).round().astype(np.uint8)


def channel_ranges(channels: Sequence[int]) -> str:
    """[0, 1, 2, 5, 7, 8] -> '0-2, 5, 7-8'."""
    parts, chans = [], list(channels)
    i = 0
    while i < len(chans):
        j = i
        while j + 1 < len(chans) and chans[j + 1] == chans[j] + 1:
            j += 1
        parts.append(str(chans[i]) if i == j else f"{chans[i]}-{chans[j]}")
        i = j + 1
    return ", ".join(parts)


def activation_figure(layer: str, maps: np.ndarray, path: str | Path, channels: Sequence[int] | None = None,
                      total: int | None = None, page: tuple[int, int] | None = None) -> Path:
    """Save feature maps (C, h, w) of one input as a grid, every map given, each tile labelled with
    its channel index (`channels`, default 0..C-1) and the title saying which of the layer's `total`
    channels are shown (`page`: (this page, pages) when the caller splits a layer over files)."""
    maps = np.asarray(maps, dtype=np.float32)
    channels = list(range(len(maps))) if channels is None else [int(c) for c in channels]
    if len(channels) != len(maps):
        raise ValueError(f"{len(maps)} feature maps but {len(channels)} channel indices")
    total = len(maps) if total is None else total
    which = f"all {total} channels" if len(channels) == total and channels == list(range(total)) else (
        f"channels {channel_ranges(channels)} of {total}")
    paged = f" (page {page[0]}/{page[1]})" if page and page[1] > 1 else ""
    return grid_figure(maps, [str(c) for c in channels], path,
                       title=f"{layer}: {which}{paged}, each scaled to its own range")


def filter_figure(layer: str, filters: Sequence[int], images: np.ndarray, start: Sequence[float],
                  end: Sequence[float], path: str | Path) -> Path:
    """Gradient-ascent images of conv filters, labelled with each filter's mean activation
    start->end; filters whose activation did not rise are flagged in red."""
    rose = [a > a0 for a0, a in zip(start, end)]
    labels = [f"#{f} {a0:.2f}->{a:.2f}" + ("" if up else " no rise") for f, a0, a, up in zip(filters, start, end, rose)]
    flagged = rose.count(False)
    note = f"; red: {flagged} did not rise" if flagged else ""
    return grid_figure(images, labels, path, label_colours=["black" if up else "tab:red" for up in rose],
                       title=f"{layer}: inputs maximising each filter (mean activation start->end{note})")


def kernel_figure(layer: str, kernels: np.ndarray, path: str | Path, filters: Sequence[int] | None = None,
                  max_cols: int = 8) -> Path:
    """Conv kernels (F, C, k, k) as images on one symmetric colour scale (blue negative, red
    positive, white zero) with a colour bar; kernels with C != 1 get one tile per input channel."""
    from matplotlib.colors import Normalize

    k = np.asarray(kernels, dtype=np.float64)
    f, c = k.shape[:2]
    filters = list(range(f)) if filters is None else list(filters)
    tiles = k.reshape(f * c, *k.shape[2:])  # (F*C, kh, kw)
    labels = [f"#{filters[i // c]}" + (f" in{i % c}" if c > 1 else "") for i in range(f * c)]
    cols = min(len(tiles), max(1, max_cols // c) * c)  # a filter's input channels side by side
    rows = -(-len(tiles) // cols)
    kh, kw = tiles.shape[1:]
    mosaic = np.full((rows * (kh + 1) + 1, cols * (kw + 1) + 1), np.nan)
    for i, t in enumerate(tiles):
        r, col = divmod(i, cols)
        mosaic[1 + r * (kh + 1):1 + r * (kh + 1) + kh, 1 + col * (kw + 1):1 + col * (kw + 1) + kw] = t
    peak = float(np.abs(k).max()) or 1.0
    fig = figure(min(0.9 * cols + 1.2, 16), 0.9 * rows + 0.7)
    ax = fig.add_subplot()
    from matplotlib import colormaps

    cmap = colormaps["RdBu_r"].with_extremes(bad="white")
    im = ax.imshow(mosaic, cmap=cmap, norm=Normalize(-peak, peak), interpolation="nearest")
    ax.set_axis_off()
    for i, label in enumerate(labels):
        r, col = divmod(i, cols)
        ax.text(1 + col * (kw + 1), 1 + r * (kh + 1) - 0.55, label, fontsize=6, va="bottom", ha="left")
    bar = fig.colorbar(im, ax=ax, shrink=0.8, pad=0.02)
    bar.set_label("weight", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    ax.set_title(f"{layer}: the {f} kernels themselves ({kh}x{kw}, {c} input channel{'s' if c > 1 else ''})",
                 fontsize=9)
    return save(fig, path)


def gallery_figure(rows: Sequence[tuple[str, Sequence[tuple]]], path: str | Path, title: str = "",
                   caption_colour: str = "black") -> Path:
    """Labelled faces in rows: each row is (row label, [(uint8 image (S, S) or (S, S, 3), caption)
    or (image, caption, caption colour)]). A row without faces says so."""
    cols = max([len(tiles) for _, tiles in rows] + [1])
    fig = figure(1.25 * cols + 1.2, 1.45 * len(rows) + 0.4)
    axes = fig.subplots(len(rows), cols + 1, squeeze=False)
    for (label, tiles), line in zip(rows, axes):
        line[0].set_axis_off()
        line[0].text(1.0, 0.5, label, ha="right", va="center", fontsize=9, weight="bold",
                     transform=line[0].transAxes)
        if not tiles:
            line[1].text(0.0, 0.5, "none", ha="left", va="center", fontsize=8, color="gray",
                         transform=line[1].transAxes)
        for ax in line[1:]:
            ax.set_axis_off()
        for ax, tile in zip(line[1:], tiles):
            show(ax, tile[0])
            ax.set_title(tile[1], fontsize=7, color=tile[2] if len(tile) > 2 else caption_colour)
    if title:
        fig.suptitle(title, fontsize=10)
    return save(fig, path)

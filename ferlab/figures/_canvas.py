"""What every figure module shares: a pyplot-free Agg figure, image panels, PNG saving."""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

#: Attribution heatmaps, overlays and their colour bars all use this map.
HEAT_CMAP = "jet"
#: Opacity of a heatmap laid over the face.
OVERLAY_ALPHA = 0.45


@functools.cache
def pyplot():
    # Imported on first use, so importing ferlab.figures (as `explain` does) neither loads pyplot nor
    # changes the backend of whoever imports it.
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def figure(w: float, h: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), dpi=100, layout="constrained")


def show(ax, image: np.ndarray) -> None:
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest")
    ax.set_axis_off()


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """A uint8 face (S, S) or (S, S, 3) with a [0, 1] map (S, S) blended over it in `HEAT_CMAP`:
    (S, S, 3) uint8, as `attribution_figure` draws it, for mosaics of many faces."""
    from matplotlib import colormaps

    rgb = np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image
    heat_rgb = colormaps[HEAT_CMAP](np.clip(heat, 0, 1))[..., :3] * 255
    return ((1 - alpha) * rgb + alpha * heat_rgb).round().astype(np.uint8)


def save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path

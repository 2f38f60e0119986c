"""Drawing predictions onto images: a box per face, its label, and a bar per class probability."""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

# Tab10 colours (RGB), by class index, so a class keeps its colour across images and videos.
PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]
FONT = cv2.FONT_HERSHEY_SIMPLEX


def _text(img, text, org, scale, color, thickness, bg=None):
    (tw, th), base = cv2.getTextSize(text, FONT, scale, thickness)
    x, y = org
    if bg is not None:
        cv2.rectangle(img, (x, y - th - base), (x + tw + 2, y + base), bg, -1)
    cv2.putText(img, text, (x + 1, y), FONT, scale, color, thickness, cv2.LINE_AA)


def draw_faces(rgb: np.ndarray, boxes: Sequence[Sequence[float]], probs: Sequence[dict[str, float]],
               classes: Sequence[str], titles: Sequence[str] | None = None, note: str | None = None) -> np.ndarray:
    """A copy of `rgb` with each face's box, a title (default: top label and its probability) and
    a probability bar per class beside the box. `note` is written in the top-left corner."""
    img = np.ascontiguousarray(rgb.copy())
    h, w = img.shape[:2]
    unit = max(h, w) / 640
    thick = max(1, round(2 * unit))
    scale = max(0.35, 0.5 * unit)
    for i, (box, p) in enumerate(zip(boxes, probs)):
        x, y, bw, bh = (int(round(v)) for v in box)
        top = max(p, key=p.get)
        color = PALETTE[list(classes).index(top) % len(PALETTE)] if top in classes else (255, 255, 255)
        cv2.rectangle(img, (x, y), (x + bw, y + bh), color, thick)
        title = titles[i] if titles is not None else f"{top} {p[top]:.0%}"
        _text(img, title, (max(0, x), max(y - thick - 2, 14)), scale, (255, 255, 255), max(1, thick // 2), color)
        _draw_bars(img, (x, y, bw, bh), p, classes, scale, thick)
    if note:
        _text(img, note, (4, int(22 * max(unit, 0.7))), scale * 1.2, (255, 255, 255), max(1, thick // 2), (0, 0, 0))
    return img


def _draw_bars(img, box, probs, classes, scale, thick):
    h, w = img.shape[:2]
    x, y, bw, bh = box
    (_, th), base = cv2.getTextSize("Xg", FONT, scale * 0.8, 1)
    row = th + base + 2
    name_w = max(cv2.getTextSize(c, FONT, scale * 0.8, 1)[0][0] for c in classes) + 4
    bar_w = max(60, name_w)
    panel_w, panel_h = name_w + bar_w + 6, row * len(classes) + 4
    # Right of the box if it fits, else left of it, else over the box's right edge.
    px = x + bw + thick + 2
    if px + panel_w > w:
        px = x - panel_w - thick - 2 if x - panel_w - thick - 2 >= 0 else max(0, w - panel_w)
    py = min(max(0, y), max(0, h - panel_h))
    region = img[py:py + panel_h, px:px + panel_w]
    region[:] = (region.astype(np.float32) * 0.35).astype(np.uint8)  # darken so text reads on any photo
    for k, c in enumerate(classes):
        ry = py + 2 + k * row
        cv2.putText(img, c, (px + 2, ry + th), FONT, scale * 0.8, (255, 255, 255), 1, cv2.LINE_AA)
        length = int(round(bar_w * float(probs.get(c, 0.0))))
        if length > 0:
            cv2.rectangle(img, (px + name_w, ry + 1), (px + name_w + length, ry + row - 2),
                          PALETTE[k % len(PALETTE)], -1)

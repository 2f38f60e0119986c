"""Drawing predictions onto images, so that no label covers a face.

- `draw_legend` (photos): a numbered box per face on the photo and, in a strip beside it, each
  face's label and a bar per class probability, in columns when there are many faces. Small
  images (48x48 crops) are scaled up first so the text has room.
- `draw_faces` (video frames, which must keep their size): the box and label of each face and
  its probability panel, each put where it covers no face and no other label; a panel that
  fits nowhere is left out (the label still says the top class).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

# Tab10 colours (RGB), by class index, so a class keeps its colour across images and videos.
PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]
FONT = cv2.FONT_HERSHEY_SIMPLEX
#: `draw_legend` scales images whose long side is below this up by a whole factor first.
MIN_SIDE = 480
_STRIP = (32, 34, 38)
_WHITE = (255, 255, 255)

Rect = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)


def _text(img, text, org, scale, color, thickness, bg=None):
    (tw, th), base = cv2.getTextSize(text, FONT, scale, thickness)
    x, y = org
    if bg is not None:
        cv2.rectangle(img, (x, y - th - base), (x + tw + 2, y + base), bg, -1)
    cv2.putText(img, text, (x + 1, y), FONT, scale, color, thickness, cv2.LINE_AA)


def _colour(p: dict[str, float], classes: Sequence[str]) -> tuple[str, tuple[int, int, int]]:
    top = max(p, key=p.get)
    return top, PALETTE[list(classes).index(top) % len(PALETTE)] if top in classes else _WHITE


def _face_rects(boxes, pad: int) -> list[Rect]:
    return [(int(x) - pad, int(y) - pad, int(math.ceil(x + w)) + pad, int(math.ceil(y + h)) + pad)
            for x, y, w, h in boxes]


def _overlap(a: Rect, b: Rect) -> int:
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))


def _place(candidates: list[tuple[int, int]], size: tuple[int, int], taken: list[Rect], width: int, height: int,
           required: bool) -> Rect | None:
    """The first candidate top-left corner whose rectangle of `size` lies in the image and
    overlaps nothing in `taken`; else (if `required`) the one in the image overlapping least."""
    w, h = size
    inside = []
    for x, y in candidates:
        x, y = min(max(0, x), max(0, width - w)), min(max(0, y), max(0, height - h))
        r = (x, y, x + w, y + h)
        if r[2] <= width and r[3] <= height:
            if not any(_overlap(r, t) for t in taken):
                return r
            inside.append(r)
    if required and inside:
        return min(inside, key=lambda r: sum(_overlap(r, t) for t in taken))
    return None


def _bar_rows(img, x, y, probs, classes, scale, name_w, bar_w, row, th, t: int = 1) -> None:
    for k, c in enumerate(classes):
        ry = y + k * row
        cv2.putText(img, c, (x, ry + th), FONT, scale, _WHITE, t, cv2.LINE_AA)
        p = float(probs.get(c, 0.0))
        cv2.rectangle(img, (x + name_w, ry + 1), (x + name_w + bar_w, ry + row - 2), (70, 72, 78), -1)
        if round(bar_w * p) > 0:
            cv2.rectangle(img, (x + name_w, ry + 1), (x + name_w + round(bar_w * p), ry + row - 2),
                          PALETTE[k % len(PALETTE)], -1)
        cv2.putText(img, f"{p:4.0%}", (x + name_w + bar_w + 4, ry + th), FONT, scale, _WHITE, t, cv2.LINE_AA)


def draw_faces(rgb: np.ndarray, boxes: Sequence[Sequence[float]], probs: Sequence[dict[str, float]],
               classes: Sequence[str], titles: Sequence[str] | None = None, note: str | None = None) -> np.ndarray:
    """A same-size copy of `rgb` with each face's box, a title (default: top label and its
    probability) and, where there is room that covers no face, its probability bars.
    `note` is written in the top-left corner."""
    img = np.ascontiguousarray(rgb.copy())
    h, w = img.shape[:2]
    unit = max(h, w) / 640
    thick = max(1, round(2 * unit))
    scale = max(0.35, 0.5 * unit)
    taken = _face_rects(boxes, thick)
    for i, (box, p) in enumerate(zip(boxes, probs)):
        x, y, bw, bh = (int(round(v)) for v in box)
        top, color = _colour(p, classes)
        cv2.rectangle(img, (x, y), (x + bw, y + bh), color, thick)
    for i, (box, p) in enumerate(zip(boxes, probs)):
        x, y, bw, bh = (int(round(v)) for v in box)
        top, color = _colour(p, classes)
        title = titles[i] if titles is not None else f"{top} {p[top]:.0%}"
        t = max(1, thick // 2)
        (tw, th), base = cv2.getTextSize(title, FONT, scale, t)
        size = (tw + 4, th + base + 4)
        spot = _place([(x, y - size[1] - thick), (x, y + bh + thick), (x + bw - size[0], y - size[1] - thick),
                       (x - size[0] - thick, y), (x + bw + thick, y)], size, taken, w, h, required=True)
        if spot is not None:
            taken.append(spot)
            _text(img, title, (spot[0], spot[1] + th + 2), scale, _WHITE, t, color)
        _draw_panel(img, (x, y, bw, bh), p, classes, scale * 0.8, thick, taken)
    if note:
        _text(img, note, (4, int(22 * max(unit, 0.7))), scale * 1.2, _WHITE, max(1, thick // 2), (0, 0, 0))
    return img


def _draw_panel(img, box, probs, classes, scale, thick, taken: list[Rect]) -> None:
    h, w = img.shape[:2]
    x, y, bw, bh = box
    (_, th), base = cv2.getTextSize("Xg", FONT, scale, 1)
    row = th + base + 2
    name_w = max(cv2.getTextSize(c, FONT, scale, 1)[0][0] for c in classes) + 4
    bar_w = max(40, name_w)
    pct_w = cv2.getTextSize("100%", FONT, scale, 1)[0][0] + 6
    size = (name_w + bar_w + pct_w + 4, row * len(classes) + 4)
    gap = thick + 2
    spot = _place([(x + bw + gap, y), (x - size[0] - gap, y), (x + bw + gap, y + bh - size[1]),
                   (x - size[0] - gap, y + bh - size[1]), (x, y + bh + gap), (x, y - size[1] - gap)],
                  size, taken, w, h, required=False)
    if spot is None:
        return
    taken.append(spot)
    region = img[spot[1]:spot[3], spot[0]:spot[2]]
    region[:] = (region.astype(np.float32) * 0.35).astype(np.uint8)  # darken so text reads on any photo
    _bar_rows(img, spot[0] + 2, spot[1] + 2, probs, classes, scale, name_w, bar_w, row, th)


def draw_legend(rgb: np.ndarray, boxes: Sequence[Sequence[float]], probs: Sequence[dict[str, float]],
                classes: Sequence[str], titles: Sequence[str] | None = None, note: str | None = None) -> np.ndarray:
    """`rgb` (scaled up by a whole factor if its long side is under `MIN_SIDE`) with a numbered
    box per face, and beside it a strip with each face's title (default: top label and its
    probability) and probability bars; `note` heads the strip. Nothing is drawn over a face."""
    h, w = rgb.shape[:2]
    k = math.ceil(MIN_SIDE / max(h, w)) if max(h, w) < MIN_SIDE else 1
    img = cv2.resize(rgb, (w * k, h * k), interpolation=cv2.INTER_NEAREST) if k > 1 else rgb
    boxes = [tuple(v * k for v in b) for b in boxes]
    h, w = img.shape[:2]
    unit = max(0.75, max(h, w) / 640)
    thick = max(1, round(2 * unit))
    scale = 0.4 * unit
    t = max(1, round(unit))
    (_, th), base = cv2.getTextSize("Xg", FONT, scale, t)
    row = th + base + max(3, round(4 * unit))
    pad = max(4, round(8 * unit))
    name_w = max(cv2.getTextSize(c, FONT, scale, t)[0][0] for c in classes) + pad
    bar_w = round(80 * unit)
    pct_w = cv2.getTextSize("100%", FONT, scale, t)[0][0] + pad
    titles = list(titles) if titles is not None else [f"{_colour(p, classes)[0]} {max(p.values()):.0%}" for p in probs]
    heads = [f"{i + 1}  {titles[i]}" for i in range(len(probs))]
    panel_w = max([name_w + bar_w + pct_w] + [cv2.getTextSize(s, FONT, scale, t)[0][0] for s in heads]) + 2 * pad
    panel_h = row * (len(classes) + 1) + pad
    note_h = row + pad if note else 0
    note_w = cv2.getTextSize(note, FONT, scale, t)[0][0] + 2 * pad if note else 0
    n = len(probs)
    # Beside the photo (in columns as tall as it), unless that strip would be wider than the
    # photo and a legend below it (in rows as wide as it) keeps the image smaller.
    per_col = max(1, (h - pad - note_h) // panel_h)
    strip_w = max(math.ceil(n / per_col) * panel_w + pad, note_w)
    beside = (w + strip_w, max(h, pad + note_h + min(per_col, n) * panel_h))
    per_row = max(1, (w - pad) // panel_w)
    below = (max(w, min(per_row, n) * panel_w + pad, note_w), h + pad + note_h + math.ceil(n / per_row) * panel_h)
    right = strip_w <= w or max(beside) <= max(below)
    out_w, out_h = beside if right else below
    origin = (w + pad, pad) if right else (pad, h + pad)
    out = np.empty((out_h, out_w, 3), np.uint8)
    out[:] = _STRIP
    out[:h, :w] = img
    taken = _face_rects(boxes, thick)
    for box, p in zip(boxes, probs):
        x, y, bw, bh = (int(round(v)) for v in box)
        cv2.rectangle(out, (x, y), (x + bw, y + bh), _colour(p, classes)[1], thick)
    for i, (box, p) in enumerate(zip(boxes, probs)):
        x, y, bw, bh = (int(round(v)) for v in box)
        color = _colour(p, classes)[1]
        # Full size if it fits outside every face, else smaller, else where it overlaps least.
        for f in (1.0, 0.7, 0.5):
            ts, tt = scale * f, max(1, round(t * f))
            (tw, tth), tb = cv2.getTextSize(str(i + 1), FONT, ts, tt)
            size = (tw + pad // 2 + 2, tth + tb + pad // 2)
            g = thick
            spot = _place([(x - g, y - size[1] - g), (x - g, y + bh + g), (x - size[0] - g, y - g),
                           (x + bw + g, y - g), (x + bw - size[0], y - size[1] - g)], size, taken, w, h,
                          required=f == 0.5)
            if spot is not None:
                break
        taken.append(spot)
        cv2.rectangle(out, spot[:2], (spot[2] - 1, spot[3] - 1), color, -1)
        cv2.putText(out, str(i + 1), (spot[0] + pad // 4 + 1, spot[3] - tb - pad // 4), FONT, ts, _WHITE, tt,
                    cv2.LINE_AA)
    if note:
        cv2.putText(out, note, (origin[0], origin[1] + th), FONT, scale, _WHITE, t, cv2.LINE_AA)
    for i, p in enumerate(probs):
        c, r = divmod(i, per_col) if right else reversed(divmod(i, per_row))
        px, py = origin[0] + c * panel_w, origin[1] + note_h + r * panel_h
        color = _colour(p, classes)[1]
        cv2.rectangle(out, (px, py), (px + th, py + th), color, -1)
        cv2.putText(out, heads[i], (px + th + pad // 2, py + th), FONT, scale, _WHITE, t, cv2.LINE_AA)
        _bar_rows(out, px, py + row, p, classes, scale, name_w, bar_w, row, th, t)
    return out

"""Annotated images: nothing is drawn over a face, on group photos and on 48x48 crops."""
from __future__ import annotations

import numpy as np
import pytest

from ferlab.labels import FER2013_CLASSES
from ferlab.predict.annotate import MIN_SIDE, draw_faces, draw_legend

CLASSES = list(FER2013_CLASSES)


def _probs(k: int) -> dict[str, float]:
    p = np.full(len(CLASSES), 0.3 / (len(CLASSES) - 1))
    p[k % len(CLASSES)] = 0.7
    return dict(zip(CLASSES, p.tolist()))


def _group(rows: int, cols: int, side: int = 90, gap: int = 30, seed: int = 0):
    """A textured photo with rows x cols face boxes close together, as in a group photo."""
    rng = np.random.default_rng(seed)
    h, w = rows * (side + gap) + gap, cols * (side + gap) + gap
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    boxes = [(gap + c * (side + gap), gap + r * (side + gap), side, side) for r in range(rows) for c in range(cols)]
    return img, boxes, [_probs(i) for i in range(len(boxes))]


def _untouched(out: np.ndarray, img: np.ndarray, boxes, border: int) -> bool:
    """The inside of every face box (less the box line itself) is the photo's own pixels."""
    return all(np.array_equal(out[y + border:y + h - border, x + border:x + w - border],
                              img[y + border:y + h - border, x + border:x + w - border]) for x, y, w, h in boxes)


@pytest.mark.parametrize("rows, cols", [(1, 1), (2, 4), (3, 8)])
def test_legend_covers_no_face_and_lists_every_face(rows, cols):
    img, boxes, probs = _group(rows, cols)
    scale = 1 if max(img.shape[:2]) >= MIN_SIDE else -(-MIN_SIDE // max(img.shape[:2]))
    out = draw_legend(img, boxes, probs, CLASSES)
    big = np.repeat(np.repeat(img, scale, 0), scale, 1)
    sboxes = [tuple(v * scale for v in b) for b in boxes]
    h, w = big.shape[:2]
    assert out.shape[0] >= h and out.shape[1] >= w and out.size > big.size  # the legend is beside or below
    assert _untouched(out, big, sboxes, border=4 * scale)
    # one panel per face in the strip: each panel's title square has its face's class colour
    strip = out[:, w:] if out.shape[1] > w else out[h:]
    from ferlab.predict.annotate import PALETTE

    for k in {i % len(CLASSES) for i in range(len(boxes))}:
        assert (strip == PALETTE[k]).all(axis=2).any(), k


def test_a_48x48_crop_is_scaled_up_and_its_face_stays_visible():
    rng = np.random.default_rng(1)
    crop = np.repeat(rng.integers(0, 256, (48, 48, 1), dtype=np.uint8), 3, axis=2)
    out = draw_legend(crop, [(0, 0, 48, 48)], [_probs(3)], CLASSES)
    assert out.shape[0] == 480 and out.shape[1] > 480 + 150
    up = np.repeat(np.repeat(crop, 10, 0), 10, 1)
    assert np.array_equal(out[60:470, 60:470], up[60:470, 60:470])  # only the box line and the number tag touch it


def test_no_face_note_goes_in_the_strip():
    img = np.full((300, 400, 3), 90, np.uint8)
    out = draw_legend(img, [], [], CLASSES, note="no face found")
    assert out.shape[1] > 800 and (out[:600, :800] == 90).all()  # the (2x) photo itself is untouched
    assert (out[:40, 800:] > 200).any()  # white text in the strip


def test_a_wide_group_gets_its_legend_below_not_a_huge_strip():
    img, boxes, probs = _group(2, 16, side=60, gap=20)  # 1300x180, 32 faces
    out = draw_legend(img, boxes, probs, CLASSES)
    assert out.shape[1] == img.shape[1] and max(out.shape) < 3 * max(img.shape)
    assert np.array_equal(out[:img.shape[0]], draw_legend(img, boxes, probs, CLASSES)[:img.shape[0]])
    assert _untouched(out, img, boxes, border=4)


@pytest.mark.parametrize("rows, cols", [(1, 2), (2, 4)])
def test_frames_keep_their_size_and_labels_cover_no_face(rows, cols):
    img, boxes, probs = _group(rows, cols, side=110, gap=140)
    out = draw_faces(img, boxes, probs, CLASSES, titles=[f"#{i}" for i in range(len(boxes))])
    assert out.shape == img.shape
    assert _untouched(out, img, boxes, border=3)
    assert not np.array_equal(out, img)


def test_frames_with_room_get_probability_panels():
    img = np.full((480, 640, 3), 120, np.uint8)
    out = draw_faces(img, [(100, 100, 120, 140)], [_probs(3)], CLASSES)
    right = out[100:240, 230:640]
    assert (right != 120).any() and _untouched(out, img, [(100, 100, 120, 140)], border=3)

"""Face detectors and alignment on public-domain photos that installed packages ship (offline)."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from ferlab.predict import detect
from ferlab.predict.config import DetectorConfig
from ferlab.predict.detect import Face, align_crop, crop_transform, eye_angle, make_detector

skdata = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def astronaut():
    return skdata.astronaut()  # 512x512; the face spans roughly x 178-268, y 63-176


@pytest.fixture(scope="module")
def hopper():
    from matplotlib import cbook
    from PIL import Image

    with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
        return np.asarray(im.convert("RGB"))


@pytest.fixture(scope="module")
def yunet():
    return make_detector("yunet")


def _centre(box):
    return box[0] + box[2] / 2, box[1] + box[3] / 2


def test_yunet_finds_the_astronauts_face(yunet, astronaut):
    faces = yunet.detect(astronaut)
    assert len(faces) == 1
    f = faces[0]
    cx, cy = _centre(f.box)
    assert 190 < cx < 250 and 90 < cy < 150
    assert 60 < f.box[2] < 130 and 80 < f.box[3] < 150
    assert 0.75 <= f.score <= 1
    assert f.landmarks.shape == (5, 2)
    (rx, ry), (lx, ly) = f.landmarks[0], f.landmarks[1]
    assert f.box[0] < rx < lx < f.box[0] + f.box[2]  # person's right eye is on the image's left
    assert f.box[1] < ry < cy and f.box[1] < ly < cy  # eyes in the upper half of the box


@pytest.mark.parametrize("name", ["chelsea", "coffee"])
@pytest.mark.parametrize("detector", ["yunet", "yunet_tta"])
def test_no_face_in_photos_without_people(name, detector):
    assert make_detector(detector).detect(getattr(skdata, name)()) == []


def test_enormous_image_boxes_are_in_original_pixels(yunet, astronaut):
    small = yunet.detect(astronaut)[0]
    big = cv2.resize(astronaut, (2560, 2560), interpolation=cv2.INTER_CUBIC)  # 5x; detection sees <= 960 px
    faces = yunet.detect(big)
    assert len(faces) == 1
    assert np.allclose(faces[0].box, np.array(small.box) * 5, atol=0.05 * 5 * small.box[2])
    assert np.allclose(faces[0].landmarks, small.landmarks * 5, atol=0.1 * 5 * small.box[2])


def test_tta_finds_small_faces_a_single_pass_misses(astronaut):
    canvas = np.full((1500, 2000, 3), 128, np.uint8)
    spots = [(100, 100), (1700, 300), (1600, 1200), (700, 1000)]
    for x, y in spots:
        canvas[y:y + 112, x:x + 112] = cv2.resize(astronaut, (112, 112), interpolation=cv2.INTER_AREA)
    assert make_detector("yunet").detect(canvas) == []  # faces ~20 px are ~9 px at 960
    faces = make_detector("yunet_tta").detect(canvas)
    assert len(faces) == 4
    for (x, y) in spots:  # face centre sits at about (0.43, 0.22) of the astronaut image
        assert any(math.dist(_centre(f.box), (x + 0.43 * 112, y + 0.22 * 112)) < 12 for f in faces)


def test_tta_landmarks_keep_their_order_after_mirroring(astronaut, yunet):
    one = yunet.detect(astronaut)[0]
    tta = make_detector("yunet_tta").detect(astronaut)
    assert len(tta) == 1
    assert np.abs(tta[0].landmarks - one.landmarks).max() < 8  # a swapped pair would be ~45 px off


def test_largest_and_min_face(astronaut):
    canvas = np.full((600, 900, 3), 128, np.uint8)
    canvas[50:562, 20:532] = astronaut
    canvas[200:456, 600:856] = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    assert len(make_detector("yunet").detect(canvas)) == 2
    for kw in ({"largest": True}, {"min_face": 70}):
        faces = make_detector(DetectorConfig("yunet", **kw)).detect(canvas)
        assert len(faces) == 1 and faces[0].box[0] < 500, kw  # the big face on the left


def test_alignment_levels_the_eyes(hopper, yunet):
    h, w = hopper.shape[:2]
    tilted = cv2.warpAffine(hopper, cv2.getRotationMatrix2D((w / 2, h / 2), 30, 1.0), (w, h))
    face = yunet.detect(tilted)[0]
    assert abs(eye_angle(face.landmarks)) > 15
    m, side = crop_transform(face, margin=0.2)
    eyes = np.c_[face.landmarks[:2], np.ones(2)] @ m.T
    assert abs(eyes[0, 1] - eyes[1, 1]) < 1.0  # level after the warp
    assert eyes[0, 0] < side / 2 < eyes[1, 0]
    crop = align_crop(tilted, face, margin=0.2)
    assert crop.shape == (side, side, 3) and side == round(max(face.box[2:]) * 1.4)
    m0, _ = crop_transform(face, margin=0.2, align=False)
    unaligned = np.c_[face.landmarks[:2], np.ones(2)] @ m0.T
    assert abs(unaligned[0, 1] - unaligned[1, 1]) > 10


def test_crop_at_the_border_is_padded_and_centred(astronaut):
    face = Face((-20.0, -30.0, 100.0, 100.0), 1.0, None)  # box hangs off the top-left corner
    crop = align_crop(astronaut, face, margin=0.0)
    assert crop.shape == (100, 100, 3)
    # Inside the image the crop is the image itself, shifted by the box offset.
    assert np.array_equal(crop[30:, 20:], astronaut[:70, :80])
    # Outside, border pixels are repeated rather than black.
    assert np.array_equal(crop[0, 20:], astronaut[0, :80])


def test_haar_detector_when_available(astronaut):
    try:
        haar = make_detector("haar")
    except RuntimeError:
        pytest.skip("this OpenCV ships no Haar cascades")
    faces = haar.detect(astronaut)
    assert len(faces) == 1 and faces[0].landmarks is None
    cx, cy = _centre(faces[0].box)
    assert 190 < cx < 250 and 90 < cy < 150


def test_none_detector_is_the_whole_image(astronaut):
    assert make_detector("none").detect(astronaut) == [Face((0.0, 0.0, 512.0, 512.0), 1.0, None)]


def test_unknown_detector_names_the_choices():
    with pytest.raises(ValueError, match="yunet_tta"):
        make_detector("mtcnn")


def test_iou():
    assert detect.iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert detect.iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    assert detect.iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)

"""The AU → facial-region rule, landmark boxes, and region crops of clips (real and fake faces)."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from mer.data import regions
from mer.data.faces import shared_landmarker
from mer.data.regions import (
    DEFAULT_AU_CODES,
    FACE,
    REGION_RULES,
    crop_regions,
    landmark_box,
    proportional_box,
    region_for_aus,
)

ASSETS = Path(regions.__file__).resolve().parent / "assets"
SHIFTS = (0, 1, 2, 1, 0, -1)
WINDOW = (40, 140, 160)  # top, left, side of the clip window around the astronaut's face


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    """The 512×512 RGB astronaut portrait."""
    return cv2.cvtColor(cv2.imread(str(ASSETS / "astronaut.png")), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def stored_landmarks() -> np.ndarray:
    """The astronaut's stored dlib landmarks, (68, 2)."""
    return np.array(json.loads((ASSETS / "astronaut_landmarks.json").read_text())["landmarks"])


@pytest.fixture(scope="module")
def shifted_clip(astronaut) -> np.ndarray:
    """A 160×160 window on the face, moved by `SHIFTS` pixels (both ways) frame after frame."""
    top, left, side = WINDOW
    return np.stack(
        [
            astronaut[top + shift : top + shift + side, left + shift : left + shift + side]
            for shift in SHIFTS
        ]
    )


class FakeLandmarker:
    """Sees a face on any frame that is not all zeros, its landmarks moved by pixel [0, 0, 0]."""

    BASE = np.random.default_rng(0).uniform(10, 40, size=(68, 2)).astype(np.float32)

    def __init__(self) -> None:
        self.detect_calls = 0

    def detect(self, image_rgb):
        self.detect_calls += 1
        return (0, 0, 63, 63) if image_rgb.any() else None

    def landmarks(self, image_rgb, face=None):
        return self.BASE + int(image_rgb[0, 0, 0]) if image_rgb.any() else None


def fake_clip(shifts: list[int | None]) -> np.ndarray:
    """64×64 noise frames whose landmarks move by `shift`; None gives a frame with no face."""
    noise = np.random.default_rng(1).integers(0, 256, size=(len(shifts), 64, 64, 3), dtype=np.uint8)
    for frame, shift in zip(noise, shifts, strict=True):
        if shift is None:
            frame[:] = 0
        else:
            frame[0, 0, 0] = shift
    return noise


def contains(outer, inner) -> bool:
    """True when box `outer` covers box `inner` (both x0, y0, x1, y1)."""
    x0, y0, x1, y1 = outer
    return x0 <= inner[0] and y0 <= inner[1] and x1 >= inner[2] and y1 >= inner[3]


# The rule


def test_rules_are_the_published_ones():
    assert [(rule.name, set(rule.action_units), rule.landmarks) for rule in REGION_RULES] == [
        ("eyes", {4, 5, 7, 43}, (19, 24, 15, 1)),
        ("mouth", {10, 12, 14, 15, 17}, (3, 5, 11, 13)),
        ("brows", {1, 2}, (17, 19, 24, 26)),
        ("cheeks", {6, 9}, (1, 29, 15, 3, 13)),
    ]
    assert FACE.landmarks == tuple(range(68))
    assert DEFAULT_AU_CODES == (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 43)


@pytest.mark.parametrize(
    ("action_units", "region"),
    [
        *[({au}, "eyes") for au in (4, 5, 7, 43)],
        *[({au}, "mouth") for au in (10, 12, 14, 15, 17)],
        *[({au}, "brows") for au in (1, 2)],
        *[({au}, "cheeks") for au in (6, 9)],
        ({4, 12}, "eyes"),
        ({12, 1}, "mouth"),
        ({1, 6}, "brows"),
        ({9, 15, 2, 43}, "eyes"),
        (set(), "face"),
        ({25, 38}, "face"),
        ({25, 6}, "cheeks"),
    ],
)
def test_region_for_aus(action_units, region):
    assert region_for_aus(action_units).name == region


def test_region_for_aus_takes_any_iterable():
    assert region_for_aus(au for au in [26, 14]).name == "mouth"
    assert region_for_aus([]) is FACE


def test_aus_outside_au_codes_are_ignored():
    assert region_for_aus({4, 12}, au_codes=[12]).name == "mouth"
    assert region_for_aus({4}, au_codes=(1, 2)) is FACE
    assert region_for_aus({6, 25}, au_codes=(25,)) is FACE


# Boxes


def test_landmark_box_is_the_exclusive_bounding_box():
    landmarks = np.array([[10, 20], [29, 39], [500, 500]], dtype=np.float32)
    assert landmark_box(landmarks, [0, 1], (100, 100, 3)) == (10, 20, 30, 40)
    assert landmark_box(landmarks + 0.7, [0, 1], (100, 100)) == (10, 20, 30, 40)


def test_landmark_box_margin():
    landmarks = np.array([[30, 40], [49, 49]])  # 20 wide, 10 high
    assert landmark_box(landmarks, [0, 1], (100, 100), margin=0.5) == (20, 35, 60, 55)
    assert landmark_box(landmarks, [0, 1], (100, 100), margin=0.25) == (25, 37, 55, 53)


def test_landmark_box_is_clipped_to_the_image():
    landmarks = np.array([[-5, 3], [70, 49]])
    assert landmark_box(landmarks, [0, 1], (40, 60, 3)) == (0, 3, 60, 40)
    assert landmark_box(landmarks, [0, 1], (40, 60, 3), margin=1.0) == (0, 0, 60, 40)


def test_landmark_box_is_at_least_two_pixels():
    assert landmark_box(np.array([[5.0, 7.0]]), [0], (20, 30)) == (5, 7, 7, 9)
    assert landmark_box(np.array([[90.0, -9.0]]), [0], (20, 30)) == (28, 0, 30, 2)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((np.zeros((68, 2)), [1], (64, 64)), None),
        ((np.zeros((68, 2)), [68], (64, 64)), r"\[68\]"),
        ((np.zeros((68, 2)), [], (64, 64)), "at least one"),
        ((np.zeros((68, 3)), [1], (64, 64)), r"\(68, 3\)"),
        ((np.zeros((68, 2)), [1], (1, 64)), r"\(1, 64\)"),
    ],
)
def test_landmark_box_rejects_bad_arguments(arguments, message):
    if message is None:
        assert landmark_box(*arguments) == (0, 0, 2, 2)
        with pytest.raises(ValueError, match="-0.1"):
            landmark_box(*arguments, margin=-0.1)
    else:
        with pytest.raises(ValueError, match=message):
            landmark_box(*arguments)


@pytest.mark.parametrize(
    ("region", "box"),
    [
        ("eyes", (0, 20, 200, 55)),
        ("mouth", (40, 60, 160, 95)),
        ("brows", (0, 10, 200, 40)),
        ("cheeks", (0, 35, 200, 75)),
        ("face", (0, 0, 200, 100)),
    ],
)
def test_proportional_box(region, box):
    assert proportional_box(region, (100, 200, 3)) == box


def test_proportional_box_covers_every_rule_and_rejects_others():
    for rule in (*REGION_RULES, FACE):
        proportional_box(rule.name, (64, 64))
    with pytest.raises(ValueError, match="'nose'"):
        proportional_box("nose", (64, 64))


# Crops of a real face


@pytest.mark.slow
def test_onset_box_is_the_same_on_every_frame(shifted_clip):
    result = crop_regions(shifted_clip, {12}, shared_landmarker(), box="onset")
    assert result.region == "mouth"
    assert result.crops.shape == (len(SHIFTS), 128, 128, 3)
    assert result.crops.dtype == np.uint8
    assert result.boxes.shape == (len(SHIFTS), 4)
    assert (result.boxes == result.boxes[0]).all()
    assert result.faces_found == 1
    assert result.fallback is None


def test_per_frame_boxes_follow_the_face(shifted_clip):
    result = crop_regions(shifted_clip, {4}, shared_landmarker(), box="per_frame")
    assert result.region == "eyes"
    assert len({tuple(box) for box in result.boxes}) > 1
    # The window moves by +shift, so the face moves by -shift inside it.
    moves = result.boxes[:, :2] - result.boxes[0, :2]
    expected = -np.array(SHIFTS)[:, None]
    assert np.abs(moves - expected).max() <= 1
    assert result.faces_found == len(SHIFTS)
    assert result.fallback is None


def test_union_box_contains_every_per_frame_box(shifted_clip):
    landmarker = shared_landmarker()
    per_frame = crop_regions(shifted_clip, {1}, landmarker, box="per_frame").boxes
    union = crop_regions(shifted_clip, {1}, landmarker, box="union")
    assert (union.boxes == union.boxes[0]).all()
    assert all(contains(union.boxes[0], box) for box in per_frame)
    assert tuple(union.boxes[0]) == (
        *per_frame[:, :2].min(axis=0),
        *per_frame[:, 2:].max(axis=0),
    )


def test_mouth_crop_contains_the_mouth(astronaut, stored_landmarks):
    result = crop_regions(astronaut[None], {12}, shared_landmarker(), size=64)
    x0, y0, x1, y1 = result.boxes[0]

    def inside(index: int) -> bool:
        x, y = stored_landmarks[index]
        return x0 <= x < x1 and y0 <= y < y1

    assert inside(48) and inside(54)
    assert not inside(36) and not inside(45)
    assert y1 - y0 < 64  # a flat band, enlarged vertically
    expected = cv2.resize(astronaut[y0:y1, x0:x1], (64, 64), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(result.crops[0], expected)


def test_grey_clip(shifted_clip):
    grey = np.stack([cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in shifted_clip])[..., None]
    landmarker = shared_landmarker()
    result = crop_regions(grey, {12}, landmarker, size=32, box="per_frame")
    assert result.crops.shape == (len(SHIFTS), 32, 32, 1)
    assert result.faces_found == len(SHIFTS)
    colour = crop_regions(shifted_clip, {12}, landmarker, size=32, box="per_frame")
    assert np.abs(result.boxes - colour.boxes).max() <= 3


def test_clip_without_a_face_falls_back_to_proportional_boxes():
    blank = np.full((4, 96, 80, 3), 127, dtype=np.uint8)
    result = crop_regions(blank, {15}, shared_landmarker(), size=48, box="per_frame")
    assert result.crops.shape == (4, 48, 48, 3)
    assert result.faces_found == 0
    assert result.fallback == "no face in clip: proportional box"
    assert (result.boxes == proportional_box("mouth", (96, 80))).all()


# Box policies, with a fake landmarker


def test_frames_without_landmarks_reuse_the_nearest_box():
    clip = fake_clip([None, 3, None, 9, None])
    landmarker = FakeLandmarker()
    result = crop_regions(clip, {12}, landmarker, box="per_frame")
    box_3 = landmark_box(FakeLandmarker.BASE + 3, REGION_RULES[1].landmarks, clip.shape[1:])
    box_9 = landmark_box(FakeLandmarker.BASE + 9, REGION_RULES[1].landmarks, clip.shape[1:])
    assert [tuple(box) for box in result.boxes] == [box_3, box_3, box_3, box_9, box_9]
    assert result.faces_found == 2
    assert result.fallback == "reused clip box on 3 frames"
    assert landmarker.detect_calls == 2  # until the first face, then never again


def test_union_and_onset_with_missing_landmarks():
    clip = fake_clip([None, 3, None, 9, None])
    union = crop_regions(clip, {12}, FakeLandmarker(), box="union")
    box_3 = landmark_box(FakeLandmarker.BASE + 3, REGION_RULES[1].landmarks, clip.shape[1:])
    box_9 = landmark_box(FakeLandmarker.BASE + 9, REGION_RULES[1].landmarks, clip.shape[1:])
    assert (union.boxes == (*box_3[:2], *box_9[2:])).all()
    assert union.fallback == "reused clip box on 3 frames"
    onset = crop_regions(clip, {12}, FakeLandmarker(), box="onset")
    assert (onset.boxes == box_3).all()
    assert onset.faces_found == 1
    assert onset.fallback is None


def test_margin_enlarges_the_box():
    clip = fake_clip([0])
    plain = crop_regions(clip, {}, FakeLandmarker()).boxes[0]
    wide = crop_regions(clip, {}, FakeLandmarker(), margin=0.2).boxes[0]
    assert contains(wide, plain) and tuple(wide) != tuple(plain)


def test_crops_use_area_when_shrinking_and_linear_when_enlarging():
    clip = fake_clip([0])
    for size, interpolation in ((8, cv2.INTER_AREA), (96, cv2.INTER_LINEAR)):
        result = crop_regions(clip, {}, FakeLandmarker(), size=size)
        x0, y0, x1, y1 = result.boxes[0]
        expected = cv2.resize(clip[0, y0:y1, x0:x1], (size, size), interpolation=interpolation)
        np.testing.assert_array_equal(result.crops[0], expected)


@pytest.mark.parametrize(
    ("frames", "options", "message"),
    [
        (fake_clip([0]), {"box": "middle"}, "'middle'"),
        (fake_clip([0]), {"size": 7}, "7"),
        (fake_clip([0]), {"margin": -0.5}, "-0.5"),
        (fake_clip([0])[0], {}, r"\(64, 64, 3\)"),
        (np.zeros((2, 64, 64, 2), dtype=np.uint8), {}, r"\(2, 64, 64, 2\)"),
        (np.zeros((0, 64, 64, 3), dtype=np.uint8), {}, r"\(0, 64, 64, 3\)"),
        (np.zeros((2, 64, 64, 3), dtype=np.float32), {}, "float32"),
    ],
)
def test_crop_regions_rejects_bad_arguments(frames, options, message):
    with pytest.raises(ValueError, match=message):
        crop_regions(frames, {12}, FakeLandmarker(), **options)

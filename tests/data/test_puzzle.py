"""Dual-ATME's HARS puzzle: which landmarks land in which tile, on the astronaut photo."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from mer.data import puzzle as puzzle_module
from mer.data.puzzle import PUZZLE_PIECES, puzzle_boxes, puzzle_image, puzzle_tiles

ASSETS = Path(puzzle_module.__file__).resolve().parent / "assets"
PIECE_LANDMARKS = {
    "left_eye": [*range(17, 22), *range(36, 42)],
    "right_eye": [*range(22, 27), *range(42, 48)],
    "mouth": list(range(48, 68)),
}


@pytest.fixture(scope="module")
def astronaut() -> tuple[np.ndarray, np.ndarray]:
    """The 512×512 RGB astronaut portrait and its dlib landmarks (stored: tests/data/test_faces
    checks that dlib still finds them)."""
    image = cv2.cvtColor(cv2.imread(str(ASSETS / "astronaut.png")), cv2.COLOR_BGR2RGB)
    stored = json.loads((ASSETS / "astronaut_landmarks.json").read_text())
    return image, np.array(stored["landmarks"], dtype=np.float64)


def _into_tile(points: np.ndarray, box: tuple[int, ...], tile: tuple[int, ...]) -> np.ndarray:
    """Image points carried into the puzzle by the box → tile scaling (pixel edges map to edges)."""
    x0, y0, x1, y1 = box
    tile_x0, tile_y0, tile_x1, tile_y1 = tile
    scale = np.array([(tile_x1 - tile_x0) / (x1 - x0), (tile_y1 - tile_y0) / (y1 - y0)])
    return (points + 0.5 - [x0, y0]) * scale + [tile_x0, tile_y0] - 0.5


def test_the_layout_on_a_real_face(astronaut):
    image, landmarks = astronaut
    puzzle = puzzle_image(image, landmarks)
    assert puzzle.shape == (28, 28, 3) and puzzle.dtype == np.uint8
    boxes, tiles = puzzle_boxes(landmarks, image.shape), puzzle_tiles(28)
    assert tiles == {
        "left_eye": (0, 0, 14, 14),
        "right_eye": (14, 0, 28, 14),
        "mouth": (0, 14, 28, 28),
    }
    assert {piece.name: list(piece.landmarks) for piece in PUZZLE_PIECES} == PIECE_LANDMARKS
    for name, indices in PIECE_LANDMARKS.items():
        x0, y0, x1, y1 = tiles[name]
        mapped = _into_tile(landmarks[indices], boxes[name], tiles[name])
        assert (mapped[:, 0] > x0 - 0.5).all() and (mapped[:, 0] < x1 - 0.5).all(), name
        assert (mapped[:, 1] > y0 - 0.5).all() and (mapped[:, 1] < y1 - 0.5).all(), name
    # The top-left tile is the eye on the image's left (the subject's right eye).
    assert landmarks[36:42, 0].mean() < landmarks[42:48, 0].mean()
    assert boxes["left_eye"][2] <= boxes["right_eye"][0]


def test_each_tile_is_cut_from_its_own_box(astronaut):
    image, landmarks = astronaut
    boxes = puzzle_boxes(landmarks, image.shape)
    painted = np.zeros_like(image)
    colours = {"left_eye": (255, 0, 0), "right_eye": (0, 255, 0), "mouth": (0, 0, 255)}
    for name, (x0, y0, x1, y1) in boxes.items():
        painted[y0:y1, x0:x1] = colours[name]
    puzzle = puzzle_image(painted, landmarks, size=32)
    for name, (x0, y0, x1, y1) in puzzle_tiles(32).items():
        assert (puzzle[y0:y1, x0:x1] == colours[name]).all(), name


def test_the_margin_is_ten_percent_of_each_box(astronaut):
    image, landmarks = astronaut
    tight = puzzle_boxes(landmarks, image.shape, margin=0.0)
    wide = puzzle_boxes(landmarks, image.shape)
    for name, (x0, y0, x1, y1) in tight.items():
        width, height = x1 - x0, y1 - y0
        wide_x0, wide_y0, wide_x1, wide_y1 = wide[name]
        assert wide_x1 - wide_x0 == pytest.approx(1.2 * width, abs=2), name
        assert wide_y1 - wide_y0 == pytest.approx(1.2 * height, abs=2), name
        assert wide_x0 <= x0 and wide_y0 <= y0 and wide_x1 >= x1 and wide_y1 >= y1


def test_grey_images_give_one_channel(astronaut):
    image, landmarks = astronaut
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    assert puzzle_image(grey, landmarks).shape == (28, 28, 1)
    np.testing.assert_array_equal(
        puzzle_image(grey[:, :, None], landmarks), puzzle_image(grey, landmarks)
    )


@pytest.mark.parametrize("size", [27, 0, 2.0, True])
def test_the_size_must_be_even(astronaut, size):
    image, landmarks = astronaut
    with pytest.raises(ValueError, match=repr(size)):
        puzzle_image(image, landmarks, size)

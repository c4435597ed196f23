"""The 7x7 flow windows around FMER's 30 brow and mouth landmarks, at known landmarks."""

import numpy as np
import pytest

from mer.data.patches import PATCH_LANDMARKS, landmark_patches, landmark_pixels

HEIGHT, WIDTH, STEPS = 24, 32, 3


def _coded_flows() -> np.ndarray:
    """(STEPS, HEIGHT, WIDTH, 2) whose u says where it is: 10000 step + 100 row + column; v is
    minus that."""
    step, row, column = np.meshgrid(
        np.arange(STEPS), np.arange(HEIGHT), np.arange(WIDTH), indexing="ij"
    )
    code = (10000 * step + 100 * row + column).astype(np.float32)
    return np.stack([code, -code], axis=-1)


def _landmarks(points: dict[int, tuple[float, float]]) -> np.ndarray:
    """68 landmarks at the image centre but for `points` (dlib index -> (x, y))."""
    landmarks = np.tile(np.float32([WIDTH // 2, HEIGHT // 2]), (68, 1))
    for index, point in points.items():
        landmarks[index] = point
    return landmarks


def test_the_windows_hold_the_flow_around_each_landmark():
    landmarks = _landmarks({17: (5, 7), 26: (20, 10), 48: (12.4, 15.6), 67: (25, 3.5)})
    patches = landmark_patches(_coded_flows(), landmarks)
    assert patches.shape == (STEPS, 2, 30, 7, 7) and patches.dtype == np.float32
    assert PATCH_LANDMARKS[:10] == tuple(range(17, 27))
    assert PATCH_LANDMARKS[10:] == tuple(range(48, 68))
    # Landmark 17 (first) at x 5, y 7: rows 4..10, columns 2..8.
    np.testing.assert_array_equal(
        patches[1, 0, 0], 10000 + 100 * np.arange(4, 11)[:, None] + np.arange(2, 9)
    )
    np.testing.assert_array_equal(patches[1, 1, 0], -patches[1, 0, 0])  # v
    assert patches[2, 0, 9, 3, 3] == 20000 + 100 * 10 + 20  # landmark 26's centre
    assert patches[0, 0, 10, 3, 3] == 100 * 16 + 12  # 48 at (12.4, 15.6): pixel (12, 16)
    assert patches[0, 0, 29, 0, 0] == 100 * 1 + 22  # 67 at y 3.5, rounded up to 4: rows 1..7


def test_a_window_past_the_border_repeats_the_border_pixels():
    landmarks = _landmarks({17: (1, 0), 18: (WIDTH - 1, HEIGHT + 5)})
    patches = landmark_patches(_coded_flows(), landmarks)
    rows, columns = np.clip(np.arange(-3, 4), 0, None), np.clip(np.arange(-2, 5), 0, None)
    np.testing.assert_array_equal(patches[0, 0, 0], 100 * rows[:, None] + columns)
    corner = 100 * (HEIGHT - 1) + np.clip(np.arange(WIDTH - 4, WIDTH + 3), 0, WIDTH - 1)
    np.testing.assert_array_equal(patches[0, 0, 1], np.tile(corner, (7, 1)))  # off the image


def test_pixels_round_halves_up():
    pixels = landmark_pixels(_landmarks({17: (2.5, 3.5), 18: (-0.5, 1.49)}))
    assert pixels[:2].tolist() == [[3, 4], [0, 1]]


def test_bad_inputs_are_refused_with_their_shapes():
    with pytest.raises(ValueError, match=r"\(24, 32, 2\)"):
        landmark_patches(_coded_flows()[0], _landmarks({}))
    with pytest.raises(ValueError, match=r"\(30, 2\)"):
        landmark_patches(_coded_flows(), _landmarks({})[:30])

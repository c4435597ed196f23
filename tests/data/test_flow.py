"""Optical flow (TV-L1, Farneback), its channels, the apex choice, and the aligned face."""

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from mer.data import flow as flow_module
from mer.data.faces import shared_landmarker
from mer.data.flow import (
    FarnebackParameters,
    TVL1Parameters,
    aligned_face,
    apex_position,
    flow_channels,
    flow_parameters,
    flow_sequence,
    optical_flow,
    optical_strain,
    stored_flow,
)

ASSETS = Path(flow_module.__file__).resolve().parent / "assets"
SHIFT = (1.0, -0.5)  # (x, y) pixels


def _texture(side: int, seed: int = 0) -> np.ndarray:
    """Smooth random grey texture (Gaussian-blurred noise), float32 values 0–255."""
    noise = np.random.default_rng(seed).uniform(0, 255, (side, side)).astype(np.float32)
    blurred = cv2.GaussianBlur(noise, (0, 0), 2.0)
    return (blurred - blurred.min()) / (blurred.max() - blurred.min()) * 255


def _translated(image: np.ndarray, shift: tuple[float, float]) -> np.ndarray:
    """A float image moved by a sub-pixel (x, y) shift, as uint8: content at p goes to p + shift."""
    matrix = np.float32([[1, 0, shift[0]], [0, 1, shift[1]]])
    size = image.shape[1], image.shape[0]
    moved = cv2.warpAffine(
        image, matrix, size, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT
    )
    return np.rint(moved.clip(0, 255)).astype(np.uint8)


def _central_mean(flow: np.ndarray) -> np.ndarray:
    """Mean (u, v) over the central half of each side, away from the borders."""
    height, width = flow.shape[:2]
    return flow[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4].reshape(-1, 2).mean(0)


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    """A 128×128 texture and the same texture moved by `SHIFT`."""
    texture = _texture(128)
    return _translated(texture, (0.0, 0.0)), _translated(texture, SHIFT)


@pytest.mark.parametrize("algorithm", ["tvl1", "farneback"])
def test_a_sub_pixel_translation_gives_its_flow(pair, algorithm):
    flow = optical_flow(*pair, algorithm)
    assert flow.shape == (128, 128, 2) and flow.dtype == np.float32
    np.testing.assert_allclose(_central_mean(flow), SHIFT, atol=0.1)


def test_tvl1_is_deterministic_whatever_the_thread_count():
    first = _translated(_texture(64, seed=1), (0.0, 0.0))
    second = _translated(_texture(64, seed=1), SHIFT)
    threads = cv2.getNumThreads()
    try:
        cv2.setNumThreads(1)
        single = optical_flow(first, second)
        cv2.setNumThreads(2)
        runs = [optical_flow(first, second) for _ in range(2)]
    finally:
        cv2.setNumThreads(threads)
    assert np.abs(single).max() > 0.5  # it found the movement
    np.testing.assert_array_equal(single, runs[0])
    np.testing.assert_array_equal(runs[0], runs[1])


def test_without_a_prefilter_the_flow_is_opencvs_on_the_uint8_images():
    first = _translated(_texture(64, seed=5), (0.0, 0.0))
    second = _translated(_texture(64, seed=5), SHIFT)
    tvl1 = cv2.optflow.DualTVL1OpticalFlow_create().calc(first, second, None)
    farneback = cv2.calcOpticalFlowFarneback(first, second, None, 0.5, 5, 13, 10, 5, 1.1, 0)
    np.testing.assert_array_equal(optical_flow(first, second), tvl1)
    np.testing.assert_array_equal(optical_flow(first, second, "farneback"), farneback)


def test_the_fmer_prefilter_is_applied_and_keeps_the_movement(pair):
    plain = optical_flow(*pair, "farneback")
    blurred = optical_flow(*pair, "farneback", prefilter_size=5, prefilter_sigma=5.0)
    assert np.abs(blurred - plain).max() > 0.01  # the images were blurred first
    np.testing.assert_allclose(_central_mean(blurred), SHIFT, atol=0.1)


def test_rgb_and_single_channel_images_are_read_as_grey(pair):
    first, second = pair
    grey = optical_flow(first, second, "farneback")
    as_rgb = optical_flow(*(np.repeat(image[:, :, None], 3, axis=2) for image in pair), "farneback")
    as_channel = optical_flow(first[:, :, None], second[:, :, None], "farneback")
    np.testing.assert_array_equal(as_channel, grey)
    np.testing.assert_allclose(as_rgb, grey, atol=1e-3)


@pytest.mark.parametrize(
    ("algorithm", "parameters", "creator", "getters"),
    [
        (
            "tvl1",
            TVL1Parameters(),
            cv2.optflow.DualTVL1OpticalFlow_create,
            {
                "tau": "Tau",
                "data_weight": "Lambda",
                "theta": "Theta",
                "scales": "ScalesNumber",
                "scale_step": "ScaleStep",
                "warps": "WarpingsNumber",
                "epsilon": "Epsilon",
                "inner_iterations": "InnerIterations",
                "outer_iterations": "OuterIterations",
                "median_filtering": "MedianFiltering",
            },
        ),
        (
            "farneback",
            FarnebackParameters(),
            cv2.FarnebackOpticalFlow_create,
            {
                "levels": "NumLevels",
                "pyramid_scale": "PyrScale",
                "window_size": "WinSize",
                "iterations": "NumIters",
                "polynomial_size": "PolyN",
                "polynomial_sigma": "PolySigma",
                "gaussian_window": "Flags",
            },
        ),
    ],
)
def test_the_defaults_are_opencvs(algorithm, parameters, creator, getters):
    opencv = creator()
    defaults = dataclasses.asdict(flow_parameters(algorithm))
    assert defaults == dataclasses.asdict(parameters)
    assert set(defaults) == set(getters)
    for name, getter in getters.items():
        assert defaults[name] == pytest.approx(getattr(opencv, "get" + getter)()), name


def test_a_setting_reaches_the_algorithm(pair):
    default = optical_flow(*pair, "farneback")
    coarse = optical_flow(*pair, "farneback", window_size=31, levels=1)
    assert np.abs(coarse - default).max() > 0.01
    assert flow_parameters("tvl1", warps=3) != flow_parameters("tvl1")


@pytest.mark.parametrize(
    ("call", "quoted"),
    [
        (lambda image: optical_flow(image, image, "tv-l1"), "'tv-l1'"),
        (lambda image: optical_flow(image, image, "tvl1", window_size=9), "window_size"),
        (lambda image: optical_flow(image, image, "tvl1", scales=0), "0"),
        (lambda image: optical_flow(image, image, "tvl1", scales=2.5), "2.5"),
        (lambda image: optical_flow(image, image, "farneback", pyramid_scale=1.5), "1.5"),
        (lambda image: optical_flow(image, image, prefilter_size=4), "4"),
        (lambda image: optical_flow(image, image, prefilter_sigma=-1.0), "-1.0"),
        (lambda image: optical_flow(image, image[:8]), r"\(8, 16\)"),
        (lambda image: optical_flow(image, image.astype(np.float32)), "float32"),
        (lambda image: flow_sequence(image[None]), "1"),
    ],
)
def test_bad_arguments_are_value_errors_quoting_them(call, quoted):
    with pytest.raises(ValueError, match=quoted):
        call(np.zeros((16, 16), np.uint8))


def test_a_static_clip_has_no_motion_and_no_strain():
    frame = _translated(_texture(64, seed=2), (0.0, 0.0))
    steps = flow_sequence(np.stack([frame] * 3))
    assert steps.shape == (2, 64, 64, 2) and steps.dtype == np.float32
    for step in steps:
        channels = flow_channels(step, ["magnitude", "strain"])
        assert np.abs(channels).max() < 1e-6


def test_a_sequence_is_the_flow_between_consecutive_frames():
    texture = _texture(96, seed=3)
    still, moved = _translated(texture, (0.0, 0.0)), _translated(texture, SHIFT)
    steps = flow_sequence([still, moved, moved], "farneback")
    assert steps.shape == (2, 96, 96, 2)
    np.testing.assert_allclose(_central_mean(steps[0]), SHIFT, atol=0.1)
    np.testing.assert_allclose(_central_mean(steps[1]), (0.0, 0.0), atol=0.02)


def _linear_flow(u_per_x=0.0, u_per_y=0.0, v_per_x=0.0, v_per_y=0.0) -> np.ndarray:
    """A 12×16 flow whose u and v grow linearly along x (columns) and y (rows)."""
    y, x = np.mgrid[0:12, 0:16].astype(np.float32)
    return np.stack([u_per_x * x + u_per_y * y, v_per_x * x + v_per_y * y], axis=-1)


@pytest.mark.parametrize(
    ("gradients", "expected"),
    [
        ({"u_per_x": 0.3}, 0.3),  # εxx only
        ({"u_per_x": -0.3}, 0.3),
        ({"v_per_y": 0.2}, 0.2),  # εyy only
        ({"u_per_y": 0.4}, 0.4 / np.sqrt(2)),  # εxy = 0.2, counted twice: sqrt(2 · 0.2²)
        ({"u_per_y": 0.4, "v_per_x": -0.4}, 0.0),  # a rotation does not strain
        ({"u_per_x": 0.3, "v_per_y": 0.4}, 0.5),
    ],
)
def test_strain_of_linear_fields(gradients, expected):
    strain = optical_strain(_linear_flow(**gradients))
    assert strain.shape == (12, 16) and strain.dtype == np.float32
    np.testing.assert_allclose(strain, expected, atol=1e-5)


def test_flow_channels_come_in_the_order_asked():
    flow = np.zeros((4, 5, 2), np.float32)
    flow[..., 0], flow[..., 1] = 3.0, -4.0
    channels = flow_channels(flow, ("magnitude", "v", "u", "strain"))
    assert channels.shape == (4, 5, 4) and channels.dtype == np.float32
    np.testing.assert_array_equal(channels[0, 0], [5.0, -4.0, 3.0, 0.0])
    for bad in ([], ["u", "u"], ["os"]):
        with pytest.raises(ValueError, match="distinct names"):
            flow_channels(flow, bad)
    with pytest.raises(ValueError, match=r"\(4, 5, 3\)"):
        flow_channels(np.zeros((4, 5, 3)), ["u"])


def test_flow_is_stored_as_float16():
    flow = np.random.default_rng(4).uniform(-2, 2, (8, 8, 2)).astype(np.float32)
    stored = stored_flow(flow)
    assert stored.dtype == np.float16
    np.testing.assert_allclose(stored, flow, atol=1e-3)
    flow[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="1 non-finite"):
        stored_flow(flow)


def test_apex_position():
    # Grey levels per frame; from the onset frame 0 the difference peaks at frame 4, while the
    # change from the frame before peaks at frame 5 (an 'apex' of the frame-change kind).
    levels = [10, 10, 60, 70, 75, 20]
    frames = [np.full((4, 4, 3), level, np.uint8) for level in levels]
    assert apex_position(frames, 0, 5, apex=2) == 2
    assert apex_position(frames, 0, 5) == 2  # the middle
    assert apex_position(frames, 1, 4) == 2
    assert apex_position(frames, 0, 5, fallback="max_difference") == 4
    assert apex_position(frames, 1, 3, fallback="max_difference") == 3
    assert apex_position(frames, 5, 5, fallback="max_difference") == 5
    with pytest.raises(ValueError, match="apex 6"):
        apex_position(frames, 0, 5, apex=6)
    with pytest.raises(ValueError, match="onset 3, offset 2"):
        apex_position(frames, 3, 2)
    with pytest.raises(ValueError, match="offset 6"):
        apex_position(frames, 0, 6)
    with pytest.raises(ValueError, match="'strongest'"):
        apex_position(frames, 0, 5, fallback="strongest")


@pytest.fixture(scope="module")
def tilted_face() -> tuple[np.ndarray, np.ndarray]:
    """The astronaut photo turned 10° clockwise about her face (adding to her own 3.5° tilt),
    and her stored landmarks turned with it."""
    image = cv2.cvtColor(cv2.imread(str(ASSETS / "astronaut.png")), cv2.COLOR_BGR2RGB)
    stored = json.loads((ASSETS / "astronaut_landmarks.json").read_text())
    landmarks = np.array(stored["landmarks"], dtype=np.float64)
    turn = cv2.getRotationMatrix2D(tuple(landmarks.mean(axis=0)), -10.0, 1.0)
    turned = cv2.warpAffine(image, turn, (512, 512), borderMode=cv2.BORDER_REFLECT)
    return turned, landmarks @ turn[:, :2].T + turn[:, 2]


def _eye_centres(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean of dlib points 36–41 and of 42–47."""
    return landmarks[36:42].mean(axis=0), landmarks[42:48].mean(axis=0)


@pytest.mark.slow
def test_aligned_face_levels_the_eyes(tilted_face):
    image, landmarks = tilted_face
    left, right = _eye_centres(landmarks)
    assert abs(left[1] - right[1]) > 10  # the photo is tilted, by 13.5°
    aligned = aligned_face(image[None], landmarks, 128)
    assert aligned.frames.shape == (1, 128, 128, 3) and aligned.frames.dtype == np.uint8
    assert aligned.landmarks.shape == (68, 2) and aligned.matrix.shape == (2, 3)
    left, right = _eye_centres(aligned.landmarks)
    assert abs(left[1] - right[1]) < 1e-3
    assert (left[0] + right[0]) / 2 == pytest.approx(64.0)
    assert aligned.landmarks.min() >= 0 and aligned.landmarks.max() < 128  # the face is inside
    # The image itself, not only the landmarks: dlib finds the eyes level in the output.
    found = shared_landmarker().landmarks(aligned.frames[0])
    assert found is not None
    left, right = _eye_centres(found)
    assert abs(left[1] - right[1]) < 1.0
    assert np.abs(found - aligned.landmarks).max() < 4.0


def test_aligned_face_moves_every_frame_alike(tilted_face):
    image, landmarks = tilted_face
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[:, :, None]
    moved = np.roll(grey, (4, 6), axis=(0, 1))  # 6 px right, 4 px down
    aligned = aligned_face(np.stack([grey, moved]), landmarks, 96, margin=0.2)
    assert aligned.frames.shape == (2, 96, 96, 1)
    # The second frame's movement, carried through the one transform, is what the flow sees.
    expected = aligned.matrix[:, :2] @ [6.0, 4.0]
    flow = optical_flow(aligned.frames[0], aligned.frames[1], "farneback")
    np.testing.assert_allclose(_central_mean(flow), expected, atol=0.1)


def test_aligned_face_rejects_bad_arguments(tilted_face):
    image, landmarks = tilted_face
    with pytest.raises(ValueError, match=r"\(67, 2\)"):
        aligned_face(image[None], landmarks[:67], 64)
    with pytest.raises(ValueError, match="4"):
        aligned_face(image[None], landmarks, 4)
    with pytest.raises(ValueError, match="-0.1"):
        aligned_face(image[None], landmarks, 64, margin=-0.1)
    with pytest.raises(ValueError, match="coincide"):
        aligned_face(image[None], np.zeros((68, 2)), 64)

"""Tests for the synthetic micro-expression demo dataset."""

import importlib.util
import json
import pathlib
import re
from dataclasses import asdict

import cv2
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mer.data import synthetic
from mer.data.synthetic import CLASS_NAMES, DemoSpec, generate_demo, render_clip

SMALL = DemoSpec(subjects=2, clips_per_class=1, frames=16, size=64)
COLUMNS = [
    "Subject",
    "Filename",
    "OnsetFrame",
    "ApexFrame",
    "OffsetFrame",
    "Action Units",
    "Estimated Emotion",
]
BROWS = tuple(range(17, 27))
LIP_CORNERS = (48, 54)
MOVING_LANDMARKS = {
    "negative": BROWS + LIP_CORNERS,
    "positive": LIP_CORNERS,  # the raised cheeks have too little texture to show in a difference
    "surprise": BROWS + (37, 38, 43, 44),
}


def read_video(path: pathlib.Path) -> np.ndarray:
    """Decodes all frames of a video as RGB."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    return np.stack(frames)


def read_dataset(root: pathlib.Path) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The coding sheet and every clip's decoded frames, keyed by filename."""
    sheet = pd.read_excel(root / "demo_coding.xlsx", sheet_name="Sheet1")
    videos = {
        name: read_video(root / emotion / f"{name}.avi")
        for name, emotion in zip(sheet["Filename"], sheet["Estimated Emotion"], strict=True)
    }
    return sheet, videos


def near(landmarks: np.ndarray, indices: tuple[int, ...], radius: float, size: int) -> np.ndarray:
    """Boolean mask of pixels within radius of any of the given landmarks."""
    rows, columns = np.mgrid[0:size, 0:size]
    distances = [np.hypot(columns - landmarks[i, 0], rows - landmarks[i, 1]) for i in indices]
    return np.min(distances, axis=0) <= radius


def apex_change(spec: DemoSpec, class_name: str) -> tuple[np.ndarray, dict]:
    """Mean absolute grey difference between the apex and onset frames of subject 1's clip 1."""
    frames, info = render_clip(spec, 1, class_name, 1)
    apex = frames[info["apex"] - 1].astype(np.float64)
    onset = frames[info["onset"] - 1].astype(np.float64)
    return np.abs(apex - onset).mean(axis=-1), info


@pytest.fixture(scope="module")
def small_root(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    root = tmp_path_factory.mktemp("demo")
    generate_demo(root, SMALL)
    return root


def test_layout_and_sheet(small_root: pathlib.Path) -> None:
    sheet = pd.read_excel(small_root / "demo_coding.xlsx", sheet_name="Sheet1")
    assert list(sheet.columns) == COLUMNS
    assert len(sheet) == SMALL.subjects * SMALL.clips_per_class * len(CLASS_NAMES)
    assert sorted(sheet["Subject"].unique()) == [1, 2]
    assert sheet["Filename"].is_unique
    assert set(sheet["Estimated Emotion"]) == set(CLASS_NAMES)
    expected_units = {"negative": "4+15", "positive": "6+12", "surprise": "1+2+5"}
    for _, row in sheet.iterrows():
        assert row["Action Units"] == expected_units[row["Estimated Emotion"]]
        assert (small_root / row["Estimated Emotion"] / f"{row['Filename']}.avi").is_file()
        assert 1 <= row["OnsetFrame"] < row["ApexFrame"] < row["OffsetFrame"] <= SMALL.frames
    videos = sorted(path.name for path in small_root.glob("*/*.avi"))
    assert videos == sorted(f"{name}.avi" for name in sheet["Filename"])
    assert "sub01_negative_01" in set(sheet["Filename"])
    assert json.loads((small_root / "demo_spec.json").read_text()) == asdict(SMALL)


def test_videos_decode_to_rendered_rgb_frames(small_root: pathlib.Path) -> None:
    frames, _ = render_clip(SMALL, 2, "positive", 1)
    decoded = read_video(small_root / "positive" / "sub02_positive_01.avi")
    assert decoded.shape == (SMALL.frames, SMALL.size, SMALL.size, 3)
    assert frames.shape == decoded.shape and frames.dtype == np.uint8
    # MJPG is lossy but must stay close; swapped colour channels would be far off.
    error = np.abs(decoded.astype(np.float64) - frames).mean()
    assert error < 4.0
    swapped = np.abs(decoded[..., ::-1].astype(np.float64) - frames).mean()
    assert swapped > error + 4.0


def test_generation_is_deterministic(small_root: pathlib.Path, tmp_path: pathlib.Path) -> None:
    sheet, videos = read_dataset(small_root)
    generate_demo(tmp_path, SMALL)
    other_sheet, other_videos = read_dataset(tmp_path)
    pd.testing.assert_frame_equal(sheet, other_sheet)
    assert videos.keys() == other_videos.keys()
    for name, frames in videos.items():
        np.testing.assert_array_equal(frames, other_videos[name])

    first, first_info = render_clip(SMALL, 1, "surprise", 1)
    second, second_info = render_clip(SMALL, 1, "surprise", 1)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first_info.pop("landmarks"), second_info.pop("landmarks"))
    assert first_info == second_info


def test_clips_subjects_and_seeds_differ() -> None:
    base, base_info = render_clip(SMALL, 1, "negative", 1)
    same_subject, same_subject_info = render_clip(SMALL, 1, "surprise", 1)
    other_subject, other_subject_info = render_clip(SMALL, 2, "negative", 1)
    # A subject keeps its face shape and colour across clips; another subject has its own.
    np.testing.assert_array_equal(base_info["landmarks"], same_subject_info["landmarks"])
    shape_change = base_info["landmarks"] - other_subject_info["landmarks"]
    assert np.linalg.norm(shape_change, axis=1).mean() > 1.0
    colour = base.mean(axis=(0, 1, 2))
    assert np.abs(colour - same_subject.mean(axis=(0, 1, 2))).max() < 2
    assert np.abs(colour - other_subject.mean(axis=(0, 1, 2))).max() > 4
    other_seed, _ = render_clip(DemoSpec(**{**asdict(SMALL), "seed": 1}), 1, "negative", 1)
    assert np.abs(base.astype(np.int16) - other_subject).mean() > 5
    assert np.abs(base.astype(np.int16) - other_seed).mean() > 5
    # Within a clip, frames differ (noise, jitter) but the face stays put.
    assert 0 < np.abs(base[0].astype(np.int16) - base[-1]).mean() < 10


def test_marker_prevents_regeneration(tmp_path: pathlib.Path) -> None:
    sheet_path = generate_demo(tmp_path, SMALL)
    video = tmp_path / "negative" / "sub01_negative_01.avi"
    stamps = (sheet_path.stat().st_mtime_ns, video.stat().st_mtime_ns)
    assert generate_demo(str(tmp_path), SMALL) == sheet_path
    assert (sheet_path.stat().st_mtime_ns, video.stat().st_mtime_ns) == stamps

    generate_demo(tmp_path, SMALL, force=True)
    assert video.stat().st_mtime_ns != stamps[1]

    smaller = DemoSpec(subjects=2, clips_per_class=1, frames=12, size=48, seed=3)
    generate_demo(tmp_path, smaller)
    assert json.loads((tmp_path / "demo_spec.json").read_text()) == asdict(smaller)
    assert read_video(video).shape == (12, 48, 48, 3)
    assert pd.read_excel(sheet_path)["OffsetFrame"].max() <= 12


def test_stale_videos_removed(tmp_path: pathlib.Path) -> None:
    generate_demo(tmp_path, DemoSpec(subjects=3, clips_per_class=2, frames=8, size=32))
    generate_demo(tmp_path, DemoSpec(subjects=2, clips_per_class=1, frames=8, size=32))
    names = sorted(path.stem for path in tmp_path.glob("*/*.avi"))
    sheet = pd.read_excel(tmp_path / "demo_coding.xlsx")
    assert names == sorted(sheet["Filename"]) and len(names) == 6


def test_interrupted_generation_is_not_complete(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    generate_demo(tmp_path, SMALL)
    calls = []

    def failing_write(path: pathlib.Path, frames: np.ndarray) -> None:
        calls.append(path)
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic, "_write_video", failing_write)
    with pytest.raises(KeyboardInterrupt):
        generate_demo(tmp_path, SMALL, force=True)
    assert not (tmp_path / "demo_spec.json").exists()
    with pytest.raises(KeyboardInterrupt):
        generate_demo(tmp_path, SMALL)  # no marker: regenerates instead of trusting old files
    assert len(calls) == 2


@pytest.mark.parametrize("class_name", CLASS_NAMES)
def test_expression_is_localised(class_name: str) -> None:
    change, info = apex_change(SMALL, class_name)
    region = near(info["landmarks"], MOVING_LANDMARKS[class_name], 4, SMALL.size)
    corner = SMALL.size // 8
    far = np.concatenate([change[:corner, :corner].ravel(), change[:corner, -corner:].ravel()])
    assert change[region].mean() > 2 * far.mean()


def test_movement_differs_between_classes() -> None:
    changes = {name: apex_change(SMALL, name) for name in CLASS_NAMES}

    def region_change(name: str, indices: tuple[int, ...]) -> float:
        change, info = changes[name]
        return float(change[near(info["landmarks"], indices, 4, SMALL.size)].mean())

    assert region_change("surprise", BROWS) > 3 * region_change("surprise", LIP_CORNERS)
    assert region_change("positive", LIP_CORNERS) > 2 * region_change("positive", BROWS)
    assert region_change("negative", LIP_CORNERS) > 2 * region_change("surprise", LIP_CORNERS)
    assert region_change("negative", BROWS) > 2 * region_change("positive", BROWS)


@settings(max_examples=20, deadline=None)
@given(frames=st.integers(8, 40), seed=st.integers(0, 2**32), index=st.integers(1, 3))
def test_timing_inside_clip(frames: int, seed: int, index: int) -> None:
    spec = DemoSpec(subjects=2, clips_per_class=3, frames=frames, size=32, seed=seed)
    video, info = render_clip(spec, 2, "surprise", index)
    assert video.shape == (frames, 32, 32, 3)
    assert 1 <= info["onset"] <= max(1, frames // 3)
    assert 3 <= info["apex"] - info["onset"] <= 5
    assert 3 <= info["offset"] - info["apex"] <= 6
    assert info["offset"] <= frames
    assert info["aus"] == "1+2+5"


def test_dlib_finds_face_and_expression_direction() -> None:
    dlib = pytest.importorskip("dlib")
    # Located without importing the package: its __init__ needs pkg_resources (setuptools < 81).
    models = importlib.util.find_spec("face_recognition_models")
    if models is None:
        pytest.skip("face_recognition_models is not installed")
    predictor_path = pathlib.Path(models.submodule_search_locations[0]) / "models"
    predictor = dlib.shape_predictor(str(predictor_path / "shape_predictor_68_face_landmarks.dat"))
    detector = dlib.get_frontal_face_detector()
    spec = DemoSpec(frames=16)  # default 128 x 128 frames, found without upsampling

    def landmarks(frame: np.ndarray) -> np.ndarray:
        faces = detector(frame, 0)
        assert len(faces) == 1
        shape = predictor(frame, faces[0])
        return np.array([[point.x, point.y] for point in shape.parts()], dtype=np.float64)

    movement = {}
    for class_name in CLASS_NAMES:
        frames, info = render_clip(spec, 1, class_name, 1)
        onset = landmarks(frames[info["onset"] - 1])
        # The neutral face is where the generator says it is.
        assert np.linalg.norm(onset - info["landmarks"], axis=1).mean() < 2.0
        movement[class_name] = landmarks(frames[info["apex"] - 1]) - onset
    # Vertical movement (y grows downwards) seen by dlib between onset and apex.
    assert movement["surprise"][list(BROWS), 1].mean() < -1.0
    assert movement["negative"][list(BROWS), 1].mean() > 1.0
    assert abs(movement["positive"][list(BROWS), 1].mean()) < 0.5
    assert movement["positive"][list(LIP_CORNERS), 1].mean() < -1.0
    assert movement["negative"][list(LIP_CORNERS), 1].mean() > 1.0


@pytest.mark.parametrize(
    "changes, quoted",
    [
        ({"subjects": 1}, "subjects must be an integer >= 2, got 1"),
        ({"frames": 7}, "got 7"),
        ({"size": 16}, "got 16"),
        ({"clips_per_class": 0}, "got 0"),
        ({"seed": -1}, "got -1"),
        ({"amplitude": -0.5}, "got -0.5"),
        ({"amplitude": 20.0}, "got 20.0"),
        ({"amplitude": float("nan")}, "got nan"),
        ({"frames": 12.0}, "got 12.0"),
    ],
)
def test_invalid_spec_raises(changes: dict, quoted: str) -> None:
    with pytest.raises(ValueError, match=re.escape(quoted)):
        DemoSpec(**changes)


@pytest.mark.parametrize(
    "subject, class_name, index, quoted",
    [
        (1, "happy", 1, "'happy'"),
        (0, "negative", 1, "got 0"),
        (3, "negative", 1, "got 3"),
        (1, "positive", 2, "got 2"),
    ],
)
def test_invalid_clip_raises(subject: int, class_name: str, index: int, quoted: str) -> None:
    with pytest.raises(ValueError, match=re.escape(quoted)):
        render_clip(SMALL, subject, class_name, index)

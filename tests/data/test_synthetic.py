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

from mer.config import DataConfig
from mer.data import synthetic
from mer.data.datasets import build_dataset_manifest, load_dataset_spec, sheet_path
from mer.data.manifest import build_manifest
from mer.data.synthetic import (
    CLASS_NAMES,
    DemoSpec,
    generate_demo,
    plan_realistic,
    render_clip,
    render_realistic,
)

SMALL = DemoSpec(subjects=2, clips_per_class=1, frames=16, size=64)
REALISTIC = DemoSpec(style="realistic", subjects=2, clips_per_subject=6, frames=24, size=64)
TINY_REALISTIC = DemoSpec(style="realistic", subjects=2, clips_per_subject=3, frames=12, size=32)
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


@pytest.mark.slow
def test_dlib_finds_face_and_expression_direction() -> None:
    dlib = pytest.importorskip("dlib", reason="dlib (dlib-bin in requirements.txt) is missing")
    # Located without importing the package: its __init__ needs pkg_resources (setuptools < 81).
    models = importlib.util.find_spec("face_recognition_models")
    if models is None:
        pytest.skip("face_recognition_models (in requirements.txt) is missing")
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


# The realistic style.


@pytest.fixture(scope="module")
def source_rows() -> pd.DataFrame:
    """The MEGC2019 rows of the shipped CASME II sheet, keyed by sample."""
    casme2 = load_dataset_spec("casme2")
    sheet = sheet_path(casme2, None, None)
    return build_dataset_manifest(casme2, None, sheet, sheets_only=True).samples.set_index("sample")


def moving_region(info: dict, size: int, radius: float) -> np.ndarray:
    """Pixels near the landmarks that move by at least half the clip's amplitude."""
    moving = np.linalg.norm(info["landmark_motion"], axis=1) >= 0.5 * info["amplitude"]
    return near(info["landmarks"], tuple(np.flatnonzero(moving)), radius, size)


@pytest.fixture(scope="module")
def realistic_plan() -> list[synthetic.RealisticClip]:
    return plan_realistic(REALISTIC)


@pytest.fixture(scope="module")
def realistic_clips(
    realistic_plan: list[synthetic.RealisticClip],
) -> list[tuple[synthetic.RealisticClip, np.ndarray, dict]]:
    """Every clip of REALISTIC, rendered: (plan, frames, info)."""
    return [(clip, *render_realistic(REALISTIC, clip)) for clip in realistic_plan]


def test_standard_style_ignores_the_realistic_settings() -> None:
    changed = DemoSpec(**{**asdict(SMALL), "clips_per_subject": 3, "amplitude_min": 2.0,
                          "amplitude_max": 4.0})  # fmt: skip
    frames, info = render_clip(SMALL, 2, "negative", 1)
    other_frames, other_info = render_clip(changed, 2, "negative", 1)
    np.testing.assert_array_equal(frames, other_frames)
    assert info.keys() == other_info.keys() and info["onset"] == other_info["onset"]


@pytest.mark.parametrize("frames", [8, 24, 48])
def test_plan_copies_the_sheet_rows_and_fits_their_timing(
    frames: int, source_rows: pd.DataFrame
) -> None:
    spec = DemoSpec(style="realistic", subjects=2, clips_per_subject=147, frames=frames, size=32)
    rows = source_rows
    plan = plan_realistic(spec)
    assert len(plan) == 2 * 147 and len({clip.filename for clip in plan}) == len(plan)
    scale = (frames - 2) / (rows["offset"] - rows["onset"]).max()
    for clip in plan:
        row = rows.loc[clip.source]
        assert (clip.label, clip.aus) == (row["label"], row["aus"])
        assert 1 <= clip.onset < clip.apex < clip.offset <= frames
        assert clip.offset - clip.onset == max(2, round((row["offset"] - row["onset"]) * scale))
        assert re.fullmatch(rf"sub{clip.subject:02d}_{clip.label}_\d\d", clip.filename)
    # Each subject copies every row once; the two subjects' orders and starts differ.
    first = [clip for clip in plan if clip.subject == 1]
    second = [clip for clip in plan if clip.subject == 2]
    assert sorted(clip.source for clip in first) == sorted(rows.index)
    assert [clip.source for clip in first] != [clip.source for clip in second]


def test_labels_follow_the_sheet_proportions(source_rows: pd.DataFrame) -> None:
    spec = DemoSpec(style="realistic", subjects=40, clips_per_subject=12, size=32)
    labels = pd.Series([clip.label for clip in plan_realistic(spec)])
    sheet_shares = source_rows["label"].value_counts(normalize=True)  # 0.61 / 0.22 / 0.17
    shares = labels.value_counts(normalize=True)
    # 480 draws: a share's standard error is at most 0.023.
    for label in CLASS_NAMES:
        assert abs(shares[label] - sheet_shares[label]) < 0.06, (label, shares[label])


@pytest.mark.slow
def test_realistic_is_deterministic_for_a_seed(realistic_plan: list, realistic_clips: list) -> None:
    plan = plan_realistic(REALISTIC)
    assert plan == realistic_plan
    clip, frames, info = realistic_clips[3]
    again, again_info = render_realistic(REALISTIC, clip)
    np.testing.assert_array_equal(frames, again)
    np.testing.assert_array_equal(info["landmark_motion"], again_info["landmark_motion"])
    assert info["amplitude"] == again_info["amplitude"]
    other_seed = plan_realistic(DemoSpec(**{**asdict(REALISTIC), "seed": 1}))
    assert [clip.source for clip in other_seed] != [clip.source for clip in plan]


def test_motion_peaks_between_onset_and_offset(realistic_clips: list) -> None:
    """Frame-difference energy near the moving landmarks: larger inside the written window
    than outside it, with its peak inside, in every clip without a blink (a blink outside the
    window may move more)."""
    without_blink = [entry for entry in realistic_clips if not entry[2]["blink_frames"]]
    assert len(without_blink) >= 6
    for clip, frames, info in without_blink:
        grey = frames.astype(np.float64).mean(axis=-1)
        change = (grey[1:] - grey[:-1]) ** 2  # change[t]: frame t+1 to t+2 (1-based)
        energy = change[:, moving_region(info, REALISTIC.size, 3)].mean(axis=1)
        window = np.arange(clip.onset - 1, clip.offset - 1)  # changes into onset+1..offset
        assert energy[window].mean() > 1.3 * np.delete(energy, window).mean(), clip
        assert clip.onset < np.argmax(energy) + 2 <= clip.offset, clip


def test_amplitude_within_the_configured_range(realistic_plan: list, realistic_clips: list) -> None:
    scale = REALISTIC.size / 128
    amplitudes = [info["amplitude"] for _, _, info in realistic_clips]
    assert all(0.5 * scale <= amplitude <= 1.5 * scale for amplitude in amplitudes)
    assert max(amplitudes) - min(amplitudes) > 0.2 * scale  # drawn per clip
    for _, _, info in realistic_clips:
        largest = np.linalg.norm(info["landmark_motion"], axis=1).max()
        assert 0.8 * info["amplitude"] < largest <= info["amplitude"] * (1 + 1e-5)
    fixed = DemoSpec(**{**asdict(REALISTIC), "amplitude_min": 2.0, "amplitude_max": 2.0})
    _, info = render_realistic(fixed, realistic_plan[0])
    assert info["amplitude"] == pytest.approx(2.0 * scale)


UPPER_LIDS = (37, 38, 43, 44)


@pytest.mark.parametrize(
    "aus, moving, still",
    [
        ("12", {48: (-1, -1), 54: (1, -1)}, BROWS + UPPER_LIDS),  # corners up and out
        ("R12", {48: (-1, -1)}, (54,) + BROWS),  # the subject's right: the image's left
        ("L12", {54: (1, -1)}, (48,) + BROWS),
        ("15", {48: (0, 1), 54: (0, 1)}, BROWS),  # corners down
        ("4", {20: (1, 1), 21: (1, 1), 22: (-1, 1), 23: (-1, 1)}, LIP_CORNERS),  # down, together
        ("1+2", {18: (0, -1), 20: (0, -1), 23: (0, -1), 25: (0, -1)}, LIP_CORNERS),
        ("L1+L2", {23: (0, -1), 25: (0, -1)}, (18, 20) + LIP_CORNERS),
        ("17", {8: (0, -1), 57: (0, -1)}, BROWS),  # chin and lower lip up
        ("43", {37: (0, 1), 44: (0, 1)}, LIP_CORNERS),  # upper lids down
    ],
)
def test_an_action_unit_moves_its_own_landmarks(
    aus: str, moving: dict[int, tuple[int, int]], still: tuple[int, ...], realistic_plan: list
) -> None:
    clip = realistic_plan[0]._replace(aus=aus)
    _, info = render_realistic(REALISTIC, clip)
    motion = info["landmark_motion"] / info["amplitude"]  # at apex, per unit amplitude
    for landmark, signs in moving.items():
        assert np.linalg.norm(motion[landmark]) > 0.4, (landmark, motion[landmark])
        for axis, sign in enumerate(signs):
            if sign:
                assert sign * motion[landmark, axis] > 0.1, (landmark, motion[landmark])
    assert np.linalg.norm(motion[list(still)], axis=1).max() < 0.05


def test_the_field_moves_the_rendered_face_where_the_table_says(realistic_plan: list) -> None:
    """With a 3 px amplitude the movement shows in the frames: AU12 at the lip corners, AU1+2
    at the brows."""
    strong = DemoSpec(**{**asdict(REALISTIC), "amplitude_min": 6.0, "amplitude_max": 6.0})
    first = realistic_plan[0]
    changes = {}
    for aus in ("12", "1+2"):
        frames, info = render_realistic(strong, first._replace(aus=aus))
        change = np.abs(frames[first.apex - 1].astype(np.float64) - frames[first.onset - 1])
        changes[aus] = change.mean(axis=-1)
    landmarks = info["landmarks"]

    def around(aus: str, indices: tuple[int, ...]) -> float:
        return float(changes[aus][near(landmarks, indices, 4, strong.size)].mean())

    assert around("12", LIP_CORNERS) > 2 * around("1+2", LIP_CORNERS)
    assert around("1+2", BROWS) > 2 * around("12", BROWS)


def test_every_sheet_row_has_a_movement(source_rows: pd.DataFrame) -> None:
    for aus in source_rows["aus"].unique():
        assert synthetic._action_unit_bumps(aus), aus


def test_realistic_demo_is_read_by_the_class_folder_reader(tmp_path: pathlib.Path) -> None:
    sheet_file = generate_demo(tmp_path, TINY_REALISTIC)
    sheet = pd.read_excel(sheet_file, sheet_name="Sheet1", dtype={"Action Units": str})
    assert list(sheet.columns) == [*COLUMNS, "Source"]
    plan = plan_realistic(TINY_REALISTIC)
    assert list(sheet["Filename"]) == [clip.filename for clip in plan]
    assert list(sheet["Action Units"]) == [clip.aus for clip in plan]
    assert list(sheet["Source"]) == [clip.source for clip in plan]
    manifest = build_manifest(DataConfig(), tmp_path, sheet_file, "demo").samples
    by_name = manifest.set_index("filename")
    for clip in plan:
        row = by_name.loc[clip.filename]
        assert row["label"] == clip.label and str(row["aus"]) == clip.aus
        assert (row["onset"], row["apex"], row["offset"]) == (clip.onset, clip.apex, clip.offset)
        assert row["frames"] == TINY_REALISTIC.frames
    assert json.loads((tmp_path / "demo_spec.json").read_text()) == asdict(TINY_REALISTIC)


def test_marker_regenerates_when_the_style_or_a_setting_changes(tmp_path: pathlib.Path) -> None:
    standard = DemoSpec(**{**asdict(TINY_REALISTIC), "style": "standard", "clips_per_class": 1})
    generate_demo(tmp_path, standard)
    assert "Source" not in pd.read_excel(tmp_path / "demo_coding.xlsx").columns
    sheet_file = generate_demo(tmp_path, TINY_REALISTIC)
    sheet = pd.read_excel(sheet_file)
    assert "Source" in sheet.columns
    names = sorted(path.stem for path in tmp_path.glob("*/*.avi"))
    assert names == sorted(sheet["Filename"])  # the standard clips are gone
    stamp = sheet_file.stat().st_mtime_ns
    generate_demo(tmp_path, TINY_REALISTIC)
    assert sheet_file.stat().st_mtime_ns == stamp  # same spec: kept
    wider = DemoSpec(**{**asdict(TINY_REALISTIC), "amplitude_max": 2.0})
    generate_demo(tmp_path, wider)
    assert sheet_file.stat().st_mtime_ns != stamp
    assert json.loads((tmp_path / "demo_spec.json").read_text()) == asdict(wider)
    generate_demo(tmp_path, standard)
    assert "Source" not in pd.read_excel(sheet_file).columns


@pytest.mark.parametrize(
    "changes, quoted",
    [
        ({"style": "fancy"}, "got 'fancy'"),
        ({"clips_per_subject": 0}, "clips_per_subject must be an integer >= 1, got 0"),
        ({"amplitude_min": 0.0}, "amplitude_min must be in (0, 12.8], got 0.0"),
        ({"amplitude_max": 13.0}, "got 13.0"),
        ({"amplitude_max": float("inf")}, "got inf"),
        ({"amplitude_min": 1.0, "amplitude_max": 0.8}, "got 1.0 > 0.8"),
    ],
)
def test_invalid_realistic_spec_raises(changes: dict, quoted: str) -> None:
    with pytest.raises(ValueError, match=re.escape(quoted)):
        DemoSpec(**{**asdict(REALISTIC), **changes})


def test_realistic_misuse_raises(realistic_plan: list) -> None:
    clip = realistic_plan[0]
    with pytest.raises(ValueError, match="got style 'realistic'"):
        render_clip(REALISTIC, 1, "negative", 1)
    with pytest.raises(ValueError, match="got 'standard'"):
        render_realistic(SMALL, clip)
    with pytest.raises(ValueError, match=re.escape("got (5, 5, 9)")):
        render_realistic(REALISTIC, clip._replace(onset=5, apex=5, offset=9))
    with pytest.raises(ValueError, match="AU 99 of '4\\+99' has no movement"):
        render_realistic(REALISTIC, clip._replace(aus="4+99"))
    with pytest.raises(ValueError, match="names no action unit"):
        render_realistic(REALISTIC, clip._replace(aus=""))
    with pytest.raises(ValueError, match="got 148"):
        plan_realistic(DemoSpec(**{**asdict(REALISTIC), "clips_per_subject": 148}))

"""Deterministic synthetic micro-expression demo dataset.

Renders short clips of a real face (a public-domain photo with stored dlib landmarks) in which
one brief, subtle, class-specific movement happens, so the whole training pipeline can be run
end to end without licensed data. Each subject is a distinct variant of the face (shape warp,
skin tone, lighting, noise); distractors (blinks, drift, jitter, sensor noise) are independent
of the class. The output uses the "class folder" layout read by the project's normal readers.
"""

import json
import math
import os
import pathlib
from dataclasses import asdict, dataclass
from typing import NamedTuple

import cv2
import numpy as np
import pandas as pd

CLASS_NAMES = ("negative", "positive", "surprise")
ACTION_UNITS = {"negative": "4+15", "positive": "6+12", "surprise": "1+2+5"}
SHEET_COLUMNS = (
    "Subject",
    "Filename",
    "OnsetFrame",
    "ApexFrame",
    "OffsetFrame",
    "Action Units",
    "Estimated Emotion",
)
SHEET_FILENAME = "demo_coding.xlsx"
SHEET_NAME = "Sheet1"
MARKER_FILENAME = "demo_spec.json"
VIDEO_FPS = 30.0
ASSET_DIR = pathlib.Path(__file__).parent / "assets"
CROP_ENLARGEMENT = 1.6  # crop side relative to the face box: whole face plus a margin
BLINK_PROBABILITY = 0.35
BLINK_DARKENING = 0.25  # fraction of brightness lost over the eyes when fully closed


class Bump(NamedTuple):
    """A Gaussian displacement bump centred on the mean of some landmarks (source pixels)."""

    landmarks: tuple[int, ...]
    direction: tuple[float, float]  # (dx, dy) in units of the clip amplitude
    sigma: float


# Image left is the subject's right; y grows downwards.
EXPRESSION_BUMPS = {
    "negative": (  # AU4 brow lowerer (down and together), AU15 lip corner depressor
        Bump((19, 20, 21), (0.5, 0.8), 7.0),
        Bump((17, 18), (0.2, 0.6), 7.0),
        Bump((22, 23, 24), (-0.5, 0.8), 7.0),
        Bump((25, 26), (-0.2, 0.6), 7.0),
        Bump((48,), (-0.15, 1.0), 6.0),
        Bump((54,), (0.15, 1.0), 6.0),
    ),
    "positive": (  # AU6 cheek raiser, AU12 lip corner puller (up and outward)
        Bump((48,), (-0.6, -0.8), 6.0),
        Bump((54,), (0.6, -0.8), 6.0),
        Bump((1, 2, 3, 29, 31), (0.0, -0.8), 9.0),
        Bump((13, 14, 15, 29, 35), (0.0, -0.8), 9.0),
    ),
    "surprise": (  # AU1 inner and AU2 outer brow raiser, AU5 upper lid raiser
        Bump((19, 20, 21), (0.0, -1.0), 7.0),
        Bump((17, 18), (0.0, -0.9), 7.0),
        Bump((22, 23, 24), (0.0, -1.0), 7.0),
        Bump((25, 26), (0.0, -0.9), 7.0),
        Bump((37, 38), (0.0, -0.6), 4.0),
        Bump((43, 44), (0.0, -0.6), 4.0),
    ),
}
# Upper lids pulled down over the eyes; direction in units of the eye opening (source pixels).
BLINK_BUMPS = (Bump((37, 38), (0.0, 6.0), 4.0), Bump((43, 44), (0.0, 6.0), 4.0))
EYE_LANDMARKS = (tuple(range(36, 42)), tuple(range(42, 48)))
EYE_SIGMA = 5.0  # source pixels


@dataclass(frozen=True)
class DemoSpec:
    """Size and randomness of the demo dataset; validated on construction."""

    subjects: int = 6
    clips_per_class: int = 4  # per subject and class
    frames: int = 24
    size: int = 128
    amplitude: float = 3.0  # apex displacement, output pixels
    seed: int = 0

    def __post_init__(self) -> None:
        minimums = {"subjects": 2, "clips_per_class": 1, "frames": 8, "size": 32, "seed": 0}
        for name, minimum in minimums.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ValueError(f"DemoSpec.{name} must be an integer >= {minimum}, got {value!r}")
        # Larger displacements would fold the warp and stop looking like a face.
        if not (math.isfinite(self.amplitude) and 0.0 <= self.amplitude <= 0.1 * self.size):
            raise ValueError(
                f"DemoSpec.amplitude must be in [0, {0.1 * self.size}], got {self.amplitude!r}"
            )


class _Face(NamedTuple):
    """The base photo (float32 RGB) and its 68 landmarks, both in source pixels."""

    image: np.ndarray
    landmarks: np.ndarray
    center: np.ndarray  # centre of the face box
    half_side: float  # half the side of the square crop


class _SubjectView(NamedTuple):
    """Per-subject rendering state: where each working pixel samples the photo, and its look."""

    source_points: np.ndarray  # (work, work, 2) float32 source coordinates
    inverse_warp: np.ndarray  # 2x2, output-frame vectors to source-frame vectors
    shading: np.ndarray  # (work, work, 3) colour cast times lighting gradient
    noise_sigma: float
    landmarks: np.ndarray  # (68, 2) neutral landmarks in output pixels


def _load_face() -> _Face:
    """Reads the bundled photo and landmarks (no dlib needed)."""
    bgr = cv2.imread(str(ASSET_DIR / "astronaut.png"), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(ASSET_DIR / "astronaut.png")
    stored = json.loads((ASSET_DIR / "astronaut_landmarks.json").read_text())
    x0, y0, x1, y1 = stored["face_box"]
    return _Face(
        image=cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32),
        landmarks=np.asarray(stored["landmarks"], dtype=np.float64),
        center=np.array([(x0 + x1) / 2, (y0 + y1) / 2]),
        half_side=CROP_ENLARGEMENT * max(x1 - x0, y1 - y0) / 2,
    )


def _subject_view(face: _Face, spec: DemoSpec, subject: int) -> _SubjectView:
    """Draws one subject's face shape, skin tone, lighting and noise level from (seed, subject)."""
    rng = np.random.default_rng([spec.seed, subject])
    angle = math.radians(rng.uniform(-4.0, 4.0))
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    warp = rotation @ np.diag(rng.uniform(0.9, 1.1, size=2))
    shift = rng.uniform(-4.0, 4.0, size=2)  # source pixels
    inverse_warp = np.linalg.inv(warp)

    work = max(spec.size, round(2 * face.half_side))
    grid = (np.arange(work) + 0.5) / work * 2 * face.half_side - face.half_side
    crop_x, crop_y = np.meshgrid(grid, grid)
    crop_points = np.stack([crop_x, crop_y], axis=-1) - shift
    source_points = face.center + crop_points @ inverse_warp.T

    light_angle = rng.uniform(0.0, 2 * math.pi)
    gradient = math.cos(light_angle) * crop_x + math.sin(light_angle) * crop_y
    lighting = 1.0 + rng.uniform(0.05, 0.2) * gradient / face.half_side
    channel_gains = rng.uniform(0.85, 1.15, size=3) * rng.uniform(0.85, 1.1)
    crop_landmarks = (face.landmarks - face.center) @ warp.T + shift
    return _SubjectView(
        source_points=source_points.astype(np.float32),
        inverse_warp=inverse_warp,
        shading=(lighting[..., None] * channel_gains).astype(np.float32),
        noise_sigma=float(rng.uniform(1.0, 3.0)),
        landmarks=(crop_landmarks + face.half_side) / (2 * face.half_side) * spec.size - 0.5,
    )


def _gaussian(
    face: _Face, view: _SubjectView, landmarks: tuple[int, ...], sigma: float
) -> np.ndarray:
    """Gaussian weight over the working grid, centred on the mean of some source landmarks."""
    center = face.landmarks[list(landmarks)].mean(axis=0)
    squared = ((view.source_points - center) ** 2).sum(axis=-1)
    return np.exp(-squared / (2 * sigma**2)).astype(np.float32)


def _bump_field(face: _Face, view: _SubjectView, bumps: tuple[Bump, ...]) -> np.ndarray:
    """Sums Gaussian bumps over the working grid: (work, work, 2) vectors in source pixels."""
    field = np.zeros_like(view.source_points)
    for bump in bumps:
        weight = _gaussian(face, view, bump.landmarks, bump.sigma)
        field += weight[..., None] * np.asarray(bump.direction, dtype=np.float32)
    return field


def _timing(rng: np.random.Generator, frames: int) -> tuple[int, int, int]:
    """Draws 1-based onset (first third), apex (3-5 later) and offset (3-6 after apex)."""
    onset = int(rng.integers(1, max(1, min(frames // 3, frames - 6)) + 1))
    apex = onset + int(rng.integers(3, min(5, frames - 3 - onset) + 1))
    offset = apex + int(rng.integers(3, min(6, frames - apex) + 1))
    return onset, apex, offset


def _raised_cosine(frames: int, onset: int, apex: int, offset: int) -> np.ndarray:
    """Movement intensity per frame: 0 outside [onset, offset], rising smoothly to 1 at apex."""
    position = np.arange(1, frames + 1, dtype=np.float64)
    rising = 0.5 * (1 - np.cos(np.pi * (position - onset) / (apex - onset)))
    falling = 0.5 * (1 + np.cos(np.pi * (position - apex) / (offset - apex)))
    profile = np.where(position <= apex, rising, falling)
    return np.where((position >= onset) & (position <= offset), profile, 0.0)


def _render_with(
    face: _Face, view: _SubjectView, spec: DemoSpec, subject: int, class_name: str, index: int
) -> tuple[np.ndarray, dict]:
    """Renders one clip with already prepared face and subject state (see render_clip)."""
    class_index = CLASS_NAMES.index(class_name)
    rng = np.random.default_rng([spec.seed, subject, class_index, index])
    onset, apex, offset = _timing(rng, spec.frames)
    output_to_source = 2 * face.half_side / spec.size
    amplitude = spec.amplitude * rng.uniform(0.75, 1.25) * output_to_source
    expression = _raised_cosine(spec.frames, onset, apex, offset) * amplitude

    closure = np.zeros(spec.frames)
    blink_frames: list[int] = []
    if rng.random() < BLINK_PROBABILITY:
        duration = int(rng.integers(2, 4))
        start = int(rng.integers(0, spec.frames - duration + 1))
        phase = np.arange(1, duration + 1) / (duration + 1)
        closure[start : start + duration] = np.sin(np.pi * phase)
        blink_frames = list(range(start + 1, start + duration + 1))

    drift_angle = rng.uniform(0.0, 2 * math.pi)
    drift = rng.uniform(0.2, 1.0) * np.array([math.cos(drift_angle), math.sin(drift_angle)])
    jitter = rng.uniform(-0.3, 0.3, size=(spec.frames, 2))
    translations = np.linspace(0.0, 1.0, spec.frames)[:, None] * drift + jitter  # output pixels
    expression_field = _bump_field(face, view, EXPRESSION_BUMPS[class_name])
    blink_field = _bump_field(face, view, BLINK_BUMPS)
    eye_mask = sum(_gaussian(face, view, eye, EYE_SIGMA) for eye in EYE_LANDMARKS)[..., None]
    video = np.empty((spec.frames, spec.size, spec.size, 3), dtype=np.uint8)
    for frame in range(spec.frames):
        offset_source = view.inverse_warp @ (translations[frame] * output_to_source)
        points = view.source_points - offset_source.astype(np.float32)
        points -= float(expression[frame]) * expression_field
        shading = view.shading
        if closure[frame] > 0:
            points -= float(closure[frame]) * blink_field
            shading = shading * (1 - BLINK_DARKENING * float(closure[frame]) * eye_mask)
        work = cv2.remap(face.image, points, None, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
        small = cv2.resize(work * shading, (spec.size, spec.size), interpolation=cv2.INTER_AREA)
        small += view.noise_sigma * rng.standard_normal(small.shape, dtype=np.float32)
        video[frame] = np.clip(np.rint(small), 0, 255)
    info = {
        "onset": onset,
        "apex": apex,
        "offset": offset,
        "aus": ACTION_UNITS[class_name],
        "blink_frames": blink_frames,
        "landmarks": view.landmarks.copy(),
    }
    return video, info


def render_clip(
    spec: DemoSpec, subject: int, class_name: str, index: int
) -> tuple[np.ndarray, dict]:
    """Renders one demo clip, identical for identical arguments.

    Args:
        spec: Dataset specification.
        subject: 1-based subject number, at most ``spec.subjects``.
        class_name: One of ``CLASS_NAMES``.
        index: 1-based clip number within the subject and class, at most ``spec.clips_per_class``.

    Returns:
        Frames as uint8 RGB of shape (frames, size, size, 3), and an info dict with the 1-based
        ``onset``/``apex``/``offset`` frames, the ``aus`` string, the 1-based ``blink_frames``
        and the subject's neutral ``landmarks`` (68, 2) in output pixels.
    """
    _check_clip(spec, subject, class_name, index)
    face = _load_face()
    return _render_with(face, _subject_view(face, spec, subject), spec, subject, class_name, index)


def _check_clip(spec: DemoSpec, subject: int, class_name: str, index: int) -> None:
    """Raises ValueError for a clip that is not part of the spec."""
    if class_name not in CLASS_NAMES:
        raise ValueError(f"unknown class name {class_name!r}; expected one of {CLASS_NAMES}")
    if not 1 <= subject <= spec.subjects:
        raise ValueError(f"subject must be in 1..{spec.subjects}, got {subject!r}")
    if not 1 <= index <= spec.clips_per_class:
        raise ValueError(f"clip index must be in 1..{spec.clips_per_class}, got {index!r}")


def demo_filename(subject: int, class_name: str, index: int) -> str:
    """Dataset-wide unique clip name, e.g. ``sub01_negative_01``."""
    return f"sub{subject:02d}_{class_name}_{index:02d}"


def _write_video(path: pathlib.Path, frames: np.ndarray) -> None:
    """Writes RGB frames as an MJPG .avi at VIDEO_FPS."""
    height, width = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), VIDEO_FPS, (width, height))
    if not writer.isOpened():
        raise OSError(f"cannot open an MJPG video writer for {path}")
    try:
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()


def _read_marker(path: pathlib.Path) -> dict | None:
    """The spec stored by a completed generation, or None if absent or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def generate_demo(
    root: str | os.PathLike, spec: DemoSpec = DemoSpec(), *, force: bool = False
) -> pathlib.Path:
    """Writes the demo dataset under root (if not already there for the same spec).

    The marker file ``demo_spec.json`` is removed first and written last, so an interrupted
    generation is never taken as complete. Demo videos left over from another spec are removed.

    Returns:
        Path of the coding sheet ``<root>/demo_coding.xlsx``.
    """
    root = pathlib.Path(root)
    sheet_path = root / SHEET_FILENAME
    marker_path = root / MARKER_FILENAME
    if not force and sheet_path.is_file() and _read_marker(marker_path) == asdict(spec):
        return sheet_path
    marker_path.unlink(missing_ok=True)

    face = _load_face()
    rows = []
    written: set[pathlib.Path] = set()
    for subject in range(1, spec.subjects + 1):
        view = _subject_view(face, spec, subject)
        for class_name in CLASS_NAMES:
            folder = root / class_name
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(1, spec.clips_per_class + 1):
                frames, info = _render_with(face, view, spec, subject, class_name, index)
                name = demo_filename(subject, class_name, index)
                video_path = folder / f"{name}.avi"
                _write_video(video_path, frames)
                written.add(video_path)
                timing_columns = (info["onset"], info["apex"], info["offset"])
                rows.append((subject, name, *timing_columns, info["aus"], class_name))
    for class_name in CLASS_NAMES:
        for stale in (root / class_name).glob(f"sub*_{class_name}_*.avi"):
            if stale not in written:
                stale.unlink()

    sheet = pd.DataFrame(rows, columns=list(SHEET_COLUMNS))
    sheet.to_excel(sheet_path, sheet_name=SHEET_NAME, index=False, engine="openpyxl")
    partial_marker = marker_path.with_suffix(".partial")
    partial_marker.write_text(json.dumps(asdict(spec), indent=2))
    os.replace(partial_marker, marker_path)
    return sheet_path

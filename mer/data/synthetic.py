"""Deterministic synthetic micro-expression demo dataset.

Renders short clips of a real face (a public-domain photo with stored dlib landmarks) in which
one brief, subtle movement happens, so the whole training pipeline can be run end to end without
licensed data. Each subject is a distinct variant of the face (shape warp, skin tone, lighting,
noise); distractors (blinks, drift, jitter, sensor noise) are independent of the class. The
output uses the "class folder" layout read by the project's normal readers.

Two styles. `standard`: one fixed few-pixel movement per class, easy to learn (a smoke test).
`realistic`: each clip copies the action units, onset/apex/offset timing and MEGC2019 label of
a row of the shipped CASME II sheet (rows drawn per subject, so the sheet's class imbalance
stays), each AU moving its own landmarks by 0.5-1.5 px at 128 px; classes share AUs (AU4 in
negatives and positives, AU12 in all three), so it separates strong recognizers from weak ones.
"""

import json
import math
import os
import pathlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import NamedTuple

import cv2
import numpy as np
import pandas as pd

from mer.data.aus import parse_action_units
from mer.data.datasets import build_dataset_manifest, load_dataset_spec, sheet_path

STYLES = ("standard", "realistic")
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
SOURCE_COLUMN = "Source"  # realistic style: the CASME II sample a clip copies
SOURCE_DATASET = "casme2"  # realistic style: the sheet it copies (MEGC2019 classes)
REFERENCE_SIZE = 128  # frame size at which the realistic style's displacements are given
# Realistic style: frame jitter as a share of the standard's +-0.3 px, so that it keeps the
# standard's ratio to the expression (a tenth of the mean amplitude): a seated subject asked to
# keep still, whose head tremor is smaller than the movement to be recognised.
REALISTIC_JITTER = 1 / 3
REALISTIC_STREAM = 3  # seeds realistic clips apart from the standard ones (class indices 0-2)
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


class ActionUnitMovement(NamedTuple):
    """The bumps of one action unit: `side` on the subject's right half of the face (mirrored
    for the left), `midline` on the face's axis (moved whichever side the cell names)."""

    side: tuple[Bump, ...]
    midline: tuple[Bump, ...] = ()


# dlib-68 landmark pairs that swap in a mirror image (the others lie on the face's axis).
MIRROR_PAIRS = (
    *((index, 16 - index) for index in range(8)),  # jaw
    *((17 + index, 26 - index) for index in range(5)),  # brows
    (31, 35), (32, 34),  # nostrils
    (36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46),  # eyes
    (48, 54), (49, 53), (50, 52), (55, 59), (56, 58), (60, 64), (61, 63), (65, 67),  # lips
)  # fmt: skip
MIRRORED_LANDMARK = {
    **{index: index for index in range(68)},
    **dict(MIRROR_PAIRS),
    **{right: left for left, right in MIRROR_PAIRS},
}

# Image left is the subject's right; y grows downwards. Directions in units of the clip's
# amplitude, sigmas in source pixels (the face box is 90 source pixels wide).
ACTION_UNIT_MOVEMENTS = {
    1: ActionUnitMovement((Bump((19, 20, 21), (0.0, -1.0), 7.0),)),  # inner brow raiser
    2: ActionUnitMovement((Bump((17, 18), (0.0, -0.9), 7.0),)),  # outer brow raiser
    4: ActionUnitMovement(  # brow lowerer: down and together
        (Bump((19, 20, 21), (0.5, 0.8), 7.0), Bump((17, 18), (0.2, 0.6), 7.0))
    ),
    5: ActionUnitMovement((Bump((37, 38), (0.0, -0.6), 4.0),)),  # upper lid raiser
    6: ActionUnitMovement((Bump((1, 2, 3, 29, 31), (0.0, -0.8), 9.0),)),  # cheek raiser
    7: ActionUnitMovement(  # lid tightener: lower lid up, upper lid a little down
        (Bump((40, 41), (0.0, -0.7), 4.0), Bump((37, 38), (0.0, 0.3), 4.0))
    ),
    9: ActionUnitMovement(  # nose wrinkler: nostril wing up, inner brow pulled down
        (Bump((31, 32), (0.2, -0.8), 5.0), Bump((21,), (0.2, 0.5), 5.0))
    ),
    10: ActionUnitMovement((Bump((49, 50), (0.0, -0.8), 5.0),)),  # upper lip raiser
    12: ActionUnitMovement((Bump((48,), (-0.6, -0.8), 6.0),)),  # lip corner puller
    14: ActionUnitMovement(  # dimpler: lip corner pulled back, dimple beside it
        (Bump((48,), (-0.7, 0.0), 5.0), Bump((4, 48), (0.4, 0.0), 5.0))
    ),
    15: ActionUnitMovement((Bump((48,), (-0.15, 1.0), 6.0),)),  # lip corner depressor
    17: ActionUnitMovement(  # chin raiser: chin boss and lower lip pushed up
        (), (Bump((7, 8, 9), (0.0, -0.8), 8.0), Bump((56, 57, 58), (0.0, -0.6), 5.0))
    ),
    25: ActionUnitMovement(  # lips part
        (), (Bump((56, 57, 58), (0.0, 0.6), 4.0), Bump((50, 51, 52), (0.0, -0.2), 4.0))
    ),
    26: ActionUnitMovement(  # jaw drop
        (), (Bump((7, 8, 9), (0.0, 1.0), 10.0), Bump((56, 57, 58), (0.0, 0.8), 5.0))
    ),
    38: ActionUnitMovement((Bump((31,), (-0.6, 0.0), 4.0),)),  # nostril dilator
    43: ActionUnitMovement((Bump((37, 38), (0.0, 1.0), 4.0),)),  # eyes closed
}


def _mirrored(bump: Bump) -> Bump:
    """The same bump on the other half of the face."""
    landmarks = tuple(sorted(MIRRORED_LANDMARK[index] for index in bump.landmarks))
    dx, dy = bump.direction
    return Bump(landmarks, (-dx + 0.0, dy), bump.sigma)  # + 0.0: no negative zero


def _both_sides(*numbers: int) -> tuple[Bump, ...]:
    """The side bumps of some AUs on the subject's right, then the same on the left."""
    right = tuple(bump for number in numbers for bump in ACTION_UNIT_MOVEMENTS[number].side)
    return right + tuple(_mirrored(bump) for bump in right)


# The standard style's one movement per class (the order of the sum is part of its output).
EXPRESSION_BUMPS = {
    "negative": _both_sides(4) + _both_sides(15),
    "positive": _both_sides(12) + _both_sides(6),
    "surprise": _both_sides(1, 2) + _both_sides(5),
}
# Upper lids pulled down over the eyes; direction in units of the eye opening (source pixels).
BLINK_BUMPS = (Bump((37, 38), (0.0, 6.0), 4.0), Bump((43, 44), (0.0, 6.0), 4.0))
EYE_LANDMARKS = (tuple(range(36, 42)), tuple(range(42, 48)))
EYE_SIGMA = 5.0  # source pixels


@dataclass(frozen=True)
class DemoSpec:
    """Size and randomness of the demo dataset; validated on construction."""

    subjects: int = 6
    clips_per_class: int = 4  # standard: per subject and class
    frames: int = 24
    size: int = 128
    amplitude: float = 3.0  # standard: apex displacement, output pixels
    seed: int = 0
    style: str = "standard"  # one of STYLES
    clips_per_subject: int = 12  # realistic: sheet rows drawn per subject
    amplitude_min: float = 0.5  # realistic: apex displacement range, pixels at 128 px
    amplitude_max: float = 1.5

    def __post_init__(self) -> None:
        minimums = {
            "subjects": 2,
            "clips_per_class": 1,
            "frames": 8,
            "size": 32,
            "seed": 0,
            "clips_per_subject": 1,
        }
        for name, minimum in minimums.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ValueError(f"DemoSpec.{name} must be an integer >= {minimum}, got {value!r}")
        # Larger displacements would fold the warp and stop looking like a face.
        if not (math.isfinite(self.amplitude) and 0.0 <= self.amplitude <= 0.1 * self.size):
            raise ValueError(
                f"DemoSpec.amplitude must be in [0, {0.1 * self.size}], got {self.amplitude!r}"
            )
        if self.style not in STYLES:
            raise ValueError(f"DemoSpec.style must be one of {STYLES}, got {self.style!r}")
        for name in ("amplitude_min", "amplitude_max"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 < value <= 0.1 * REFERENCE_SIZE):
                raise ValueError(
                    f"DemoSpec.{name} must be in (0, {0.1 * REFERENCE_SIZE}], got {value!r}"
                )
        if self.amplitude_min > self.amplitude_max:
            raise ValueError(
                f"DemoSpec.amplitude_min must not exceed amplitude_max, got "
                f"{self.amplitude_min!r} > {self.amplitude_max!r}"
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
    """Renders one standard clip with already prepared face and subject state (see render_clip)."""
    class_index = CLASS_NAMES.index(class_name)
    rng = np.random.default_rng([spec.seed, subject, class_index, index])
    onset, apex, offset = _timing(rng, spec.frames)
    output_to_source = 2 * face.half_side / spec.size
    amplitude = spec.amplitude * rng.uniform(0.75, 1.25) * output_to_source
    expression = _raised_cosine(spec.frames, onset, apex, offset) * amplitude
    expression_field = _bump_field(face, view, EXPRESSION_BUMPS[class_name])
    video, blink_frames = _render_frames(
        face, view, spec, rng, expression, expression_field, drift_scale=1.0, jitter_scale=1.0
    )
    info = {
        "onset": onset,
        "apex": apex,
        "offset": offset,
        "aus": ACTION_UNITS[class_name],
        "blink_frames": blink_frames,
        "landmarks": view.landmarks.copy(),
    }
    return video, info


def _render_frames(
    face: _Face,
    view: _SubjectView,
    spec: DemoSpec,
    rng: np.random.Generator,
    expression: np.ndarray,
    expression_field: np.ndarray,
    drift_scale: float,
    jitter_scale: float,
) -> tuple[np.ndarray, list[int]]:
    """Warps the face by expression[frame] times the field (source pixels) in each frame, with
    the distractors drawn from rng: a blink, head drift (0.2-1 px over the clip) and jitter
    (+-0.3 px per frame) times their scales, sensor noise.

    Returns:
        Frames as uint8 RGB (frames, size, size, 3) and the 1-based frames of the blink.
    """
    output_to_source = 2 * face.half_side / spec.size
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
    ramp = np.linspace(0.0, 1.0, spec.frames)[:, None]
    translations = ramp * drift * drift_scale + jitter * jitter_scale  # output pixels
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
    return video, blink_frames


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
    if spec.style != "standard":
        raise ValueError(
            f"render_clip renders the standard style, got style {spec.style!r}; "
            "use plan_realistic and render_realistic"
        )
    if class_name not in CLASS_NAMES:
        raise ValueError(f"unknown class name {class_name!r}; expected one of {CLASS_NAMES}")
    if not 1 <= subject <= spec.subjects:
        raise ValueError(f"subject must be in 1..{spec.subjects}, got {subject!r}")
    if not 1 <= index <= spec.clips_per_class:
        raise ValueError(f"clip index must be in 1..{spec.clips_per_class}, got {index!r}")


class RealisticClip(NamedTuple):
    """One clip of the realistic style: a CASME II row placed in the demo's frames."""

    subject: int  # 1-based demo subject
    index: int  # 1-based clip number within the subject
    filename: str  # see demo_filename (numbered within the subject and label)
    label: str  # the row's MEGC2019 class, one of CLASS_NAMES
    aus: str  # the row's AU cell, as the project's parser writes it
    onset: int  # 1-based demo frames, onset < apex < offset
    apex: int
    offset: int
    source: str  # the CASME II sample, e.g. "sub05/EP02_01f"


def _source_rows() -> pd.DataFrame:
    """The MEGC2019 rows of the shipped CASME II sheet (sample, label, onset/apex/offset, aus)."""
    dataset = load_dataset_spec(SOURCE_DATASET)
    sheet = sheet_path(dataset, None, None)
    return build_dataset_manifest(dataset, None, sheet, sheets_only=True).samples


def plan_realistic(spec: DemoSpec) -> list[RealisticClip]:
    """Draws each subject's clips from the CASME II sheet's rows, identical for identical specs.

    Each subject gets `clips_per_subject` distinct rows, drawn uniformly (so labels follow the
    sheet's imbalance). The sheet's timing (200 fps) is shrunk by one factor for all rows, so
    that its longest onset-offset span fills the clip but for two frames, and each span is
    placed at a random start.

    Raises:
        ValueError: more clips per subject than the sheet has rows.
    """
    rows = _source_rows()
    if spec.clips_per_subject > len(rows):
        raise ValueError(
            f"DemoSpec.clips_per_subject must be at most the sheet's {len(rows)} rows, "
            f"got {spec.clips_per_subject!r}"
        )
    scale = (spec.frames - 2) / (rows["offset"] - rows["onset"]).max()
    clips = []
    for subject in range(1, spec.subjects + 1):
        rng = np.random.default_rng([spec.seed, subject, REALISTIC_STREAM])
        chosen = rng.choice(len(rows), size=spec.clips_per_subject, replace=False)
        counts = dict.fromkeys(CLASS_NAMES, 0)
        for index, row in enumerate(rows.iloc[chosen].itertuples(), start=1):
            span = max(2, round((row.offset - row.onset) * scale))
            rise = min(max(1, round((row.apex - row.onset) * scale)), span - 1)
            onset = int(rng.integers(1, spec.frames - span + 1))
            counts[row.label] += 1
            clips.append(
                RealisticClip(
                    subject=subject,
                    index=index,
                    filename=demo_filename(subject, row.label, counts[row.label]),
                    label=row.label,
                    aus=row.aus,
                    onset=onset,
                    apex=onset + rise,
                    offset=onset + span,
                    source=row.sample,
                )
            )
    return clips


def _action_unit_bumps(aus: str) -> tuple[Bump, ...]:
    """The bumps of an AU cell: each AU's side bumps on the side it names (both if none),
    plus its midline bumps.

    Raises:
        ValueError: an AU the movement table lacks, a side other than L or R, or no AU.
    """
    bumps: list[Bump] = []
    for unit in parse_action_units(aus):
        if unit.number not in ACTION_UNIT_MOVEMENTS:
            known = sorted(ACTION_UNIT_MOVEMENTS)
            raise ValueError(f"AU {unit.number} of {aus!r} has no movement; known: {known}")
        movement = ACTION_UNIT_MOVEMENTS[unit.number]
        if unit.side not in (None, "L", "R"):
            raise ValueError(f"AU side {unit.side!r} of {aus!r} has no movement; known: L, R")
        if unit.side in (None, "R"):  # the subject's right: the image's left
            bumps.extend(movement.side)
        if unit.side in (None, "L"):
            bumps.extend(_mirrored(bump) for bump in movement.side)
        bumps.extend(movement.midline)
    if not bumps:
        raise ValueError(f"AU cell {aus!r} names no action unit: nothing would move")
    return tuple(bumps)


def render_realistic(spec: DemoSpec, clip: RealisticClip) -> tuple[np.ndarray, dict]:
    """Renders one realistic clip (see plan_realistic), identical for identical arguments.

    The clip's AU bumps are scaled so that the largest displacement of the face at apex is the
    clip's amplitude, drawn uniformly in [amplitude_min, amplitude_max] x size / 128 pixels.

    Returns:
        Frames as uint8 RGB (frames, size, size, 3), and an info dict with the clip's fields,
        its ``amplitude`` (output pixels), the 1-based ``blink_frames``, the subject's neutral
        ``landmarks`` (68, 2) and their displacement at apex, ``landmark_motion`` (68, 2),
        both in output pixels.
    """
    if spec.style != "realistic":
        raise ValueError(f"render_realistic needs style 'realistic', got {spec.style!r}")
    if not 1 <= clip.subject <= spec.subjects:
        raise ValueError(f"subject must be in 1..{spec.subjects}, got {clip.subject!r}")
    if not 1 <= clip.onset < clip.apex < clip.offset <= spec.frames:
        raise ValueError(
            f"need 1 <= onset < apex < offset <= {spec.frames}, got "
            f"{(clip.onset, clip.apex, clip.offset)!r}"
        )
    face = _load_face()
    return _render_realistic_with(face, _subject_view(face, spec, clip.subject), spec, clip)


def _render_realistic_with(
    face: _Face, view: _SubjectView, spec: DemoSpec, clip: RealisticClip
) -> tuple[np.ndarray, dict]:
    """Renders one realistic clip with already prepared face and subject state."""
    rng = np.random.default_rng([spec.seed, clip.subject, REALISTIC_STREAM, clip.index])
    motion_scale = spec.size / REFERENCE_SIZE
    amplitude = rng.uniform(spec.amplitude_min, spec.amplitude_max) * motion_scale
    source_field = _bump_field(face, view, _action_unit_bumps(clip.aus))
    # Output pixels per source-field unit: source vectors through the subject's warp, scaled.
    output_per_source = np.linalg.inv(view.inverse_warp).T * spec.size / (2 * face.half_side)
    output_field = source_field @ output_per_source.astype(np.float32)
    peak = float(np.linalg.norm(output_field, axis=-1).max())
    expression = _raised_cosine(spec.frames, clip.onset, clip.apex, clip.offset) * amplitude
    video, blink_frames = _render_frames(
        face,
        view,
        spec,
        rng,
        expression,
        source_field / peak,
        drift_scale=motion_scale,
        jitter_scale=motion_scale * REALISTIC_JITTER,
    )
    work = source_field.shape[0]
    where = ((view.landmarks + 0.5) * work / spec.size - 0.5).astype(np.float32)[:, None, :]
    motion = cv2.remap(output_field * (amplitude / peak), where, None, cv2.INTER_LINEAR)
    info = {
        **clip._asdict(),
        "amplitude": amplitude,
        "blink_frames": blink_frames,
        "landmarks": view.landmarks.copy(),
        "landmark_motion": motion[:, 0, :].astype(np.float64),
    }
    return video, info


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


def _rendered_clips(spec: DemoSpec) -> Iterator[tuple[np.ndarray, dict]]:
    """Every clip of the spec, rendered: its frames and its sheet row (column -> value)."""
    face = _load_face()
    views = {subject: _subject_view(face, spec, subject) for subject in range(1, spec.subjects + 1)}
    if spec.style == "realistic":
        for clip in plan_realistic(spec):
            frames, _ = _render_realistic_with(face, views[clip.subject], spec, clip)
            values = (clip.subject, clip.filename, clip.onset, clip.apex, clip.offset, clip.aus)
            row = dict(zip(SHEET_COLUMNS, (*values, clip.label), strict=True))
            yield frames, {**row, SOURCE_COLUMN: clip.source}
        return
    for subject, view in views.items():
        for class_name in CLASS_NAMES:
            for index in range(1, spec.clips_per_class + 1):
                frames, info = _render_with(face, view, spec, subject, class_name, index)
                name = demo_filename(subject, class_name, index)
                timing = (info["onset"], info["apex"], info["offset"])
                values = (subject, name, *timing, info["aus"], class_name)
                yield frames, dict(zip(SHEET_COLUMNS, values, strict=True))


def generate_demo(
    root: str | os.PathLike, spec: DemoSpec = DemoSpec(), *, force: bool = False
) -> pathlib.Path:
    """Writes the demo dataset under root (if not already there for the same spec).

    The marker file ``demo_spec.json`` holds the spec; a different spec (any field, the style
    included) regenerates. It is removed first and written last, so an interrupted generation
    is never taken as complete. Demo videos left over from another spec are removed.

    Returns:
        Path of the coding sheet ``<root>/demo_coding.xlsx`` (the realistic style adds a
        ``Source`` column naming the CASME II sample each clip copies).
    """
    root = pathlib.Path(root)
    coding_sheet = root / SHEET_FILENAME
    marker_path = root / MARKER_FILENAME
    if not force and coding_sheet.is_file() and _read_marker(marker_path) == asdict(spec):
        return coding_sheet
    marker_path.unlink(missing_ok=True)

    for class_name in CLASS_NAMES:
        (root / class_name).mkdir(parents=True, exist_ok=True)
    rows = []
    written: set[pathlib.Path] = set()
    for frames, row in _rendered_clips(spec):
        video_path = root / row["Estimated Emotion"] / f"{row['Filename']}.avi"
        _write_video(video_path, frames)
        written.add(video_path)
        rows.append(row)
    for class_name in CLASS_NAMES:
        for stale in (root / class_name).glob(f"sub*_{class_name}_*.avi"):
            if stale not in written:
                stale.unlink()

    sheet = pd.DataFrame(rows)
    sheet.to_excel(coding_sheet, sheet_name=SHEET_NAME, index=False, engine="openpyxl")
    partial_marker = marker_path.with_suffix(".partial")
    partial_marker.write_text(json.dumps(asdict(spec), indent=2))
    os.replace(partial_marker, marker_path)
    return coding_sheet

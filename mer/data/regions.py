"""The facial region that a clip's action units point at, and crops of it on every frame.

The dual-branch 3D-CNN + AU model sees the whole face and a crop of one region chosen from the
clip's AUs by the published rule (first match wins, over the AUs of `au_codes` only):

- any of {4, 5, 7, 43} → "eyes": box of dlib-68 landmarks 19, 24, 15, 1
- else any of {10, 12, 14, 15, 17} → "mouth": landmarks 3, 5, 11, 13
- else any of {1, 2} → "brows": landmarks 17, 19, 24, 26
- else any of {6, 9} → "cheeks": landmarks 1, 29, 15, 3, 13
- else → "face": all 68 landmarks.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol

import cv2
import numpy as np

Box = tuple[int, int, int, int]
MINIMUM_SIDE = 2
MINIMUM_SIZE = 8
BOX_POLICIES = ("per_frame", "onset", "union")
DEFAULT_AU_CODES = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 43)


@dataclass(frozen=True)
class RegionRule:
    """One region of the rule: the AUs that select it and the landmarks that bound it.

    Attributes:
        name: "eyes", "mouth", "brows", "cheeks" or "face".
        action_units: FACS AU numbers that select the region.
        landmarks: 0-based dlib-68 landmark indices whose bounding box is the region.
    """

    name: str
    action_units: frozenset[int]
    landmarks: tuple[int, ...]


REGION_RULES: tuple[RegionRule, ...] = (
    RegionRule("eyes", frozenset({4, 5, 7, 43}), (19, 24, 15, 1)),
    RegionRule("mouth", frozenset({10, 12, 14, 15, 17}), (3, 5, 11, 13)),
    RegionRule("brows", frozenset({1, 2}), (17, 19, 24, 26)),
    RegionRule("cheeks", frozenset({6, 9}), (1, 29, 15, 3, 13)),
)
FACE = RegionRule("face", frozenset(), tuple(range(68)))

PROPORTIONAL_BOXES: MappingProxyType[str, tuple[float, float, float, float]] = MappingProxyType(
    {
        "eyes": (0.0, 0.20, 1.0, 0.55),
        "mouth": (0.20, 0.60, 0.80, 0.95),
        "brows": (0.0, 0.10, 1.0, 0.40),
        "cheeks": (0.0, 0.35, 1.0, 0.75),
        "face": (0.0, 0.0, 1.0, 1.0),
    }
)
"""Fallback regions as (left, top, right, bottom) fractions of an aligned, cropped face image.

eyes: rows 20–55 %, whole width; mouth: rows 60–95 %, columns 20–80 %; brows: rows 10–40 %,
whole width; cheeks: rows 35–75 %, whole width; face: the whole image.
"""


class Landmarker(Protocol):
    """What `crop_regions` needs of a landmarker (`mer.data.faces.FaceLandmarker` is one)."""

    def detect(self, image_rgb: np.ndarray) -> Box | None:
        """The largest face rectangle (x0, y0, x1, y1), or None."""
        ...

    def landmarks(self, image_rgb: np.ndarray, face: Box | None = None) -> np.ndarray | None:
        """(68, 2) landmark (x, y) coordinates inside `face`, or None."""
        ...


DETECTED = 0.5  # an AU detector's AU is present at p >= 0.5 (as au_f1_scores scores it)


def detected_aus(codes: Sequence[int], probabilities: Iterable[float]) -> list[int]:
    """The AUs of `codes` whose predicted probability (in `codes` order) is at least DETECTED:
    what data.regions.aus=predicted and `python -m mer predict` give the region rule."""
    return [
        code
        for code, probability in zip(codes, probabilities, strict=True)
        if probability >= DETECTED
    ]


def region_for_aus(
    action_units: Iterable[int], au_codes: Iterable[int] = DEFAULT_AU_CODES
) -> RegionRule:
    """The region of the first rule matching the clip's AUs; `FACE` when none does.

    Args:
        action_units: the clip's FACS AU numbers (e.g. from `mer.data.aus.au_numbers`).
        au_codes: the AUs taken into account; the others are ignored.
    """
    kept = frozenset(action_units) & frozenset(au_codes)
    for rule in REGION_RULES:
        if rule.action_units & kept:
            return rule
    return FACE


def _span(low: float, high: float, limit: int) -> tuple[int, int]:
    """[low, high) rounded outwards, clipped to [0, limit) and widened to `MINIMUM_SIDE`."""
    start = min(max(math.floor(low), 0), limit)
    stop = min(max(math.ceil(high), 0), limit)
    if stop - start < MINIMUM_SIDE:
        start = max(min(start, limit - MINIMUM_SIDE), 0)
        stop = start + MINIMUM_SIDE
    return start, stop


def _image_size(image_shape: tuple[int, ...]) -> tuple[int, int]:
    """(height, width) of an image shape, checked to hold a box of `MINIMUM_SIDE` pixels."""
    if len(image_shape) < 2 or min(image_shape[:2]) < MINIMUM_SIDE:
        raise ValueError(
            f"image shape must be (H, W, ...) with H, W >= {MINIMUM_SIDE}, got {image_shape}"
        )
    return int(image_shape[0]), int(image_shape[1])


def landmark_box(
    landmarks: np.ndarray,
    indices: Sequence[int],
    image_shape: tuple[int, ...],
    *,
    margin: float = 0.0,
) -> Box:
    """The bounding box of some landmarks, enlarged and clipped to the image.

    Args:
        landmarks: (N, 2) (x, y) pixel coordinates.
        indices: the landmarks to bound.
        image_shape: shape of the image the box is for, (H, W, ...).
        margin: fraction of the box's width (height) added on the left and right (top and
            bottom).

    Returns:
        (x0, y0, x1, y1) with x1, y1 exclusive: the pixels of landmarks at integer positions are
        inside. Clipped to the image, and at least 2 pixels each way.

    Raises:
        ValueError: negative margin, no indices, an index out of range, or a bad shape.
    """
    if not margin >= 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.ndim != 2 or landmarks.shape[1] != 2:
        raise ValueError(f"landmarks must be (N, 2), got {landmarks.shape}")
    indices = list(indices)
    if not indices:
        raise ValueError("landmark_box needs at least one landmark index")
    outside = [index for index in indices if not -len(landmarks) <= index < len(landmarks)]
    if outside:
        raise ValueError(f"landmark indices {outside} out of range for {len(landmarks)} landmarks")
    height, width = _image_size(image_shape)
    points = landmarks[indices]
    left, top = np.floor(points.min(axis=0))
    right, bottom = np.floor(points.max(axis=0)) + 1
    pad_x = margin * (right - left)
    pad_y = margin * (bottom - top)
    x0, x1 = _span(left - pad_x, right + pad_x, width)
    y0, y1 = _span(top - pad_y, bottom + pad_y, height)
    return x0, y0, x1, y1


def proportional_box(region: str, image_shape: tuple[int, ...]) -> Box:
    """A region as fixed fractions of the image (`PROPORTIONAL_BOXES`), for clips with no face.

    Args:
        region: a rule name ("eyes", "mouth", "brows", "cheeks", "face").
        image_shape: (H, W, ...) of an aligned, cropped face image.

    Returns:
        (x0, y0, x1, y1), x1/y1 exclusive, at least 2 pixels each way.

    Raises:
        ValueError: unknown region or bad shape.
    """
    if region not in PROPORTIONAL_BOXES:
        raise ValueError(f"unknown region {region!r}; expected one of {list(PROPORTIONAL_BOXES)}")
    height, width = _image_size(image_shape)
    left, top, right, bottom = PROPORTIONAL_BOXES[region]
    x0, x1 = _span(round(left * width), round(right * width), width)
    y0, y1 = _span(round(top * height), round(bottom * height), height)
    return x0, y0, x1, y1


@dataclass
class RegionCrops:
    """The region crops of one clip and how they were obtained.

    Attributes:
        crops: (frames, size, size, channels) uint8.
        region: the rule name ("eyes", "mouth", "brows", "cheeks", "face").
        boxes: (frames, 4) int64, the (x0, y0, x1, y1) box cropped on each frame.
        faces_found: frames whose landmarks were located (with box="onset" only the onset frame
            is landmarked, so at most 1).
        fallback: None; "reused clip box on N frames" when N frames had no landmarks of their
            own; or "no face in clip: proportional box".
    """

    crops: np.ndarray
    region: str
    boxes: np.ndarray
    faces_found: int
    fallback: str | None


def _check_frames(frames: np.ndarray) -> np.ndarray:
    """The clip as a (T, H, W, C) uint8 array with C in (1, 3) and T >= 1.

    Raises:
        ValueError: naming the bad shape or dtype.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[3] not in (1, 3) or frames.shape[0] == 0:
        raise ValueError(f"frames must be (T, H, W, C) with T >= 1, C = 1 or 3; got {frames.shape}")
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {frames.dtype}")
    _image_size(frames.shape[1:])
    return frames


def _fill_missing(boxes: list[Box | None]) -> list[Box]:
    """Each missing box replaced by the nearest earlier one, else the nearest later one."""
    first = next(box for box in boxes if box is not None)
    filled: list[Box] = []
    for box in boxes:
        filled.append(box if box is not None else (filled[-1] if filled else first))
    return filled


def _first_face(frames: np.ndarray, landmarker: Landmarker) -> tuple[int, Box | None]:
    """The index of the first frame with a face and that face; (T, None) when there is none."""
    for index, frame in enumerate(frames):
        face = landmarker.detect(frame)
        if face is not None:
            return index, face
    return len(frames), None


def _resize(crop: np.ndarray, size: int) -> np.ndarray:
    """A (h, w, C) crop as (size, size, C): INTER_AREA when shrinking both ways, else linear."""
    shrinking = min(crop.shape[:2]) >= size
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    resized = cv2.resize(crop, (size, size), interpolation=interpolation)
    return resized.reshape(size, size, crop.shape[2])


def crop_regions(
    frames: np.ndarray,
    action_units: Iterable[int],
    landmarker: Landmarker,
    *,
    size: int = 128,
    box: str = "onset",
    margin: float = 0.0,
    au_codes: Iterable[int] = DEFAULT_AU_CODES,
) -> RegionCrops:
    """Crops the region that the clip's AUs point at, on every frame.

    The face is detected once, on the first frame where one is found, and the landmarks are
    located inside that rectangle (clips are short and faces barely move). Frames before it have
    no landmarks of their own.

    Args:
        frames: (T, H, W, C) uint8, C = 3 (RGB) or 1 (grey).
        action_units: the clip's FACS AU numbers.
        landmarker: detects faces and landmarks (`mer.data.faces.shared_landmarker()`).
        size: side of the square crops.
        box: "per_frame" (the published behaviour: a box per frame, which jitters; a frame
            without landmarks reuses the nearest earlier, else later, frame's box), "onset" (the
            box of the first frame with a face, on every frame) or "union" (the union of the
            per-frame boxes: one stable box covering the movement).
        margin: fraction of the box's width/height added on each side.
        au_codes: the AUs taken into account by the region rule.

    Returns:
        The crops, the boxes and how they were found. With no face anywhere in the clip the
        region's `proportional_box` is cropped on every frame.

    Raises:
        ValueError: unknown box policy, size < 8, negative margin or a bad frame array.
    """
    if box not in BOX_POLICIES:
        raise ValueError(f"unknown box policy {box!r}; expected one of {list(BOX_POLICIES)}")
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < MINIMUM_SIZE:
        raise ValueError(f"crop size must be an int >= {MINIMUM_SIZE}, got {size!r}")
    if not margin >= 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    frames = _check_frames(frames)
    rule = region_for_aus(action_units, au_codes)
    image_shape = frames.shape[1:]

    onset, face = _first_face(frames, landmarker)
    found: list[Box | None] = [None] * len(frames)
    for index in range(onset, len(frames)):
        points = landmarker.landmarks(frames[index], face)
        if points is not None:
            found[index] = landmark_box(points, rule.landmarks, image_shape, margin=margin)
            if box == "onset":
                break

    faces_found = sum(found_box is not None for found_box in found)
    fallback = None
    if faces_found == 0:
        boxes = [proportional_box(rule.name, image_shape)] * len(frames)
        fallback = "no face in clip: proportional box"
    elif box == "onset":
        boxes = [next(found_box for found_box in found if found_box is not None)] * len(frames)
    else:
        boxes = _fill_missing(found)
        if box == "union":
            corners = np.array(boxes)
            union = (*corners[:, :2].min(axis=0).tolist(), *corners[:, 2:].max(axis=0).tolist())
            boxes = [union] * len(frames)
        if faces_found < len(frames):
            fallback = f"reused clip box on {len(frames) - faces_found} frames"

    crops = np.stack(
        [
            _resize(frame[y0:y1, x0:x1], int(size))
            for frame, (x0, y0, x1, y1) in zip(frames, boxes, strict=True)
        ]
    )
    return RegionCrops(
        crops=crops,
        region=rule.name,
        boxes=np.array(boxes, dtype=np.int64),
        faces_found=faces_found,
        fallback=fallback,
    )

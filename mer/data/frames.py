"""Clips on disk (a video file or a folder of frame images) and frame selection."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from mer.data.sheets import DataError

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})
VIDEO_EXTENSIONS = frozenset({".avi", ".mp4", ".mov", ".mkv", ".mpg", ".mpeg", ".wmv", ".m4v"})
SAMPLERS = ("first", "even", "onset_offset", "max_motion")

_LAST_NUMBER = re.compile(r"(\d+)(?!.*\d)")


def is_clip(path: Path) -> bool:
    """True for a video file or a folder holding frame images."""
    if path.is_file():
        return path.suffix.lower() in VIDEO_EXTENSIONS
    return path.is_dir() and any(
        child.suffix.lower() in IMAGE_EXTENSIONS for child in path.iterdir()
    )


def frame_files(folder: Path) -> list[Path]:
    """The image files of a frame folder, sorted by the last number in their names.

    `img10.jpg` comes after `img9.jpg`, whatever the prefix or extension.
    """
    images = [child for child in folder.iterdir() if child.suffix.lower() in IMAGE_EXTENSIONS]

    def key(path: Path) -> tuple[int, str]:
        number = file_number(path)
        return (-1 if number is None else number, path.name)

    return sorted(images, key=key)


def count_frames(path: Path) -> int:
    """Number of frames of a clip (decoded, for videos: container counts can be wrong)."""
    if path.is_dir():
        return len(frame_files(path))
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise DataError(f"cannot open video {path}: missing, corrupt or unsupported codec")
        count = 0
        while capture.grab():
            count += 1
    finally:
        capture.release()
    if count == 0:
        raise DataError(f"video {path} has no decodable frames: re-export or remove it")
    return count


def file_number(path: Path) -> int | None:
    """The frame number written in a frame file's name (its last digit run), or None."""
    match = _LAST_NUMBER.search(path.stem)
    return int(match.group(1)) if match else None


def frame_numbers(path: Path, count: int | None = None) -> list[int]:
    """The frame numbers of a clip, in order: file numbers for a folder, 1..n for a video.

    Args:
        path: the clip.
        count: a video's frame count when already known (saves decoding it again).
    """
    if path.is_dir():
        return [file_number(file) or 0 for file in frame_files(path)]
    return list(range(1, (count if count is not None else count_frames(path)) + 1))


def select_positions(
    numbers: Sequence[int],
    count: int,
    sampler: str,
    *,
    onset: int | None = None,
    offset: int | None = None,
    start: int = 0,
    motion: Sequence[float] | None = None,
    where: str = "",
) -> np.ndarray:
    """0-based positions of the `count` frames to use from a clip with these frame numbers.

    Samplers:
    - "first": `count` consecutive frames from position `start` (the published `framerange`);
    - "even": `count` positions evenly spaced over the whole clip;
    - "onset_offset": the frames numbered onset..offset (sheet frame numbers: image file
      numbers, or 1-based positions in a video) resampled to `count` positions.
    A clip too short for the request is padded by repeating frames (nearest-neighbour
    resampling), with a warning, never an error.

    Raises:
        DataError: an empty clip, an unknown sampler, or onset/offset missing or out of range.
    """
    available = len(numbers)
    if available < 1:
        raise DataError(f"{where}: the clip has no frames")
    if sampler == "first":
        positions = np.arange(start, start + count)
        if positions[-1] >= available:
            logger.warning(
                "%s: %d frames from position %d requested, the clip has %d; the last frame is "
                "repeated",
                where,
                count,
                start,
                available,
            )
            positions = np.minimum(positions, available - 1)
        return positions
    if sampler == "even":
        span = np.arange(available)
    elif sampler == "max_motion" and (onset is None or offset is None):
        span = np.arange(available)
    elif sampler in ("onset_offset", "max_motion"):
        if onset is None or offset is None:
            raise DataError(
                f"{where}: onset/offset missing; use data.sampler=even or fix the sheet"
            )
        if offset < onset:
            raise DataError(f"{where}: the onset {onset} comes after the offset {offset}")
        values = np.asarray(numbers)
        span = np.flatnonzero((values >= onset) & (values <= offset))
        if not len(span):
            raise DataError(
                f"{where}: no frame numbered {onset}..{offset}; the clip has frames "
                f"{values.min()}..{values.max()}"
            )
    else:
        raise DataError(f"unknown sampler {sampler!r}; use one of {SAMPLERS}")
    if len(span) < count:
        logger.warning(
            "%s: %d frames in the span, %d needed; frames are repeated", where, len(span), count
        )
    elif sampler == "max_motion":
        if motion is None or len(motion) != available:
            raise ValueError(f"max_motion needs one motion score per frame ({available})")
        scores = np.asarray(motion)[span]
        strongest = np.argsort(-scores, kind="stable")[:count]  # ties: the earlier frame
        return np.sort(span[strongest])
    return span[np.rint(np.linspace(0, len(span) - 1, count)).astype(int)]


def frame_changes(frames: Sequence[np.ndarray]) -> np.ndarray:
    """Per frame, the sum of absolute grey-level differences from the previous frame (0 first).

    Args:
        frames: a clip's decoded RGB frames, in order.
    """
    greys = np.stack([cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) for image in frames])
    return np.concatenate([[0.0], np.abs(np.diff(greys.astype(np.int16), axis=0)).sum(axis=(1, 2))])


def read_frames(path: Path, positions: np.ndarray) -> list[np.ndarray]:
    """Decodes the frames at `positions` (0-based) of a clip, as RGB uint8 images."""
    wanted = sorted(set(int(position) for position in positions))
    frames: dict[int, np.ndarray] = {}
    if path.is_dir():
        files = frame_files(path)
        for position in wanted:
            if position >= len(files):
                raise DataError(f"{path}: frame position {position} beyond its {len(files)} frames")
            image = cv2.imread(str(files[position]), cv2.IMREAD_COLOR)
            if image is None:
                raise DataError(f"unreadable image {files[position]}: replace or remove it")
            frames[position] = image
    else:
        capture = cv2.VideoCapture(str(path))
        try:
            if not capture.isOpened():
                raise DataError(f"cannot open video {path}: missing, corrupt or unsupported codec")
            for position in range(wanted[-1] + 1):
                ok, image = capture.read()
                if not ok:
                    raise DataError(f"{path}: could not decode frame {position} (clip too short?)")
                if position in wanted:
                    frames[position] = image
        finally:
            capture.release()
    return [cv2.cvtColor(frames[int(position)], cv2.COLOR_BGR2RGB) for position in positions]


def resize_frames(frames: Sequence[np.ndarray], size: int, grayscale: bool = False) -> np.ndarray:
    """RGB frames resized to size×size (INTER_AREA): uint8 (frames, size, size, 3 or 1)."""
    resized = []
    for image in frames:
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
        if grayscale:
            image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[..., None]
        resized.append(image)
    return np.stack(resized)


def load_clip(path: Path, positions: np.ndarray, size: int, grayscale: bool = False) -> np.ndarray:
    """The selected frames of a clip, resized: uint8 (frames, size, size, C)."""
    return resize_frames(read_frames(path, positions), size, grayscale)

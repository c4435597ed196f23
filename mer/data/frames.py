"""Clips on disk (a video file or a folder of frame images) and frame selection."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import cv2
import numpy as np

from mer.data.sheets import DataError

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})
VIDEO_EXTENSIONS = frozenset({".avi", ".mp4", ".mov", ".mkv", ".mpg", ".mpeg", ".wmv", ".m4v"})
SAMPLERS = ("first", "even", "onset_offset")

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
        match = _LAST_NUMBER.search(path.stem)
        return (int(match.group(1)) if match else -1, path.name)

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


def select_positions(
    available: int,
    count: int,
    sampler: str,
    *,
    onset: int | None = None,
    offset: int | None = None,
    start: int = 0,
    where: str = "",
) -> np.ndarray:
    """0-based positions of the `count` frames to use from a clip of `available` frames.

    Samplers:
    - "first": `count` consecutive frames from position `start` (the published `framerange`);
    - "even": `count` positions evenly spaced over the whole clip;
    - "onset_offset": onset..offset (1-based frame numbers, as in the sheets) resampled to
      `count` positions.
    A clip too short for the request is padded by repeating frames (nearest-neighbour
    resampling), with a warning, never an error.

    Raises:
        DataError: an empty clip, an unknown sampler, or onset/offset missing or out of range.
    """
    if available < 1:
        raise DataError(f"{where}: the clip has no frames")
    if sampler == "first":
        positions = np.arange(start, start + count)
        if positions[-1] >= available:
            logger.warning(
                "%s: %d frames from position %d requested, the clip has %d; the last frame is "
                "repeated",
                where, count, start, available,
            )
            positions = np.minimum(positions, available - 1)
        return positions
    if sampler == "even":
        first, last = 0, available - 1
    elif sampler == "onset_offset":
        if onset is None or offset is None:
            raise DataError(f"{where}: onset/offset missing; use data.sampler=even or fix the sheet")
        if not 1 <= onset <= offset <= available:
            raise DataError(
                f"{where}: onset {onset} / offset {offset} outside the clip's 1..{available} frames"
            )
        first, last = onset - 1, offset - 1
    else:
        raise DataError(f"unknown sampler {sampler!r}; use one of {SAMPLERS}")
    if last - first + 1 < count:
        logger.warning(
            "%s: %d frames in the span, %d needed; frames are repeated", where, last - first + 1,
            count,
        )
    return np.rint(np.linspace(first, last, count)).astype(int)


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


def load_clip(
    path: Path, positions: np.ndarray, size: int, grayscale: bool = False
) -> np.ndarray:
    """The selected frames resized to size×size (INTER_AREA): uint8 (frames, size, size, C)."""
    frames = []
    for image in read_frames(path, positions):
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
        if grayscale:
            image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[..., None]
        frames.append(image)
    return np.stack(frames)

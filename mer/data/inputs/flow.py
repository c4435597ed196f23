"""`flow`: the optical flow from the onset frame to the apex frame on the aligned face (the
whole-face "AARS" input of Dual-ATME), as float16 (size, size, channels).

The face is cropped and aligned once per clip from the onset frame's 68 landmarks
(`mer.data.flow.aligned_face`, at `data.flow.face_size`), the flow computed there (TV-L1 by
default), its channels picked, resized to `data.flow.size` and scaled (`data.flow.scaling`).
The apex is the sheet's (the manifest's `apex`); without one, `data.flow.apex` chooses. Onset,
apex and offset come from the annotation, for the held-out clips too (`mer.caveats`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import cv2
import numpy as np
import pandas as pd

from mer.config import DataConfig
from mer.data.faces import shared_landmarker
from mer.data.flow import (
    AlignedClip,
    aligned_face,
    apex_position,
    flow_channels,
    optical_flow,
    stored_flow,
)
from mer.data.frames import frame_numbers, read_frames
from mer.data.inputs import Clip, InputSpec, InputType, optional_int
from mer.data.sheets import DataError

FIELDS = ["frames", "onset", "apex", "offset"]


def flow_settings(data: DataConfig) -> dict:
    """Every setting the flow images depend on (all of `data.flow` but flow_grid's grid)."""
    settings = dataclasses.asdict(data.flow)
    del settings["grid"]
    return {"flow": settings}


def chosen_apex(data: DataConfig, path, numbers: list[int], first: int, last: int) -> int:
    """Where the apex is when the sheet gives none: `data.flow.apex`'s choice inside the window
    of positions first..last of `numbers` (the clip's frame numbers), as a position."""
    if data.flow.apex == "max_difference":
        window = np.stack(read_frames(path, np.arange(first, last + 1)))
        return first + apex_position(window, 0, last - first, fallback="max_difference")
    return apex_position(numbers, first, last, fallback="middle")  # reads no frame


def onset_and_apex(data: DataConfig, row: pd.Series, clip: Clip) -> AlignedClip:
    """The clip's onset and apex frames, aligned by the onset landmarks (computed once per
    clip for both flow inputs).

    Raises:
        DataError: no face on the onset frame, or onset/apex/offset outside the clip.
    """

    def make() -> AlignedClip:
        numbers = frame_numbers(clip.path, int(row["frames"]))
        onset, offset = optional_int(row["onset"]), optional_int(row["offset"])
        onset = numbers[0] if onset is None else onset
        offset = numbers[-1] if offset is None else offset
        apex = optional_int(row["apex"]) if "apex" in row else None
        try:
            first, last = numbers.index(onset), numbers.index(offset)
            apex_at = None if apex is None else numbers.index(apex)
        except ValueError:
            raise DataError(
                f"{clip.where}: onset {onset}, apex {apex} or offset {offset} is not a frame of "
                f"the clip ({numbers[0]}..{numbers[-1]})"
            ) from None
        if apex_at is None:
            apex_at = chosen_apex(data, clip.path, numbers, first, last)
        pair = np.stack(read_frames(clip.path, np.array([first, apex_at])))
        landmarks = shared_landmarker().landmarks(pair[0])
        if landmarks is None:
            raise DataError(f"{clip.where}: no face found on the onset frame for the flow input")
        return aligned_face(pair, landmarks, data.flow.face_size, margin=data.flow.margin)

    return clip.shared("onset_and_apex", make)


def flow_image(data: DataConfig, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The flow from `first` to `second` as the model reads it: the configured channels,
    resized to data.flow.size and scaled (float16)."""
    flow = optical_flow(first, second, data.flow.algorithm)
    channels = flow_channels(flow, data.flow.channels)
    size = data.flow.size
    if channels.shape[:2] != (size, size):
        resized = cv2.resize(channels, (size, size), interpolation=cv2.INTER_AREA)
        channels = resized.reshape(size, size, channels.shape[-1])
    if data.flow.scaling == "min_max":  # each channel to [-1, 1] within the image
        low = channels.min(axis=(0, 1), keepdims=True)
        span = channels.max(axis=(0, 1), keepdims=True) - low
        channels = np.where(span > 0, 2 * (channels - low) / np.maximum(span, 1e-12) - 1, 0)
    return stored_flow(channels.astype(np.float32))


def _make(data: DataConfig, row: pd.Series, clip: Clip) -> np.ndarray:
    aligned = onset_and_apex(data, row, clip)
    return flow_image(data, aligned.frames[0], aligned.frames[1])


def flow_input(
    name: str, make: Callable[[DataConfig, pd.Series, Clip], np.ndarray]
) -> InputType:
    """A flow input type: float16 (size, size, channels), normalised already (`flow_image`),
    keyed by every flow setting and the window's fields."""

    def spec(data: DataConfig) -> InputSpec:
        shape = (data.flow.size, data.flow.size, len(data.flow.channels))
        return InputSpec(name, shape, dtype="float16", normalization="none")

    return InputType(
        name=name, spec=spec, settings=flow_settings, fields=lambda data: FIELDS, make=make
    )


INPUT = flow_input("flow", _make)

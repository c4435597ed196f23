"""`fmer_patches`: FMER's graph-branch input, as float16 (alphas, 9, 2, 30, 7, 7): for each
magnification factor, the flow of the 9 steps between consecutive magnified frames, u and v,
in 7x7 windows around 30 brow and mouth landmarks, in pixels per frame of the
data.flow.face_size face (128 px: the repository does not say; flow and landmarks at that size).

Per clip (issue 16, "Preprocessing" 1-4):
1. the face is cropped and aligned once from the onset frame's dlib landmarks (`aligned_face`,
   data.flow.face_size and margin) and 10 frames are made on it at FMER's times
   (`flow_stream_times`; without an apex in the sheet, as SMIC, ten even steps onset ->
   offset, as their SMIC script), by data.fmer.interpolation;
2. each factor magnifies them (`magnify`, data.fmer.published_frame_order);
3. the flow between consecutive magnified frames (data.flow.algorithm, TV-L1 by default,
   replacing Black-Anandan) after a 5x5 Gaussian prefilter of sigma 5, as their MATLAB;
4. the windows around the onset landmarks moved into the crop (`landmark_patches`).

The magnification factor. The published loader reads one of 10 precomputed files per clip: a
factor drawn at random each time a training clip is read (per flow step, which its author
calls unintended), 2.0 for test clips. A cache entry here is one per sample and does not know
in which folds its clip is held out, so it holds every factor: axis 0 is data.fmer.test_alpha
first, then the other alphas in their order. The model takes one index per clip along it: a
uniform draw over all of them in training (the published distribution; per step for the
published variant) and index 0 in evaluation and prediction. One entry then serves every fold
and epoch; the cost is one flow sequence per factor (10 by default).

Onset, apex and offset come from the annotation, for the held-out clips too (`mer.caveats`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pandas as pd

from mer.config import DataConfig, FMERDataConfig
from mer.data.faces import shared_landmarker
from mer.data.flow import AlignedClip, aligned_face, flow_sequence, stored_flow
from mer.data.frames import frame_numbers, read_frames
from mer.data.inputs import Clip, InputSpec, InputType, optional_int
from mer.data.interpolation import (
    AU_STREAM_FRAMES,
    FLOW_STREAM_FRAMES,
    even_times,
    flow_stream_times,
    frame_sources,
    interpolated_frames,
)
from mer.data.magnification import magnify
from mer.data.patches import PATCH_LANDMARKS, PATCH_SIZE, landmark_patches
from mer.data.sheets import DataError

PREFILTER_SIZE = 5  # their fspecial('gaussian', 5, 5) before each flow
PREFILTER_SIGMA = 5.0
FIELDS = ["frames", "onset", "apex", "offset"]


@dataclass
class ClipWindow:
    """A clip's annotated window as positions in its frame list, the decoded frames both FMER
    streams are made from (RGB, full size, by position), and the onset frame's landmarks."""

    onset: int
    apex: int
    offset: int
    frames: dict[int, np.ndarray]
    landmarks: np.ndarray


def clip_window(row: pd.Series, clip: Clip) -> ClipWindow:
    """The clip's window, decoded once for `fmer_patches` and `au_frames` alike: only the
    frames their times fall on or between.

    Raises:
        DataError: onset, apex or offset not a frame of the clip or out of order, or no face
            on the onset frame.
    """

    def make() -> ClipWindow:
        numbers = frame_numbers(clip.path, int(row["frames"]))
        onset, offset = optional_int(row["onset"]), optional_int(row["offset"])
        onset = numbers[0] if onset is None else onset
        offset = numbers[-1] if offset is None else offset
        apex = optional_int(row["apex"]) if "apex" in row else None
        apex = offset if apex is None else apex
        try:
            onset_at, apex_at, offset_at = [numbers.index(frame) for frame in (onset, apex, offset)]
        except ValueError:
            raise DataError(
                f"{clip.where}: onset {onset}, apex {apex} or offset {offset} is not a frame of "
                f"the clip ({numbers[0]}..{numbers[-1]})"
            ) from None
        if not onset_at <= apex_at <= offset_at:
            raise DataError(
                f"{clip.where}: need onset <= apex <= offset, got {onset}, {apex}, {offset}"
            )
        times = [
            *flow_stream_times(onset_at, apex_at, offset_at),
            *even_times(onset_at, offset_at, AU_STREAM_FRAMES),
        ]
        sources = frame_sources(times)
        positions = sorted(
            {source.earlier for source in sources} | {source.later for source in sources}
        )
        frames = dict(zip(positions, read_frames(clip.path, np.array(positions)), strict=True))
        landmarks = shared_landmarker().landmarks(frames[onset_at])
        if landmarks is None:
            raise DataError(f"{clip.where}: no face found on the onset frame for the FMER inputs")
        return ClipWindow(onset_at, apex_at, offset_at, frames, landmarks)

    return clip.shared("fmer_window", make)


def interpolated_stream(
    data: DataConfig, window: ClipWindow, times: list[Fraction], size: int
) -> AlignedClip:
    """The frames at `times` on the face aligned from the onset landmarks at `size` pixels
    (data.flow.margin), made by data.fmer.interpolation; its landmarks are the onset's."""
    positions = sorted(window.frames)
    aligned = aligned_face(
        np.stack([window.frames[position] for position in positions]),
        window.landmarks,
        size,
        margin=data.flow.margin,
    )
    frames = interpolated_frames(
        dict(zip(positions, aligned.frames, strict=True)),
        frame_sources(times),
        data.fmer.interpolation,
        data.flow.algorithm,
    )
    return dataclasses.replace(aligned, frames=frames)


def alpha_order(fmer: FMERDataConfig) -> list[float]:
    """The factors along the input's axis 0: test_alpha first, then the others in order."""
    return [fmer.test_alpha, *(alpha for alpha in fmer.alphas if alpha != fmer.test_alpha)]


def _make(data: DataConfig, row: pd.Series, clip: Clip) -> np.ndarray:
    window = clip_window(row, clip)
    times = flow_stream_times(window.onset, window.apex, window.offset)
    stream = interpolated_stream(data, window, times, data.flow.face_size)
    patches = []
    for alpha in alpha_order(data.fmer):
        magnified = magnify(
            stream.frames, alpha, published_frame_order=data.fmer.published_frame_order
        )
        flows = flow_sequence(
            magnified,
            data.flow.algorithm,
            prefilter_size=PREFILTER_SIZE,
            prefilter_sigma=PREFILTER_SIGMA,
        )
        patches.append(landmark_patches(flows, stream.landmarks))
    return stored_flow(np.stack(patches))


def _settings(data: DataConfig) -> dict:
    fmer, flow = data.fmer, data.flow
    return {
        "fmer": {
            "alphas": alpha_order(fmer),
            "interpolation": fmer.interpolation,
            "published_frame_order": fmer.published_frame_order,
        },
        "flow": {"algorithm": flow.algorithm, "face_size": flow.face_size, "margin": flow.margin},
    }


def _spec(data: DataConfig) -> InputSpec:
    shape = (
        len(data.fmer.alphas),
        FLOW_STREAM_FRAMES - 1,
        2,
        len(PATCH_LANDMARKS),
        PATCH_SIZE,
        PATCH_SIZE,
    )  # (alphas, steps, u/v, landmarks, rows, columns)
    return InputSpec("fmer_patches", shape, dtype="float16", normalization="none")


INPUT = InputType(
    name="fmer_patches", spec=_spec, settings=_settings, fields=lambda data: FIELDS, make=_make
)

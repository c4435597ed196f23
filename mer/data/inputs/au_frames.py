"""`au_frames`: FMER's AU-stream input, 16 frames evenly spaced from onset to offset on the face
aligned from the onset frame's landmarks, as uint8 (16, au_size, au_size, 3).

Fractional times are made from the two frames around them as for `fmer_patches`
(data.fmer.interpolation); the crop is `aligned_face` at data.fmer.au_size (144: their cropped
faces resized to 144 px) with data.flow.margin, on the same decoded frames and landmarks as
`fmer_patches`. data.fmer.au_colour "rgb": RGB, which batches scale to [0, 1] (normalization
"scale", x / 255); "bgr_raw": the published input, BGR 0-255 read as float (normalization
"none"). Onset and offset come from the annotation, for the held-out clips too (`mer.caveats`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mer.config import DataConfig
from mer.data.inputs import Clip, InputSpec, InputType
from mer.data.inputs.fmer_patches import clip_window, interpolated_stream
from mer.data.interpolation import AU_STREAM_FRAMES, even_times


def _make(data: DataConfig, row: pd.Series, clip: Clip) -> np.ndarray:
    window = clip_window(row, clip)
    times = even_times(window.onset, window.offset, AU_STREAM_FRAMES)
    frames = interpolated_stream(data, window, times, data.fmer.au_size).frames
    return np.ascontiguousarray(frames[..., ::-1]) if data.fmer.au_colour == "bgr_raw" else frames


def _settings(data: DataConfig) -> dict:
    fmer = data.fmer
    return {
        "fmer": {
            "au_size": fmer.au_size,
            "au_colour": fmer.au_colour,
            "interpolation": fmer.interpolation,
        },
        "flow": {"algorithm": data.flow.algorithm, "margin": data.flow.margin},
    }


def _spec(data: DataConfig) -> InputSpec:
    size = data.fmer.au_size
    normalization = "scale" if data.fmer.au_colour == "rgb" else "none"
    return InputSpec("au_frames", (AU_STREAM_FRAMES, size, size, 3), normalization=normalization)


INPUT = InputType(
    name="au_frames",
    spec=_spec,
    settings=_settings,
    fields=lambda data: ["frames", "onset", "offset"],
    make=_make,
)

"""`frames`: the sampler's frames of the whole image, resized (the MLSP input)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mer.config import DataConfig
from mer.data.frames import resize_frames
from mer.data.inputs import Clip, InputSpec, InputType, frame_shape, sampled_frames_settings


def _make(data: DataConfig, row: pd.Series, clip: Clip) -> np.ndarray:
    return resize_frames(clip.selected, data.size, data.grayscale)


INPUT = InputType(
    name="frames",
    spec=lambda data: InputSpec("frames", frame_shape(data)),
    settings=sampled_frames_settings,
    fields=lambda data: ["frames", "onset", "offset"],  # the samplers read them
    make=_make,
)

"""`flow_sequence`: the optical flow between each pair of consecutive sampled frames, as float16
(data.frames - 1, size, size, channels): the motion through the clip step by step rather than
onset -> apex in one (the FMER issue's sequence input, and the input of flow-sequence models
such as a recurrent network over flow).

The sampler picks `data.frames` frames as for `frames` (`data.sampler`: onset..offset,
evenly, ...); the face is cropped and aligned once, from the first picked frame's landmarks, so
every step is measured on the same crop; each step is then made as a `flow` image (algorithm,
channels, `data.flow.size`, scaling). With the onset_offset sampler the frames come from the
annotated window, for the held-out clips too (`mer.caveats`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mer.config import DataConfig
from mer.data.faces import shared_landmarker
from mer.data.flow import aligned_face
from mer.data.inputs import Clip, InputSpec, InputType, sampled_frames_settings
from mer.data.inputs.flow import flow_image, flow_settings
from mer.data.sheets import DataError


def _settings(data: DataConfig) -> dict:
    chosen = sampled_frames_settings(data)
    del chosen["size"], chosen["grayscale"]  # the flow has its own size, and reads grey
    return {**chosen, **flow_settings(data)}


def _spec(data: DataConfig) -> InputSpec:
    shape = (data.frames - 1, data.flow.size, data.flow.size, len(data.flow.channels))
    return InputSpec("flow_sequence", shape, dtype="float16", normalization="none")


def _make(data: DataConfig, row: pd.Series, clip: Clip) -> np.ndarray:
    frames = clip.selected
    landmarks = shared_landmarker().landmarks(frames[0])
    if landmarks is None:
        raise DataError(f"{clip.where}: no face found on the first frame for the flow sequence")
    aligned = aligned_face(frames, landmarks, data.flow.face_size, margin=data.flow.margin)
    steps = zip(aligned.frames[:-1], aligned.frames[1:], strict=True)
    return np.stack([flow_image(data, earlier, later) for earlier, later in steps])


def _fields(data: DataConfig) -> list[str]:
    return ["frames", "onset", "offset"]


INPUT = InputType(
    name="flow_sequence", spec=_spec, settings=_settings, fields=_fields, make=_make
)

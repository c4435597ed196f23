"""`au_regions`: crops of the facial region that the clip's annotated AU cell points at, on the
sampler's frames (the second input of the dual-branch AU model; dlib 68-point landmarks).

The region comes from the annotation, for the held-out clips too: runs with this input say so
(`mer.caveats`).
"""

from __future__ import annotations

import dataclasses
import logging

import cv2
import numpy as np
import pandas as pd

from mer.config import DataConfig
from mer.data.aus import au_numbers
from mer.data.faces import shared_landmarker
from mer.data.inputs import Clip, InputSpec, InputType, frame_shape, sampled_frames_settings
from mer.data.regions import RegionCrops, crop_regions
from mer.data.sheets import DataError

logger = logging.getLogger(__name__)


def region_crops(data: DataConfig, frames: np.ndarray, aus: str | None, where: str) -> RegionCrops:
    """The AU region of a clip's selected frames (full resolution RGB): its name, its box on
    every frame, and the crops (RGB, size x size).

    Raises:
        DataError: the AU cell does not parse, or no face is found and data.regions.no_face
            is "error".
    """
    try:
        action_units = au_numbers(aus, where=where)
    except ValueError as error:
        raise DataError(str(error)) from error
    crops = crop_regions(
        frames,
        action_units,
        shared_landmarker(),
        size=data.size,
        box=data.regions.box,
        margin=data.regions.margin,
        au_codes=data.regions.au_codes,
    )
    if crops.faces_found == 0 and data.regions.no_face == "error":
        raise DataError(
            f"{where}: no face found in any selected frame for the {crops.region} region; check "
            "the clip, or set data.regions.no_face=proportional to crop a fixed part of the frame"
        )
    if crops.fallback:
        logger.warning("%s: %s (region %s)", where, crops.fallback, crops.region)
    return crops


def _make(data: DataConfig, row: pd.Series, clip: Clip) -> np.ndarray:
    regions = region_crops(data, clip.selected, row["aus"], clip.where).crops
    if data.grayscale and regions.shape[-1] == 3:
        regions = np.stack(
            [cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[..., None] for image in regions]
        )
    return regions


INPUT = InputType(
    name="au_regions",
    spec=lambda data: InputSpec("au_regions", frame_shape(data)),
    settings=lambda data: {
        **sampled_frames_settings(data),
        "regions": {  # `enabled` only spells the input the old way (see DataConfig.inputs)
            key: value
            for key, value in dataclasses.asdict(data.regions).items()
            if key != "enabled"
        },
    },
    fields=lambda data: ["frames", "onset", "offset", "aus"],
    make=_make,
)

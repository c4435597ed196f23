"""`flow_puzzle`: the optical flow between the onset and apex "puzzles" (the hand-crafted ROI
"HARS" input of Dual-ATME): each frame rebuilt from its eye + brow and mouth crops
(`mer.data.puzzle`), the boxes taken from the onset landmarks for both frames, at the aligned
face's size, then the flow as for `flow` (channels, resize, scaling; float16).

The authors' repository ships neither the puzzle nor the flow code: this follows the paper's
figure (see `mer.data.puzzle`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mer.config import DataConfig
from mer.data.inputs import Clip
from mer.data.inputs.flow import flow_image, flow_input, onset_and_apex
from mer.data.puzzle import puzzle_image


def _make(data: DataConfig, row: pd.Series, clip: Clip) -> np.ndarray:
    aligned = onset_and_apex(data, row, clip)
    size = data.flow.face_size - data.flow.face_size % 2  # a puzzle's side is even
    first, second = (puzzle_image(frame, aligned.landmarks, size) for frame in aligned.frames)
    return flow_image(data, first, second)


INPUT = flow_input("flow_puzzle", _make)

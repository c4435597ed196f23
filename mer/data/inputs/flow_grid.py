"""`flow_grid`: the hand-crafted feature of the `flow_baseline` family, as float32
(grid, grid, 2): the onset -> apex optical flow on the aligned face (as for `flow`, computed
once per clip for every flow input), its median over the face removed from each of u and v
(head drift and small misalignment move the whole face alike), then the mean u and v over each
cell of a `data.flow.grid` x `data.flow.grid` grid.

The flow is in pixels of the `data.flow.face_size` face; `data.flow.size`, `channels` and
`scaling` (the flow images' settings) do not apply. Onset and apex come from the annotation,
for the held-out clips too (`mer.caveats`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mer.config import DataConfig
from mer.data.flow import optical_flow
from mer.data.inputs import Clip, InputSpec, InputType
from mer.data.inputs.flow import FIELDS, onset_and_apex


def grid_means(flow: np.ndarray, grid: int) -> np.ndarray:
    """(grid, grid, 2) means of an (H, W, 2) flow over a grid of near-equal cells, after
    the flow's median over the whole image is removed from each channel.

    Raises:
        ValueError: a grid that does not fit the flow, or a flow that is not (H, W, 2).
    """
    flow = np.asarray(flow, dtype=np.float32)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow must be (H, W, 2), got {flow.shape}")
    if isinstance(grid, bool) or not isinstance(grid, int) or not 1 <= grid <= min(flow.shape[:2]):
        raise ValueError(f"grid must be an int in [1, {min(flow.shape[:2])}], got {grid!r}")
    residual = flow - np.median(flow, axis=(0, 1), keepdims=True)
    rows = np.array_split(np.arange(flow.shape[0]), grid)
    columns = np.array_split(np.arange(flow.shape[1]), grid)
    return np.array(
        [
            [residual[row[0] : row[-1] + 1, column[0] : column[-1] + 1].mean(axis=(0, 1))
             for column in columns]
            for row in rows
        ],
        dtype=np.float32,
    )


def _settings(data: DataConfig) -> dict:
    flow = data.flow
    return {
        "flow": {
            "algorithm": flow.algorithm,
            "apex": flow.apex,
            "face_size": flow.face_size,
            "margin": flow.margin,
            "grid": flow.grid,
        }
    }


def _spec(data: DataConfig) -> InputSpec:
    return InputSpec("flow_grid", (data.flow.grid, data.flow.grid, 2), "float32", "none")


def _make(data: DataConfig, row: pd.Series, clip: Clip) -> np.ndarray:
    aligned = onset_and_apex(data, row, clip)
    flow = optical_flow(aligned.frames[0], aligned.frames[1], data.flow.algorithm)
    return grid_means(flow, data.flow.grid)


INPUT = InputType(
    name="flow_grid", spec=_spec, settings=_settings, fields=lambda data: FIELDS, make=_make
)

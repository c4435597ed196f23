"""FMER's graph-branch input: 7x7 windows of each flow step around 30 dlib-68 landmarks, the
brows (points 17-26) and the mouth (48-67), in that order (their `landmarks.py`)."""

from __future__ import annotations

import numpy as np

from mer.data.faces import LANDMARK_COUNT

BROWS = tuple(range(17, 27))
MOUTH = tuple(range(48, 68))
PATCH_LANDMARKS = BROWS + MOUTH
PATCH_SIZE = 7  # window [p - 3, p + 4) around the landmark's pixel p


def landmark_pixels(landmarks: np.ndarray) -> np.ndarray:
    """The pixel (x, y) nearest each of the 30 patch landmarks, halves rounded up: (30, 2) int.

    Raises:
        ValueError: landmarks that are not (68, 2) finite (x, y).
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.shape != (LANDMARK_COUNT, 2) or not np.isfinite(landmarks).all():
        raise ValueError(f"landmarks must be (68, 2) finite (x, y), got shape {landmarks.shape}")
    return np.floor(landmarks[list(PATCH_LANDMARKS)] + 0.5).astype(np.int64)


def landmark_patches(flows: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The window [p - 3, p + 4) of rows and of columns around each patch landmark's pixel p,
    for every flow step and channel.

    Rows follow y and columns x (their MagNet script indexes rows by x; its flow-patch code
    is not published). A window reaching past the border repeats the border pixel (as if the
    flow were edge-padded), so every window is 7x7 and centred on its landmark; a landmark
    off the image gives the nearest border pixels.

    Args:
        flows: (steps, H, W, 2) flow, channels u, v (e.g. `mer.data.flow.flow_sequence`).
        landmarks: (68, 2) dlib (x, y) landmarks in the flow's pixels (FMER: of the onset frame).

    Returns:
        (steps, 2, 30, 7, 7) float32: step, u/v, landmark (brows, then mouth), row, column.

    Raises:
        ValueError: flows that are not (steps, H, W, 2), or bad landmarks.
    """
    flows = np.asarray(flows, dtype=np.float32)
    if flows.ndim != 4 or flows.shape[3] != 2 or 0 in flows.shape:
        raise ValueError(f"flows must be (steps, H, W, 2), got {flows.shape}")
    height, width = flows.shape[1:3]
    pixels = landmark_pixels(landmarks)
    offsets = np.arange(PATCH_SIZE) - PATCH_SIZE // 2  # -3 .. 3
    rows = np.clip(pixels[:, 1, None] + offsets, 0, height - 1)  # (30, 7)
    columns = np.clip(pixels[:, 0, None] + offsets, 0, width - 1)
    windows = flows[:, rows[:, :, None], columns[:, None, :]]  # (steps, 30, 7, 7, 2)
    return np.ascontiguousarray(np.moveaxis(windows, -1, 1))

"""What a model is built from besides its own settings: the spec of each input.

It sits outside `mer.data` and `mer.models` so that models are built from specs alone, without
importing the data stage, and the data stage declares specs without importing Keras.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """One model input as the network sees it."""

    name: str  # the input type's name, e.g. "frames" (mer/data/inputs/<name>.py)
    shape: tuple[int, ...]  # per sample, e.g. (frames, height, width, channels)
    dtype: str = "uint8"  # as stored in the cache
    normalization: str | None = None  # None: data.normalization; else this fixed mode

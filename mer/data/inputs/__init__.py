"""Model inputs as named types: each turns one sample (its decoded clip) into one array.

`data.inputs` names them, e.g. `[frames]`, `[frames, au_regions]`. The type `NAME` is the module
`mer.data.inputs.NAME`, whose `INPUT` (an `InputType`) declares the array's shape and dtype, the
settings and manifest fields its cache entry depends on, and how batches normalise it.
Preprocessing, the cache, batches, predict, explain and the benchmark take names and shapes
from here, so adding an input is one module.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import pkgutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mer.config import ConfigError, DataConfig
from mer.data.frames import frame_changes, frame_numbers, read_frames, select_positions
from mer.specs import InputSpec


@dataclasses.dataclass(frozen=True)
class InputType:
    """How one input type is made and keyed (see the module docstring)."""

    name: str
    spec: Callable[[DataConfig], InputSpec]
    settings: Callable[[DataConfig], dict[str, Any]]  # the config values its arrays depend on
    fields: Callable[[DataConfig], list[str]]  # the manifest fields it reads
    make: Callable[[DataConfig, pd.Series, Clip], np.ndarray]


def known_inputs() -> list[str]:
    """The names of every input type (the modules of this package)."""
    return sorted(module.name for module in pkgutil.iter_modules(__path__))


def input_type(name: str) -> InputType:
    """The input type `name`.

    Raises:
        ConfigError: no such type, with the known ones.
    """
    if name not in known_inputs():
        known = ", ".join(known_inputs())
        raise ConfigError(f"unknown input {name!r} in data.inputs; known: {known}")
    return importlib.import_module(f"{__name__}.{name}").INPUT


def input_types(data: DataConfig) -> list[InputType]:
    """The configured inputs, in model-input order."""
    return [input_type(name) for name in data.input_names()]


def input_specs(data: DataConfig) -> list[InputSpec]:
    """Shape, dtype and normalisation of every configured input."""
    return [kind.spec(data) for kind in input_types(data)]


def sampled_frames_settings(data: DataConfig) -> dict[str, Any]:
    """The settings that choose and size a clip's frames (shared by the frame-based inputs)."""
    return {
        "frames": data.frames,
        "size": data.size,
        "grayscale": data.grayscale,
        "sampler": data.sampler,
        "frame_offset": data.frame_offset,
    }


def frame_shape(data: DataConfig) -> tuple[int, int, int, int]:
    """(frames, size, size, channels) of a frame-based input."""
    return (data.frames, data.size, data.size, 1 if data.grayscale else 3)


def optional_int(value) -> int | None:
    """A manifest cell as an int, None when blank."""
    return None if value is None or pd.isna(value) else int(value)


def clip_label(row: pd.Series) -> str:
    """How messages name a manifest row's clip."""
    return f"clip {row['sample']} ({row['path']})"


class Clip:
    """A sample's media, decoded on demand and at most once for all of its inputs."""

    def __init__(self, data: DataConfig, row: pd.Series):
        self.data = data
        self.row = row
        self.path = Path(row["path"])
        self.where = clip_label(row)
        self._shared: dict[str, Any] = {}

    def shared(self, name: str, make: Callable[[], Any]) -> Any:
        """`make()`, computed once per clip for every input that asks for `name` (the aligned
        face both flow inputs start from, say)."""
        if name not in self._shared:
            self._shared[name] = make()
        return self._shared[name]

    @functools.cached_property
    def selected(self) -> np.ndarray:
        """The frames the sampler picks: (frames, height, width, 3) RGB uint8, full size.

        Raises:
            DataError: the clip cannot be decoded, or onset/offset do not fit it.
        """
        return np.stack(selected_frames(self.data, self.row))


def selected_frames(data: DataConfig, row: pd.Series) -> list[np.ndarray]:
    """The frames of a manifest row's clip that the sampler picks, decoded (RGB, full size).

    Raises:
        DataError: the clip cannot be decoded, or onset/offset do not fit it.
    """
    path = Path(row["path"])
    numbers = frame_numbers(path, int(row["frames"]))
    motion = clip = None
    if data.sampler == "max_motion":  # decode the whole clip once, pick from it
        clip = read_frames(path, np.arange(len(numbers)))
        motion = frame_changes(clip)
    positions = select_positions(
        numbers,
        data.frames,
        data.sampler,
        onset=optional_int(row["onset"]),
        offset=optional_int(row["offset"]),
        start=data.frame_offset,
        motion=motion,
        where=clip_label(row),
    )
    if clip is None:
        return read_frames(path, positions)
    return [clip[position] for position in positions]

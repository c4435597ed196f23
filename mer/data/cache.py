"""Preprocessed clips stored once as uint8 `.npy` files, keyed by the clip and the settings."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class ClipCache:
    """A folder of preprocessed clips, one subfolder per preprocessing-settings digest.

    A clip's key includes its path, size and modification time, so an edited file is redone.
    Files are written to a temporary name and renamed, so an interrupted run never leaves a
    half-written entry that a later run would trust.
    """

    def __init__(self, directory: str | Path, settings: Mapping[str, Any]):
        self.settings = dict(settings)
        self.directory = Path(directory) / _digest(self.settings)

    def path_for(self, clip_path: str | Path) -> Path:
        """Where the preprocessed form of the clip at `clip_path` lives."""
        clip_path = Path(clip_path)
        status = clip_path.stat()
        key = _digest([str(clip_path.resolve()), status.st_size, status.st_mtime_ns])
        return self.directory / f"{clip_path.stem}-{key}.npy"

    def load_or_make(
        self, clip_path: str | Path, make: Callable[[], np.ndarray]
    ) -> tuple[np.ndarray, bool]:
        """The cached clip, memory-mapped, made by `make()` and stored first if absent.

        Returns:
            (array, hit): hit is True when nothing had to be made.
        """
        target = self.path_for(clip_path)
        if target.is_file():
            return np.load(target, mmap_mode="r"), True
        array = np.ascontiguousarray(make(), dtype=np.uint8)
        self.directory.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as stream:
                np.save(stream, array)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return np.load(target, mmap_mode="r"), False

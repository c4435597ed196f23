"""Preprocessed inputs stored once as `.npy` files, one per sample, input and settings."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def digest(value: Any) -> str:
    """A short stable hash of a JSON-able value (dict keys in any order)."""
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def media_signature(path: str | Path) -> list:
    """What identifies a clip's media as they are now: the resolved path with the size and
    modification time of a video file, or of every file of a frame folder (by name), so that
    editing, adding or removing one frame changes it."""
    path = Path(path).resolve()
    if not path.is_dir():
        status = path.stat()
        return [str(path), status.st_size, status.st_mtime_ns]
    files = sorted(child for child in path.iterdir() if child.is_file())
    return [str(path), [[file.name, *_size_and_time(file)] for file in files]]


def _size_and_time(path: Path) -> tuple[int, int]:
    status = path.stat()
    return status.st_size, status.st_mtime_ns


class ClipCache:
    """A folder of preprocessed clips, one subfolder per preprocessing-settings digest.

    An entry is keyed by its sample, not its media path: several samples can share one clip
    (CAS(ME)^3 keeps several expressions in one take) and differ in onset, offset or AUs.
    The caller's key names everything the entry was made from (see
    `mer.data.sources.sample_key`). Files are written to a temporary name and renamed, so an
    interrupted run never leaves a half-written entry that a later run would trust.
    """

    def __init__(self, directory: str | Path, settings: Mapping[str, Any]):
        self.settings = dict(settings)
        self.directory = Path(directory) / digest(self.settings)

    def path_for(self, name: str, key: Mapping[str, Any]) -> Path:
        """Where the entry named `name` (a sample id, for people reading the folder) made
        from `key` lives."""
        return self.directory / f"{_UNSAFE.sub('_', name).strip('_')}-{digest(key)}.npy"

    def load_or_make(
        self,
        name: str,
        key: Mapping[str, Any],
        make: Callable[[], np.ndarray],
        dtype: str = "uint8",
    ) -> tuple[np.ndarray, bool]:
        """The cached entry, memory-mapped, made by `make()` and stored as `dtype` if absent.

        Returns:
            (array, hit): hit is True when nothing had to be made.
        """
        target = self.path_for(name, key)
        if target.is_file():
            return np.load(target, mmap_mode="r"), True
        array = np.ascontiguousarray(make(), dtype=dtype)
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

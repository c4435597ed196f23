"""From the data config to a manifest and preprocessed clips: the data stage of an experiment."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from mer.config import DataConfig, resolve_path
from mer.data.cache import ClipCache
from mer.data.frames import load_clip, select_positions
from mer.data.manifest import build_manifest
from mer.data.sheets import DataError
from mer.data.synthetic import DemoSpec, generate_demo

logger = logging.getLogger(__name__)

DEMO_ROOT = "data/demo"
PREPROCESSING_VERSION = 1  # bump when frame loading changes, so old cache entries are not reused


@dataclasses.dataclass(frozen=True)
class DatasetSource:
    """Where a dataset's media and sheet are, and its name in run folders."""

    root: Path
    sheet: Path
    name: str
    demo: bool


def resolve_source(data: DataConfig) -> DatasetSource:
    """The configured dataset, or the built-in demo (generated on first use) when no root is set."""
    if data.root is None:
        if data.sheet is not None:
            raise DataError("data.sheet is set but data.root is not: set both, or neither for the demo")
        root = resolve_path(DEMO_ROOT)
        spec = DemoSpec(**dataclasses.asdict(data.demo))
        sheet = generate_demo(root, spec)
        return DatasetSource(root, sheet, data.name or "demo", True)
    if data.sheet is None:
        raise DataError("data.root is set but data.sheet is not: the sheet gives each clip's subject")
    root = resolve_path(data.root)
    return DatasetSource(root, resolve_path(data.sheet), data.name or root.name, False)


def load_manifest(data: DataConfig, source: DatasetSource) -> pd.DataFrame:
    """The manifest of the source's clips (see `mer.data.manifest`)."""
    return build_manifest(data, source.root, source.sheet, source.name)


def preprocessing_settings(data: DataConfig) -> dict:
    """The settings that change a preprocessed clip: they key the cache."""
    return {
        "version": PREPROCESSING_VERSION,
        "frames": data.frames,
        "size": data.size,
        "grayscale": data.grayscale,
        "sampler": data.sampler,
        "frame_offset": data.frame_offset,
    }


def _optional_int(value) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


def preprocess(data: DataConfig, manifest: pd.DataFrame) -> tuple[list[np.ndarray], int]:
    """Every clip of the manifest as uint8 (frames, size, size, channels), through the cache.

    Returns:
        (clips, cache hits).
    """
    cache = ClipCache(resolve_path(data.cache_dir), preprocessing_settings(data))

    def maker(row: pd.Series):
        def make() -> np.ndarray:
            positions = select_positions(
                int(row["frames"]),
                data.frames,
                data.sampler,
                onset=_optional_int(row["onset"]),
                offset=_optional_int(row["offset"]),
                start=data.frame_offset,
                where=f"clip {row['sample']} ({row['path']})",
            )
            return load_clip(Path(row["path"]), positions, data.size, data.grayscale)

        return make

    makers = [maker(row) for _, row in manifest.iterrows()]
    clips, hits = cache.prepare(list(manifest["path"]), makers)
    logger.info("%d of %d clips came from the cache %s", hits, len(clips), cache.directory)
    return clips, hits

"""From the data config to a manifest and preprocessed clips: the data stage of an experiment."""

from __future__ import annotations

import dataclasses
import logging
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from mer.config import DataConfig, resolve_path
from mer.data.aus import au_numbers
from mer.data.cache import ClipCache, digest, media_signature
from mer.data.datasets import (
    DatasetSpec,
    build_composite_manifest,
    build_dataset_manifest,
    build_folder_manifest,
    load_dataset_spec,
    sheet_path,
)
from mer.data.faces import shared_landmarker
from mer.data.frames import (
    frame_changes,
    frame_numbers,
    read_frames,
    resize_frames,
    select_positions,
)
from mer.data.manifest import PROBLEM_COLUMNS, Manifest, build_manifest, problem_row
from mer.data.regions import RegionCrops, crop_regions
from mer.data.sheets import DataError
from mer.data.synthetic import DemoSpec, generate_demo

logger = logging.getLogger(__name__)

DEMO_ROOT = "data/demo"
# bump when preprocessing changes, so old cache entries are not reused (4: entries per sample)
PREPROCESSING_VERSION = 4


@dataclasses.dataclass(frozen=True)
class DatasetSource:
    """Where a dataset's media and sheet are, and its name in run folders."""

    root: Path | None
    sheet: Path | None
    name: str
    demo: bool
    spec: DatasetSpec | None = None  # None: the published class-folder layout

    def classes(self, data: DataConfig) -> list[str]:
        """Label order: the protocol's for a dataset layout, data.classes for class folders."""
        return data.classes if self.spec is None else self.spec.classes(data.protocol)

    def resolved(self, data: DataConfig) -> DataConfig:
        """`data` with what the dataset decides filled in: the label order and the sampler."""
        return dataclasses.replace(
            data, classes=self.classes(data), sampler=resolve_sampler(data, self.spec)
        )


def resolve_sampler(data: DataConfig, spec: DatasetSpec | None) -> str:
    """The configured sampler, else the dataset's default (`first`, the published framerange,
    for class folders)."""
    if data.sampler is not None:
        return data.sampler
    return "first" if spec is None else spec.sampler


def resolve_source(data: DataConfig) -> DatasetSource:
    """The configured dataset, or the built-in demo (generated on first use) when none is set."""
    if data.layout != "class_folders":
        spec = load_dataset_spec(data.layout)
        if spec.parts:
            return DatasetSource(None, None, data.name or spec.name, False, spec)
        root = resolve_path(data.root) if data.root is not None else None
        if root is None:
            raise DataError(f"data.layout={data.layout} needs data.root (the dataset folder)")
        return DatasetSource(
            root, sheet_path(spec, root, data.sheet), data.name or spec.name, False, spec
        )
    if data.root is None:
        if data.sheet is not None:
            raise DataError(
                "data.sheet is set but data.root is not: set both, or neither for the demo"
            )
        root = resolve_path(DEMO_ROOT)
        spec = DemoSpec(**dataclasses.asdict(data.demo))
        sheet = generate_demo(root, spec)
        return DatasetSource(root, sheet, data.name or "demo", True)
    if data.sheet is None:
        raise DataError(
            "data.root is set but data.sheet is not: the sheet gives each clip's subject"
        )
    root = resolve_path(data.root)
    return DatasetSource(root, resolve_path(data.sheet), data.name or root.name, False)


def load_manifest(data: DataConfig, source: DatasetSource) -> Manifest:
    """The source's samples and the problems met (see `mer.data.manifest`, `.datasets`)."""
    if source.spec is None:
        return build_manifest(data, source.root, source.sheet, source.name)
    if source.spec.parts:
        return build_composite_manifest(source.spec, data.roots, data.sheets, data.ground_truth)
    if source.spec.class_folders:
        return build_folder_manifest(source.spec, source.root, source.sheet)
    return build_dataset_manifest(source.spec, source.root, source.sheet, data.protocol)


def usable_samples(data: DataConfig, manifest: Manifest) -> pd.DataFrame:
    """The samples to train on; a problem that removed one stops the run unless on_bad=skip.

    Raises:
        DataError: naming the first problems and the ways out.
    """
    bad = manifest.excluded_problems()
    if len(bad) and data.on_bad == "error":
        listing = "; ".join(f"{row.where}: {row.problem}" for row in bad.head(3).itertuples())
        raise DataError(
            f"{len(bad)} sample(s) unusable, e.g. {listing}. See all with `python -m mer "
            "manifest`, fix them, or --set data.on_bad=skip to leave them out (listed in the "
            "run folder's skipped.csv)"
        )
    for row in bad.itertuples():
        logger.warning("skipped %s: %s (%s)", row.sample or "-", row.problem, row.where)
    return manifest.samples


def preprocessing_settings(data: DataConfig) -> dict:
    """The settings that change a preprocessed clip: they key the cache."""
    settings = {
        "version": PREPROCESSING_VERSION,
        "frames": data.frames,
        "size": data.size,
        "grayscale": data.grayscale,
        "sampler": data.sampler,
        "frame_offset": data.frame_offset,
    }
    if data.regions.enabled:
        settings["regions"] = dataclasses.asdict(data.regions)
    return settings


def sample_fields(data: DataConfig) -> list[str]:
    """The manifest fields that preprocessing reads from a sample's row: its frame count and
    window (the samplers), and its AU cell when the AU-region crop is made."""
    return ["frames", "onset", "offset", *(["aus"] if data.regions.enabled else [])]


def sample_key(data: DataConfig, row: pd.Series) -> dict:
    """What a sample's preprocessed arrays are made from, besides the settings: its media as
    they are on disk and every row field preprocessing reads. It keys the cache entry."""
    fields = {
        field: None if pd.isna(row[field]) else str(row[field]) for field in sample_fields(data)
    }
    try:
        media = media_signature(row["path"])
    except OSError as error:
        raise DataError(f"{clip_label(row)}: cannot read it ({error.strerror})") from error
    return {"media": media, **fields}


def _optional_int(value) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


def clip_label(row: pd.Series) -> str:
    """How messages name a manifest row's clip."""
    return f"clip {row['sample']} ({row['path']})"


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
        onset=_optional_int(row["onset"]),
        offset=_optional_int(row["offset"]),
        start=data.frame_offset,
        motion=motion,
        where=clip_label(row),
    )
    return read_frames(path, positions) if clip is None else [clip[p] for p in positions]


@dataclasses.dataclass
class Preprocessed:
    """The clips that could be prepared, and what became of the others."""

    streams: list[list[np.ndarray]]  # one list of (frames, size, size, channels) per input
    rows: list[int]  # manifest positions of those clips
    keys: list[str]  # per clip: a digest of its cache key and the settings (changes with either)
    hits: int  # clips read back from the cache
    failures: pd.DataFrame  # PROBLEM_COLUMNS: clips that failed (only with data.on_bad=skip)


def make_inputs(data: DataConfig, row: pd.Series) -> np.ndarray:
    """A sample's model inputs, made from its media without the cache: the selected frames
    resized, and with regions enabled the AU-region crops beside them.

    Returns:
        uint8 (frames, size, size, channels), or (2, frames, size, size, channels).
    """
    frames = selected_frames(data, row)
    faces = resize_frames(frames, data.size, data.grayscale)
    if not data.regions.enabled:
        return faces
    regions = _region_crops(data, np.stack(frames), row["aus"], clip_label(row))
    return np.stack([faces, regions])


def preprocess(data: DataConfig, manifest: pd.DataFrame) -> Preprocessed:
    """Every clip of the manifest as uint8 arrays, through the cache: decoding, frame
    selection, landmarks and cropping run once per clip and settings (tqdm shows clips/s).

    A clip whose media fail here (an unreadable image, a video shorter than it claims) stops
    the run with its name, or with data.on_bad=skip is left out and listed.

    Raises:
        DataError: a clip failed and data.on_bad is "error".
    """
    cache = ClipCache(resolve_path(data.cache_dir), preprocessing_settings(data))
    arrays, rows, keys, failures, hits = [], [], [], [], 0
    records = list(manifest.iterrows())
    for position, (_, row) in enumerate(tqdm(records, desc="preprocessing", unit="clip")):
        try:
            key = sample_key(data, row)
            array, hit = cache.load_or_make(row["sample"], key, partial(make_inputs, data, row))
        except DataError as error:
            if data.on_bad == "error":
                raise DataError(f"{error} (or --on-bad skip to leave the clip out)") from error
            logger.warning("skipped %s: %s", row["sample"], error)
            failures.append(problem_row(row["path"], row["sample"], str(error)))
            continue
        arrays.append(array)
        rows.append(position)
        keys.append(digest([cache.settings, key]))
        hits += hit
    logger.info("%d of %d clips came from the cache %s", hits, len(arrays), cache.directory)
    streams = (
        [arrays]
        if not data.regions.enabled
        else [[array[0] for array in arrays], [array[1] for array in arrays]]
    )
    failed = pd.DataFrame(failures, columns=PROBLEM_COLUMNS)
    return Preprocessed(streams, rows, keys, hits, failed)


def region_crops(data: DataConfig, frames: np.ndarray, aus: str | None, where: str) -> RegionCrops:
    """The AU region of a clip's selected frames (full resolution RGB): its name, its box on
    every frame, and the crops (RGB, size x size).

    Raises:
        DataError: the AU cell does not parse.
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


def _region_crops(data: DataConfig, frames: np.ndarray, aus: str | None, where: str) -> np.ndarray:
    """The AU-region crops of a clip's selected frames, as the model reads them."""
    regions = region_crops(data, frames, aus, where).crops
    if data.grayscale and regions.shape[-1] == 3:
        regions = np.stack(
            [cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[..., None] for image in regions]
        )
    return regions

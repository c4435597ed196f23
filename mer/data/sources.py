"""From the data config to a manifest and preprocessed clips: the data stage of an experiment."""

from __future__ import annotations

import dataclasses
import logging
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from mer.config import DataConfig, resolve_path
from mer.data.cache import ClipCache, digest, media_signature
from mer.data.datasets import (
    DatasetSpec,
    build_composite_manifest,
    build_dataset_manifest,
    build_folder_manifest,
    load_dataset_spec,
    sheet_path,
)
from mer.data.inputs import Clip, InputType, input_types
from mer.data.manifest import PROBLEM_COLUMNS, Manifest, build_manifest, problem_row
from mer.data.regions import FACE, REGION_RULES
from mer.data.sheets import DataError
from mer.data.synthetic import DemoSpec, generate_demo

logger = logging.getLogger(__name__)

DEMO_ROOT = "data/demo"
# bump when preprocessing changes, so old cache entries are not reused (5: per sample and input)
PREPROCESSING_VERSION = 5


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
    """Every setting that changes a preprocessed sample, per input: what a saved model records
    (and what keys the cache)."""
    return {
        "version": PREPROCESSING_VERSION,
        "inputs": {kind.name: kind.settings(data) for kind in input_types(data)},
    }


def sample_key(data: DataConfig, row: pd.Series, kind: InputType, media: list) -> dict:
    """What one input of a sample is made from, besides the settings: the sample's media as
    they are on disk (`media_signature`) and every row field the input reads."""
    fields = {
        field: None if pd.isna(row[field]) else str(row[field]) for field in kind.fields(data)
    }
    return {"media": media, **fields}


@dataclasses.dataclass
class Preprocessed:
    """The clips that could be prepared, and what became of the others."""

    streams: list[list[np.ndarray]]  # per input (data.inputs), one array per clip
    rows: list[int]  # manifest positions of those clips
    keys: list[str]  # per clip: a digest of its cache keys and settings (changes with either)
    hits: int  # clips read back from the cache
    failures: pd.DataFrame  # PROBLEM_COLUMNS: clips that failed (only with data.on_bad=skip)


def make_inputs(data: DataConfig, row: pd.Series) -> list[np.ndarray]:
    """A sample's model inputs, made from its media without the cache (one array per input)."""
    clip = Clip(data, row)
    return [kind.make(data, row, clip) for kind in input_types(data)]


def preprocess(data: DataConfig, manifest: pd.DataFrame) -> Preprocessed:
    """Every input of every clip of the manifest as arrays, through the cache: decoding, frame
    selection, landmarks and cropping run once per clip and settings (tqdm shows clips/s).

    A clip whose media fail here (an unreadable image, a video shorter than it claims) stops
    the run with its name, or with data.on_bad=skip is left out and listed.

    Raises:
        DataError: a clip failed and data.on_bad is "error".
    """
    kinds = input_types(data)
    root = resolve_path(data.cache_dir)
    caches = [
        ClipCache(root, {"version": PREPROCESSING_VERSION, "input": name, **settings})
        for name, settings in preprocessing_settings(data)["inputs"].items()
    ]
    dtypes = [kind.spec(data).dtype for kind in kinds]
    streams: list[list[np.ndarray]] = [[] for _ in kinds]
    rows, keys, failures, hits = [], [], [], 0
    records = list(manifest.iterrows())
    for position, (_, row) in enumerate(tqdm(records, desc="preprocessing", unit="clip")):
        clip = Clip(data, row)  # decoded only if some input is not cached
        try:
            try:
                media = media_signature(row["path"])
            except OSError as error:
                raise DataError(f"{clip.where}: cannot read it ({error.strerror})") from error
            made, found, signed = [], 0, []
            for kind, cache, dtype in zip(kinds, caches, dtypes, strict=True):
                key = sample_key(data, row, kind, media)
                array, hit = cache.load_or_make(
                    row["sample"], key, partial(kind.make, data, row, clip), dtype
                )
                made.append(array)
                found += hit
                signed.append([cache.settings, key])
        except DataError as error:
            if data.on_bad == "error":
                raise DataError(f"{error} (or --on-bad skip to leave the clip out)") from error
            logger.warning("skipped %s: %s", row["sample"], error)
            failures.append(problem_row(row["path"], row["sample"], str(error)))
            continue
        for stream, array in zip(streams, made, strict=True):
            stream.append(array)
        rows.append(position)
        keys.append(digest(signed))
        hits += found == len(kinds)
    logger.info("%d of %d clips came from the cache %s", hits, len(rows), root)
    failed = pd.DataFrame(failures, columns=PROBLEM_COLUMNS)
    return Preprocessed(streams, rows, keys, hits, failed)


@dataclasses.dataclass
class RegionInputs:
    """What data.regions.aus=predicted adds to a run's inputs (`preprocess_region_inputs`)."""

    frames: list[np.ndarray]  # the AU detector's input (au_frames) per clip
    crops: dict[str, list[np.ndarray]]  # region name -> every clip's au_regions input there


def preprocess_region_inputs(
    data: DataConfig, detector: DataConfig, manifest: pd.DataFrame, prepared: Preprocessed
) -> tuple[Preprocessed, RegionInputs]:
    """For data.regions.aus=predicted: the AU detector's input (`detector`, data of
    `mer.config.region_detector_config`) of the clips `prepared` holds, and each clip's
    au_regions input for every region the rule can choose over data.regions.au_codes (at most
    eyes, mouth, brows, cheeks, face; all in memory: up to five times the au_regions stream),
    both through the cache. A region's crops are made as the au_regions input of a row whose
    AU cell is one AU of that region (blank for the face), so that a fold can give a held-out
    clip the region its predicted AUs choose without reading its cell.

    Returns:
        `prepared` less the clips whose AU detector input failed (with data.on_bad=skip; listed
        in its failures), its keys covering the detector's input; and the region inputs.

    Raises:
        DataError: a clip failed and data.on_bad is "error".
    """
    clips = manifest.iloc[prepared.rows]
    found = preprocess(detector, clips)
    clips = clips.iloc[found.rows]
    regional = dataclasses.replace(data, inputs=["au_regions"])
    crops = {}
    for rule in (*REGION_RULES, FACE):
        codes = sorted(rule.action_units & set(data.regions.au_codes))
        if rule is FACE or codes:
            made = preprocess(regional, clips.assign(aus=str(codes[0]) if codes else None))
            if len(made.rows) != len(clips):  # the face is found for every region or none
                raise DataError(f"{len(made.failures)} clip(s) have no {rule.name} crop")
            crops[rule.name] = made.streams[0]
    kept = Preprocessed(
        streams=[[stream[row] for row in found.rows] for stream in prepared.streams],
        rows=[prepared.rows[row] for row in found.rows],
        keys=[
            digest([prepared.keys[row], key])
            for row, key in zip(found.rows, found.keys, strict=True)
        ],
        hits=min(prepared.hits, found.hits),  # at most: which clips both hit is not kept
        failures=pd.concat([prepared.failures, found.failures], ignore_index=True),
    )
    return kept, RegionInputs(found.streams[0], crops)

"""Datasets as released, described by YAML alone (`config/datasets/<name>.yaml`).

A dataset file gives a path template from the dataset root to each clip, the annotation sheet
and its column map, how subject ids become folder names, and the class tables (protocols) that
turn the sheet's emotion strings into labels. A composite (MEGC2019) names its parts and the
official list of samples. Adding a dataset means writing such a file, not code.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections import Counter
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from mer.config import (
    CONFIG_DIR,
    ConfigError,
    SheetColumns,
    build_typed,
    parse_yaml,
    resolve_path,
)
from mer.data.aus import AUWarning, format_action_units, parse_action_units
from mer.data.frames import count_frames, frame_changes, frame_numbers, is_clip, read_frames
from mer.data.manifest import MANIFEST_COLUMNS, PROBLEM_COLUMNS, Manifest, problem_row
from mer.data.sheets import DataError, frame_number, read_sheet, require_columns

logger = logging.getLogger(__name__)

DATASETS_DIR = CONFIG_DIR / "datasets"
_PLACEHOLDER = re.compile(r"\{[^}]*\}")
_DIGITS = re.compile(r"\d+")


@dataclasses.dataclass
class DatasetSpec:
    """One dataset's layout, sheet and class tables (the fields of its YAML file)."""

    name: str
    description: str = ""
    media: Literal["frames", "video"] = "frames"  # a folder of images, or a video file, per clip
    path: str = "{subject_folder}/{filename}"  # clip path from the root; see `clip_path`
    subject_folder: str = "{subject}"  # folder name of a subject, e.g. "sub{subject:0>2}"
    sheet: str | None = None  # default sheet: "{root}/x.xlsx", or a path from the project root
    sheet_name: str | None = None
    header_row: int = 0  # 0-based row of the column names (SAMM has 13 rows of notes above)
    columns: SheetColumns = dataclasses.field(default_factory=SheetColumns)
    key: list[str] = dataclasses.field(default_factory=lambda: ["subject", "filename"])
    protocols: dict[str, dict[str, list[str]]] = dataclasses.field(default_factory=dict)
    protocol: str = "megc2019"  # the default class table
    # Where the apex comes from: the sheet; the middle frame, (onset + offset) // 2; or the frame
    # of onset..offset that changes most from the previous one (needs the media).
    apex: Literal["sheet", "middle", "max_motion"] = "sheet"
    # The frames a run feeds the model unless its config sets data.sampler: onset_offset where
    # the sheet annotates the expression's span; first (the published framerange) otherwise.
    sampler: Literal["first", "even", "onset_offset", "max_motion"] = "first"
    megc_subject: str | None = None  # the subject's id in the MEGC2019 list
    parts: list[str] = dataclasses.field(default_factory=list)  # composite: datasets combined
    ground_truth: str | None = None  # composite: the official list (from the project root)
    # Clips found by listing folders (label -> folder under the root) instead of from a sheet;
    # the sheet, if any, only maps filename -> subject (e.g. the deception set's speakers).
    class_folders: dict[str, str] = dataclasses.field(default_factory=dict)

    def classes(self, protocol: str | None = None) -> list[str]:
        """Class names of a protocol, in label order."""
        return list(self.table(protocol))

    def table(self, protocol: str | None = None) -> dict[str, list[str]]:
        """class -> emotion strings of a protocol (the dataset's default if None)."""
        name = protocol or self.protocol
        if name not in self.protocols:
            raise ConfigError(
                f"dataset {self.name!r} has no protocol {name!r}; it has {sorted(self.protocols)}"
            )
        return self.protocols[name]


def load_dataset_spec(name: str) -> DatasetSpec:
    """The dataset file `config/datasets/<name>.yaml`, or a YAML path."""
    path = Path(name) if name.endswith((".yaml", ".yml")) else DATASETS_DIR / f"{name}.yaml"
    path = resolve_path(path)
    if not path.is_file():
        known = sorted(file.stem for file in DATASETS_DIR.glob("*.yaml"))
        raise ConfigError(f"unknown dataset {name!r}: no {path}; known: {', '.join(known)}")
    values = parse_yaml(path.read_text()) or {}
    return build_typed(DatasetSpec, values, f"{path.name}: ")


def canonical_subject(text: str) -> str:
    """A subject id without zero padding when it is a number ("01" -> "1"), else as written."""
    text = text.strip()
    return str(int(text)) if text.isdigit() else text


def loose_key(text: str) -> str:
    """Text with every digit run unpadded, to match ids written `s01_ne_01` and `s1_ne_01`."""
    return _DIGITS.sub(lambda match: str(int(match.group())), text.strip()).casefold()


def sheet_path(spec: DatasetSpec, root: Path | None, sheet: str | None) -> Path | None:
    """The sheet to read: the configured one, else the dataset's default (None: optional)."""
    if sheet is not None:
        return resolve_path(sheet)
    if spec.sheet is None and spec.class_folders:
        return None
    if spec.sheet is None:
        raise DataError(f"dataset {spec.name}: no default sheet; set data.sheet")
    if "{root}" in spec.sheet:
        if root is None:
            raise DataError(f"dataset {spec.name}: the sheet lives in the root; set the root")
        return Path(spec.sheet.format(root=root))
    return resolve_path(spec.sheet)


def build_dataset_manifest(
    spec: DatasetSpec,
    root: Path | None,
    sheet: Path,
    protocol: str | None = None,
    *,
    sheets_only: bool = False,
) -> Manifest:
    """Reads a dataset's sheet and checks its media: one row per usable sample.

    Every odd cell or missing file becomes a problem row (naming the sheet row or path);
    problems marked excluded removed their sample. Nothing is dropped silently.

    Args:
        spec: the dataset description.
        root: the dataset folder (None only with sheets_only).
        sheet: the annotation sheet.
        protocol: the class table (None: the dataset's default).
        sheets_only: check the sheet alone, without media (frames are not counted).
    """
    if root is None and not sheets_only:
        raise DataError(f"dataset {spec.name}: set its root folder (data.root)")
    if root is not None and not sheets_only and not root.is_dir():
        raise DataError(f"dataset folder not found: {root} (set data.root)")
    table = {
        emotion.strip().casefold(): label
        for label, emotions in spec.table(protocol).items()
        for emotion in emotions
    }
    frame = read_sheet(sheet, spec.sheet_name, spec.header_row)
    columns = spec.columns
    require_columns(
        frame,
        [column for column in (columns.subject, columns.filename, columns.emotion) if column],
        str(sheet),
    )
    problems: list[dict] = []
    excluded: Counter[str] = Counter()
    rows: list[dict] = []
    seen: dict[tuple, str] = {}
    listed: set[str] = set()  # every clip path the sheet names, in the protocol or not
    for index, record in enumerate(frame.to_dict("records")):  # cells stay str or None
        where = f"{sheet.name} row {index + spec.header_row + 2}"

        def cell(column: str | None, record=record) -> str | None:
            return record[column] if column and column in frame.columns else None

        subject, filename = cell(columns.subject), cell(columns.filename)
        if subject is None and filename is None:
            continue  # a blank line
        if subject is None or filename is None:
            problems.append(
                problem_row(where, "", f"subject or filename blank ({subject!r}, {filename!r})")
            )
            continue
        number = canonical_subject(subject)  # what the templates format
        subject = spec.subject_folder.format(subject=number)
        emotion = cell(columns.emotion)
        label = table.get((emotion or "").strip().casefold())
        path = clip_path(spec, root or Path(), number, filename, emotion or "", label or "")
        listed.add(str(path))
        if label is None:
            excluded[(emotion or "(blank)").strip().casefold()] += 1
            continue
        onset, apex, offset = (
            frame_number(cell(column)) for column in (columns.onset, columns.apex, columns.offset)
        )
        fields = {"subject": subject, "filename": filename, "onset": onset}
        key = tuple(fields[name] for name in spec.key)
        sample = "/".join(str(part) for part in key)
        if key in seen:
            problems.append(problem_row(where, sample, f"duplicate key {key} (also {seen[key]})"))
            continue
        seen[key] = where
        if columns.onset and columns.offset:
            if onset is None or offset is None or onset < 1 or offset < onset:
                problems.append(
                    problem_row(
                        where,
                        sample,
                        f"invalid onset/offset ({cell(columns.onset)!r}, {cell(columns.offset)!r})",
                    )
                )
                continue
            if spec.apex != "sheet" or apex is None or not onset <= apex <= offset:
                if spec.apex == "sheet":
                    problems.append(
                        problem_row(
                            where,
                            sample,
                            f"apex {cell(columns.apex)!r} not in "
                            f"onset..offset: the middle frame is used",
                            False,
                        )
                    )
                apex = (onset + offset) // 2
        rows.append(
            {
                "sample": sample,
                "dataset": spec.name,
                "subject": subject,
                "filename": filename,
                "label": label,
                "onset": onset,
                "apex": apex,
                "offset": offset,
                "aus": _aus(cell(columns.action_units), where, problems, sample),
                "path": str(path),
                "frames": None,
                "megc_subject": (spec.megc_subject or "{subject}").format(subject=number),
            }
        )
    samples = pd.DataFrame(rows, columns=[*MANIFEST_COLUMNS, "megc_subject"])
    if not sheets_only and len(samples):
        samples = _check_media(spec, root, samples, problems, listed)
    return Manifest(
        samples.reset_index(drop=True),
        pd.DataFrame(problems, columns=PROBLEM_COLUMNS),
        dict(excluded),
    )


def clip_path(
    spec: DatasetSpec, root: Path, subject: str, filename: str, emotion: str, label: str
) -> Path:
    """Where a clip lives: the spec's template filled in, under the root."""
    folder = spec.subject_folder.format(subject=subject)
    return root / spec.path.format(
        subject=subject, subject_folder=folder, filename=filename, emotion=emotion, label=label
    )


def _aus(value: str | None, where: str, problems: list[dict], sample: str) -> str:
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AUWarning)
        try:
            units = parse_action_units(value, where=where)
        except ValueError as error:
            problems.append(problem_row(where, sample, str(error), False))
            return ""
    for warning in caught:
        problems.append(problem_row(where, sample, str(warning.message), False))
    return format_action_units(units)


def _check_media(
    spec: DatasetSpec, root: Path, samples: pd.DataFrame, problems: list[dict], listed: set[str]
) -> pd.DataFrame:
    """Counts each clip's frames; missing clips or frames inside onset..offset are problems.

    Clips on disk that no sheet row names (`listed`) are reported too.
    """
    keep = []
    for index, row in samples.iterrows():
        path = Path(row["path"])
        if spec.media == "video" and path.suffix == "":
            matches = sorted(path.parent.glob(path.name + ".*"))
            path = matches[0] if matches else path
            samples.at[index, "path"] = str(path)
        if not path.exists() or not is_clip(path):
            problems.append(problem_row(str(path), row["sample"], "clip not found on disk"))
            continue
        try:
            numbers = frame_numbers(path) if path.is_dir() else None
            samples.at[index, "frames"] = (
                len(numbers) if numbers is not None else count_frames(path)
            )
        except DataError as error:
            problems.append(problem_row(str(path), row["sample"], str(error)))
            continue
        if numbers is not None and pd.notna(row["onset"]):
            missing = sorted(set(range(int(row["onset"]), int(row["offset"]) + 1)) - set(numbers))
            if missing:
                problems.append(
                    problem_row(
                        str(path),
                        row["sample"],
                        f"{len(missing)} frame(s) missing in onset..offset, e.g. {missing[:3]}",
                    )
                )
                continue
        if spec.apex == "max_motion" and pd.notna(row["onset"]):
            samples.at[index, "apex"] = _strongest_change(path, numbers, row)
        keep.append(index)
    pattern = _PLACEHOLDER.sub("*", spec.path)
    for stray in sorted(root.glob(pattern)):
        if str(stray) not in listed and str(stray.with_suffix("")) not in listed and is_clip(stray):
            problems.append(problem_row(str(stray), "", "on disk but not in the sheet", False))
    return samples.loc[keep]


def _strongest_change(path: Path, numbers: list[int] | None, row: pd.Series) -> int:
    """The frame number of onset..offset that differs most from the frame before it."""
    numbers = numbers or list(range(1, int(row["frames"]) + 1))
    changes = frame_changes(read_frames(path, np.arange(len(numbers))))
    inside = [
        position
        for position, number in enumerate(numbers)
        if row["onset"] < number <= row["offset"]  # the onset frame has no earlier frame inside
    ]
    if not inside:
        return int(row["apex"])
    return numbers[max(inside, key=lambda position: changes[position])]


def build_folder_manifest(spec: DatasetSpec, root: Path, subjects: Path | None) -> Manifest:
    """Clips listed from the class folders; subjects from the optional sheet, else none.

    Without subjects the experiment falls back to stratified k-fold (and says so).
    """
    if not root.is_dir():
        raise DataError(f"dataset folder not found: {root} (set data.root)")
    subject_of: dict[str, str] = {}
    if subjects is not None:
        frame = read_sheet(subjects, spec.sheet_name, spec.header_row)
        require_columns(frame, [spec.columns.subject, spec.columns.filename], str(subjects))
        subject_of = {
            Path(name).stem: subject
            for subject, name in zip(
                frame[spec.columns.subject], frame[spec.columns.filename], strict=True
            )
            if subject is not None and name is not None
        }
    rows, problems = [], []
    for label, folder in spec.class_folders.items():
        directory = root / folder
        if not directory.is_dir():
            raise DataError(f"class folder missing: {directory} (dataset {spec.name})")
        for entry in sorted(directory.iterdir()):
            if not is_clip(entry):
                problems.append(problem_row(str(entry), "", "not a video or frame folder", False))
                continue
            name = entry.stem if entry.is_file() else entry.name
            subject = subject_of.get(name) if subjects is not None else None
            if subjects is not None and subject is None:
                problems.append(
                    problem_row(str(entry), name, f"not in the subject sheet {subjects}")
                )
                continue
            try:
                frames = count_frames(entry)
            except DataError as error:
                problems.append(problem_row(str(entry), name, str(error)))
                continue
            rows.append(
                {
                    "sample": name,
                    "dataset": spec.name,
                    "subject": subject,
                    "filename": name,
                    "label": label,
                    "onset": None,
                    "apex": None,
                    "offset": None,
                    "aus": "",
                    "path": str(entry),
                    "frames": frames,
                }
            )
    return Manifest(
        pd.DataFrame(rows, columns=MANIFEST_COLUMNS),
        pd.DataFrame(problems, columns=PROBLEM_COLUMNS),
    )


def build_composite_manifest(
    spec: DatasetSpec,
    roots: dict[str, str],
    sheets: dict[str, str],
    ground_truth: str | None = None,
    *,
    sheets_only: bool = False,
) -> Manifest:
    """The MEGC2019-style composite: exactly the official list's samples, from each part.

    Each part is read with its own `megc2019` table; a sample is kept when the official list
    names it (ids matched without zero padding: `s01_ne_01` = `s1_ne_01`), with the official
    subject and label. Official samples not found in a sheet or on disk are problems.
    """
    ground_truth_path = resolve_path(ground_truth or spec.ground_truth or "")
    if not ground_truth_path.is_file():
        raise DataError(f"official list not found: {ground_truth_path} (set data.ground_truth)")
    official = pd.read_csv(
        ground_truth_path,
        header=None,
        names=["part", "subject", "filename", "label"],
        dtype=str,
        keep_default_na=False,
    )
    classes = spec.classes()
    problems: list[pd.DataFrame] = []
    parts: list[pd.DataFrame] = []
    excluded: Counter[str] = Counter()
    for part in spec.parts:
        if part not in roots and not sheets_only:  # a composite reads no data.root
            raise DataError(
                f"dataset {spec.name}: set the folder of each part, data.roots.{part}=DIR "
                f"(parts: {', '.join(spec.parts)})"
            )
        part_spec = load_dataset_spec(part)
        root = resolve_path(roots[part]) if part in roots else None
        manifest = build_dataset_manifest(
            part_spec,
            root,
            sheet_path(part_spec, root, sheets.get(part)),
            spec.protocol,
            sheets_only=sheets_only,
        )
        problems.append(manifest.problems)
        samples = manifest.samples.assign(part=part)
        samples["match"] = [
            loose_key(f"{subject}/{filename}")
            for subject, filename in zip(
                samples["megc_subject"], samples["filename"], strict=True
            )
        ]
        parts.append(samples)
        excluded.update(
            {f"{part}: {emotion}": count for emotion, count in manifest.excluded_emotions.items()}
        )
    pool = pd.concat(parts, ignore_index=True).set_index(["part", "match"])
    rows, extra = [], []
    for record in official.itertuples():
        match = loose_key(f"{record.subject}/{record.filename}")
        sample = f"{record.part}/{record.subject}/{record.filename}"
        if (record.part, match) not in pool.index:
            extra.append(
                problem_row(
                    ground_truth_path.name,
                    sample,
                    f"official sample not found in the "
                    f"{record.part} sheet or on disk (see its problems)",
                )
            )
            continue
        row = pool.loc[(record.part, match)].to_dict()
        label = classes[int(record.label)]
        if row["label"] != label:
            extra.append(
                problem_row(
                    ground_truth_path.name,
                    sample,
                    f"official label {label} differs from "
                    f"the sheet's {row['label']}: the official one is used",
                    False,
                )
            )
        rows.append(
            {
                **row,
                "part": record.part,
                "subject": record.subject,
                "label": label,
                "sample": sample,
                "dataset": spec.name,
            }
        )
    kept = {(row["part"], loose_key(f"{row['subject']}/{row['filename']}")) for row in rows}
    outside = Counter(part for part, match in pool.index if (part, match) not in kept)
    for part, count in outside.items():
        excluded[f"{part}: in the protocol, not in the official list"] += count
    samples = pd.DataFrame(rows, columns=[*MANIFEST_COLUMNS, "part", "megc_subject"])
    all_problems = pd.concat(
        [*problems, pd.DataFrame(extra, columns=PROBLEM_COLUMNS)], ignore_index=True
    )
    return Manifest(samples, all_problems, dict(excluded))

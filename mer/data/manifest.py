"""The sample manifest: one row per clip, with everything later stages need to know about it."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pandas as pd

from mer.config import DataConfig
from mer.data.frames import count_frames, is_clip
from mer.data.sheets import DataError, frame_number, read_sheet, require_columns

logger = logging.getLogger(__name__)

MANIFEST_COLUMNS = [
    "sample",
    "dataset",
    "subject",
    "filename",
    "label",
    "onset",
    "apex",
    "offset",
    "aus",
    "path",
    "frames",
]
PROBLEM_COLUMNS = ["where", "sample", "problem", "excluded"]


def problem_row(where: str, sample: str, problem: str, excluded: bool = True) -> dict:
    """One row of a problems table: where it was found, the sample, what, and whether the
    sample was left out because of it."""
    return {"where": where, "sample": sample, "problem": problem, "excluded": excluded}


@dataclasses.dataclass
class Manifest:
    """Samples, the problems found on the way, and what the class table left out."""

    samples: pd.DataFrame  # MANIFEST_COLUMNS, plus "part" and "megc_subject" for datasets
    problems: pd.DataFrame = dataclasses.field(
        default_factory=lambda: pd.DataFrame(columns=PROBLEM_COLUMNS)
    )
    excluded_emotions: dict[str, int] = dataclasses.field(default_factory=dict)

    def excluded_problems(self) -> pd.DataFrame:
        """Problems that removed a sample."""
        return self.problems[self.problems["excluded"].astype(bool)]


def class_folder_clips(root: Path, classes: list[str]) -> pd.DataFrame:
    """Clips of the published layout: `<root>/<class>/<clip>` (a video or a frame folder).

    Classes come in config order and each folder is listed sorted, so the order never depends
    on the file system. Entries that are not clips (stray files) are logged and ignored.

    Returns:
        Columns filename (the clip's name without extension), label, path.
    """
    if not root.is_dir():
        raise DataError(f"dataset folder not found: {root} (set data.root)")
    rows = []
    for label in classes:
        folder = root / label
        if not folder.is_dir():
            raise DataError(f"class folder missing: {folder} (data.classes lists {label!r})")
        for entry in sorted(folder.iterdir()):
            if not is_clip(entry):
                logger.warning("ignoring %s: not a video or a folder of frames", entry)
                continue
            name = entry.stem if entry.is_file() else entry.name
            rows.append({"filename": name, "label": label, "path": str(entry)})
    if not rows:
        raise DataError(f"no clips found under {root}/{{{','.join(classes)}}}")
    clips = pd.DataFrame(rows)
    repeated = clips[clips.duplicated("filename", keep=False)]
    if not repeated.empty:
        raise DataError(
            f"clip name {repeated.iloc[0]['filename']!r} appears more than once: "
            f"{sorted(repeated['path'])[:2]}"
        )
    return clips


def sheet_annotations(data: DataConfig, sheet: Path) -> pd.DataFrame:
    """The sheet's rows keyed by filename: subject, onset, apex, offset, aus.

    Raises:
        DataError: missing columns, a row without subject or filename, or a filename listed
            under two subjects (the class-folder layout keys clips by filename alone).
    """
    frame = read_sheet(sheet, data.sheet_name)
    columns = data.columns
    require_columns(frame, [columns.subject, columns.filename], str(sheet))
    optional = {
        "onset": columns.onset,
        "apex": columns.apex,
        "offset": columns.offset,
        "aus": columns.action_units,
    }
    rows = []
    for index, record in enumerate(frame.to_dict("records")):  # cells stay str or None
        where = f"{sheet} row {index + 2}"  # spreadsheet row: 1-based, after the header
        subject, filename = record[columns.subject], record[columns.filename]
        if subject is None and filename is None:
            continue  # blank line
        if subject is None or filename is None:
            raise DataError(f"{where}: subject or filename is blank ({subject!r}, {filename!r})")
        row = {"subject": subject, "filename": filename, "row": where}
        for key, column in optional.items():
            value = record[column] if column in frame.columns else None
            row[key] = value if key == "aus" else frame_number(value)
        rows.append(row)
    annotations = pd.DataFrame(
        rows, columns=["subject", "filename", "onset", "apex", "offset", "aus", "row"]
    )
    repeated = annotations[annotations.duplicated("filename", keep=False)]
    conflicting = repeated.groupby("filename")["subject"].nunique()
    if (conflicting > 1).any():
        name = conflicting[conflicting > 1].index[0]
        subjects = sorted(repeated.loc[repeated["filename"] == name, "subject"])
        raise DataError(
            f"{sheet}: filename {name!r} is listed under subjects {subjects}; the class-folder "
            "layout cannot tell their clips apart"
        )
    return annotations.drop_duplicates("filename")


def build_manifest(data: DataConfig, root: Path, sheet: Path, dataset: str) -> Manifest:
    """Joins the clips on disk with the sheet: one row per clip, in a stable order.

    Raises:
        DataError: a clip not in the sheet (never grouped into a catch-all fold).
    """
    clips = class_folder_clips(root, data.classes)
    annotations = sheet_annotations(data, sheet).set_index("filename")
    missing = [name for name in clips["filename"] if name not in annotations.index]
    if missing:
        raise DataError(
            f"{len(missing)} clip(s) not in the sheet {sheet}, e.g. {missing[:3]}: add them to "
            "the sheet or remove them; a clip is never put in an unknown subject"
        )
    unused = sorted(set(annotations.index) - set(clips["filename"]))
    if unused:
        logger.warning(
            "%d sheet row(s) have no clip under %s, e.g. %s", len(unused), root, unused[:3]
        )
    manifest = clips.join(annotations, on="filename")
    manifest["dataset"] = dataset
    manifest["sample"] = manifest["filename"]
    counts, problems = [], []
    for path, sample in zip(manifest["path"], manifest["sample"], strict=True):
        try:
            counts.append(count_frames(Path(path)))
        except DataError as error:  # a corrupt or empty video: reported, never a traceback
            counts.append(None)
            problems.append(problem_row(path, sample, str(error)))
    manifest["frames"] = counts
    manifest = manifest[manifest["frames"].notna()]
    return Manifest(
        manifest[MANIFEST_COLUMNS].reset_index(drop=True),
        pd.DataFrame(problems, columns=PROBLEM_COLUMNS),
    )

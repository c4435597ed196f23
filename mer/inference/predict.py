"""`python -m mer predict`: class probabilities of new clips from a saved model; an AU
detector's (`model.family: au_detector`) AU probabilities, and the AUs it detects (p >= 0.5).

A clip goes through the training run's own preprocessing (`mer.data.sources.preprocess`, with
the data config saved beside the model) and its normalisers, so a clip is seen exactly as the
training clips were.

A model that reads a window of each clip needs the clip's onset and offset: one trained on
annotated spans (`data.sampler=onset_offset`), and one with an input made from the window
whatever the sampler (the optical-flow inputs, which read the flow from the onset to the apex
frame; FMER's patches and AU frames; the AU detector of a model with predicted regions).
`--apex` gives the apex; without it the flow inputs choose it inside the window as in training
on a sheet without one (`data.flow.apex`: the middle frame, or the frame that differs most from
the onset), and that frame is reported as the clip's apex. A new clip has no annotation, so
without `--onset`/`--offset` its window is spotted: the `data.frames` consecutive frames (the
model's own frame count; for a flow model or FMER's inputs, the config's) between which the face
changes most, each frame scored as the max_motion sampler scores it (`frame_changes`: the summed
absolute grey-level difference from the previous frame). The span is then fed as an annotated
one would be, with a warning naming it.

A two-stream model's region crop follows `--aus`. Without it, a model trained with
data.regions.aus=predicted and a final model has its own AU detector (`Bundle.detector`, trained
on every subject), whose AUs (p >= 0.5) choose each clip's region as in the folds; any other
two-stream model crops the whole face, with a warning.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mer.bundle import Bundle, load_bundle
from mer.caveats import WINDOW_INPUTS, WINDOW_SAMPLERS
from mer.config import DataConfig
from mer.data.batches import ClipBatches, feed
from mer.data.frames import (
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    count_frames,
    frame_changes,
    frame_numbers,
    is_clip,
    read_frames,
)
from mer.data.inputs import input_types
from mer.data.inputs.flow import chosen_apex
from mer.data.regions import detected_aus
from mer.data.sheets import DataError
from mer.data.sources import preprocess

logger = logging.getLogger(__name__)


def largest_change_start(changes: Sequence[float], length: int) -> int:
    """The first position of the `length` consecutive frames whose changes between them sum
    highest (the earliest such window on ties; 0 for a clip no longer than `length`).

    Args:
        changes: per frame, its change from the previous frame (`frame_changes`).
        length: frames in the window.
    """
    if length < 1:
        raise ValueError(f"a window needs at least one frame, got length {length}")
    if len(changes) <= length:
        return 0
    # a window starting at s holds the changes s+1 .. s+length-1 (into its frames but the first)
    total = np.cumsum(np.asarray(changes, dtype=np.float64))
    return int(np.argmax(total[length - 1 :] - total[: len(changes) - length + 1]))


def spot_window(path: Path, frames: int, length: int) -> tuple[int, int]:
    """The onset and offset (frame numbers) of a clip's window of largest change.

    Args:
        path: the clip.
        frames: its frame count.
        length: frames in the window (the whole clip when it is shorter).
    """
    numbers = frame_numbers(path, frames)
    start = largest_change_start(frame_changes(read_frames(path, np.arange(len(numbers)))), length)
    return numbers[start], numbers[min(start + length, len(numbers)) - 1]


def reads_annotated_window(data: DataConfig) -> bool:
    """Whether a model with this data config was trained on each clip's annotated onset..offset
    (`data.sampler=onset_offset`, or an input made from the window whatever the sampler: the
    flow inputs, FMER's patches and AU frames, `mer.caveats.WINDOW_INPUTS`), so that a clip
    given none needs a spotted one."""
    return data.sampler == "onset_offset" or bool(set(data.input_names()) & WINDOW_INPUTS)


def reads_field(data: DataConfig, field: str) -> bool:
    """Whether an input of the model reads that manifest field of each clip: `apex` (the flow
    inputs: onset -> apex), `aus` (the AU-region crop)."""
    return any(field in kind.fields(data) for kind in input_types(data))


def _apex(data: DataConfig, path: Path, frames: int, window: tuple) -> int | None:
    """The apex frame number that a model reading one (flow inputs) takes inside the window
    (`chosen_apex`); None for a model that reads none, or a window outside the clip (its
    preprocessing then says so)."""
    if not reads_field(data, "apex") or window[0] is None:
        return None
    numbers = frame_numbers(path, frames)
    if window[0] not in numbers or window[1] not in numbers:
        return None
    first, last = numbers.index(window[0]), numbers.index(window[1])
    return numbers[chosen_apex(data, path, numbers, first, last)] if first <= last else None


def clip_manifest(
    bundle: Bundle,
    clips: Sequence[str | Path],
    *,
    onset: int | None = None,
    offset: int | None = None,
    apex: int | None = None,
    aus: str | None = None,
) -> pd.DataFrame:
    """Manifest rows for clips given on the command line (no subject, no label), with the
    window each clip's frames come from (`window`: [onset, offset], or None where the model
    reads none) and whether it was spotted (see the module docstring).

    Args:
        bundle: the loaded model; its data config says whether a window is needed.
        clips: video files or folders of frame images.
        onset, offset: frame numbers (a video's 1-based positions, a folder's file numbers),
            read by the onset_offset and max_motion samplers and by the flow inputs; the same
            for every clip. Both or neither: without them, the clips of an onset_offset or a
            flow model get a spotted window each.
        apex: the apex frame number for a model whose inputs read it (between onset and
            offset); None: chosen as the flow inputs choose it (`data.flow.apex`), and that
            frame is the row's `apex`.
        aus: the clips' action units (e.g. "4+12"), which choose the region of a two-stream
            model; the same for every clip.

    Raises:
        DataError: only one of onset and offset; an apex without them, outside them, or for
            a model that reads none; AUs for a model that reads none; a clip is missing, is
            not a video or a frame folder, or does not decode.
    """
    data = bundle.data
    if (onset is None) != (offset is None):
        raise DataError(
            f"--onset {onset} and --offset {offset}: give both, or neither (a model trained "
            "with data.sampler=onset_offset, or on optical flow, then spots each clip's window)"
        )
    if apex is not None and not reads_field(data, "apex"):
        raise DataError(
            f"--apex {apex}: no input of this model reads an apex (inputs "
            f"{', '.join(data.input_names())}); drop it"
        )
    if aus is not None and not reads_field(data, "aus"):
        raise DataError(
            f"--aus {aus}: no input of this model reads action units (inputs "
            f"{', '.join(data.input_names())}; the two-stream models' au_regions does); drop it"
        )
    if apex is not None and (onset is None or not onset <= apex <= offset):
        raise DataError(
            f"--apex {apex} must lie within --onset {onset} and --offset {offset}: give all "
            "three (without --apex, data.flow.apex chooses it inside the window)"
        )
    # and the model's own AU detector's (with --aus too: the window is the same either way)
    readers = [data] + ([bundle.detector.data] if bundle.detector is not None else [])
    spot = onset is None and any(reads_annotated_window(each) for each in readers)
    reads_window = any(
        each.sampler in WINDOW_SAMPLERS or reads_annotated_window(each) for each in readers
    )
    rows = []
    for clip in clips:
        path = Path(clip)
        if not path.exists():
            raise DataError(f"clip not found: {path}")
        if not is_clip(path):
            raise DataError(
                f"{path} is not a video ({', '.join(sorted(VIDEO_EXTENSIONS))}) or a folder of "
                f"frame images ({', '.join(sorted(IMAGE_EXTENSIONS))})"
            )
        frames = count_frames(path)
        window = (onset, offset)
        if spot:
            window = spot_window(path, frames, data.frames)
            logger.warning(
                "%s: no --onset/--offset, so the window of largest change was spotted: frames "
                "%d..%d",
                path,
                *window,
            )
        rows.append(
            {
                "sample": path.stem if path.is_file() else path.name,
                "subject": None,
                "label": None,
                "onset": window[0],
                "apex": _apex(data, path, frames, window) if apex is None else apex,
                "offset": window[1],
                "aus": aus,
                "path": str(path),
                "frames": frames,
                "window": (
                    [int(number) for number in window]
                    if reads_window and window[0] is not None
                    else None
                ),
                "spotted": spot,
            }
        )
    return pd.DataFrame(rows)


class _DropSkipNotes(logging.Filter):
    """Predict reports a failed clip as its error; the training run's "skipped" note would
    only repeat it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("skipped ")


def preprocess_clips(
    bundle: Bundle, manifest: pd.DataFrame, cache_dir: str | Path | None = None
) -> list[list[np.ndarray]]:
    """The clips as the model's input streams (uint8 frames, float16 flow: as the training
    cache stores them), by the training run's preprocessing.

    Args:
        bundle: the loaded model and its data config.
        manifest: rows from `clip_manifest`.
        cache_dir: where to cache the preprocessed clips; None: a temporary folder.

    Raises:
        DataError: naming every clip that failed.
    """
    data = bundle.data
    if "au_regions" in data.input_names() and manifest["aus"].isna().any():
        logger.warning("no --aus given: the region stream gets the whole face (region 'face')")
    with tempfile.TemporaryDirectory(prefix="mer-predict-") as temporary:
        data = dataclasses.replace(data, on_bad="skip", cache_dir=str(cache_dir or temporary))
        quiet = _DropSkipNotes()
        source_logger = logging.getLogger("mer.data.sources")
        source_logger.addFilter(quiet)
        try:
            prepared = preprocess(data, manifest)
        finally:
            source_logger.removeFilter(quiet)
        if len(prepared.failures):
            raise DataError(
                "; ".join(f"{row.where}: {row.problem}" for row in prepared.failures.itertuples())
            )
        return [[np.array(clip) for clip in stream] for stream in prepared.streams]


def predict_streams(bundle: Bundle, streams: Sequence[Sequence[np.ndarray]]) -> np.ndarray:
    """Class probabilities (clips, classes) of preprocessed clips, normalised as in training."""
    batches = ClipBatches(streams, None, len(bundle.classes), 8, bundle.normalizers)
    predicted = bundle.model.predict(feed(batches, bundle.data.workers), verbose=0)
    return np.asarray(predicted, dtype=np.float64)


def joined_aus(codes: Sequence[int], probabilities: Sequence[float]) -> str:
    """The AUs detected in one clip (`detected_aus`), as a sheet writes them: "4+12"; "" for
    none."""
    return "+".join(map(str, detected_aus(codes, probabilities)))


def with_predicted_aus(
    bundle: Bundle, manifest: pd.DataFrame, cache_dir: str | Path | None = None
) -> pd.DataFrame:
    """`manifest` with each blank `aus` set to the AUs that the model's own AU detector
    (`bundle.detector`) finds in the clip ("4+12"; "" for none, which crops the face).

    Raises:
        DataError: a clip cannot be preprocessed for the detector, named.
    """
    blank = manifest["aus"].isna().to_numpy()
    detector = bundle.detector
    streams = preprocess_clips(detector, manifest[blank], cache_dir)
    probabilities = predict_streams(detector, streams)
    found = [joined_aus(detector.aus, row) for row in probabilities]
    aus = np.array(manifest["aus"], dtype=object)
    aus[blank] = found
    return manifest.assign(aus=aus)


def predict_clips(
    bundle: Bundle,
    clips: Sequence[str | Path],
    *,
    onset: int | None = None,
    offset: int | None = None,
    apex: int | None = None,
    aus: str | None = None,
) -> pd.DataFrame:
    """One row per clip: clip, predicted, window, apex, spotted (see `clip_manifest`), then
    prob_<output> per output of the model (`Bundle.outputs`); where the model's AU detector
    chose the region (no `aus`, see the module docstring), then predicted_aus. An AU
    detector's `predicted` is the AUs it detects ("4+12", "" for none), its outputs "AU<n>".

    Raises:
        DataError: a clip is missing or cannot be preprocessed, named.
    """
    manifest = clip_manifest(bundle, clips, onset=onset, offset=offset, apex=apex, aus=aus)
    detected = aus is None and bundle.detector is not None
    if detected:
        manifest = with_predicted_aus(bundle, manifest)
    probabilities = predict_streams(bundle, preprocess_clips(bundle, manifest))
    if bundle.aus is None:
        predicted = [bundle.classes[index] for index in probabilities.argmax(axis=1)]
    else:
        predicted = [joined_aus(bundle.aus, row) for row in probabilities]
    table = pd.DataFrame(
        {
            "clip": manifest["path"],
            "predicted": predicted,
            "window": manifest["window"],
            "apex": manifest["apex"],
            "spotted": manifest["spotted"],
        }
    )
    for index, name in enumerate(bundle.outputs):
        table[f"prob_{name}"] = probabilities[:, index]
    if detected:
        table["predicted_aus"] = manifest["aus"]
    return table


def format_table(table: pd.DataFrame, classes: Sequence[str]) -> str:
    """The predictions as an aligned text table, probabilities with 3 decimals (`classes`: the
    model's outputs; an AU detector's, with "none" where it detects no AU)."""
    width = max(len("clip"), *(len(clip) for clip in table["clip"]))
    columns = [max(len(name), 5) for name in classes]
    lines = [
        "clip".ljust(width)
        + "".join(f"  {name:>{size}}" for name, size in zip(classes, columns, strict=True))
        + "  predicted"
    ]
    for row in table.itertuples(index=False):
        values = [getattr(row, f"prob_{name}") for name in classes]
        lines.append(
            row.clip.ljust(width)
            + "".join(f"  {value:>{size}.3f}" for value, size in zip(values, columns, strict=True))
            + f"  {row.predicted or 'none'}"
        )
    return "\n".join(lines)


def predict_command(arguments: argparse.Namespace) -> int:
    """`python -m mer predict`: prints each clip's class (or AU) probabilities, as a table or
    JSON."""
    bundle = load_bundle(arguments.model)
    table = predict_clips(
        bundle,
        arguments.clips,
        onset=arguments.onset,
        offset=arguments.offset,
        apex=arguments.apex,
        aus=arguments.aus,
    )
    if arguments.json:
        records = [
            {
                "clip": row["clip"],
                "predicted": row["predicted"],
                "probabilities": {name: float(row[f"prob_{name}"]) for name in bundle.outputs},
                "window": row["window"],
                "apex": None if pd.isna(row["apex"]) else int(row["apex"]),
                "spotted": bool(row["spotted"]),
                **({"predicted_aus": row["predicted_aus"]} if "predicted_aus" in row else {}),
            }
            for _, row in table.iterrows()
        ]
        print(json.dumps(records, indent=2))
    else:
        print(format_table(table, bundle.outputs))
        for row in table.itertuples() if "predicted_aus" in table else ():
            print(f"{row.clip}: AUs {row.predicted_aus or 'none'} (the model's AU detector)")
    return 0

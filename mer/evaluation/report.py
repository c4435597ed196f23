"""Per-subject tables, summaries and text reports of pooled LOSO predictions; for an AU
detector, per-AU F1 tables (`au_scores`).

The input is the table of pooled leave-one-subject-out predictions: one row per clip with
columns ``subject``, ``sample``, ``y_true`` and ``y_pred`` (class names), usually one
``prob_<class name>`` column per class, and, for composite datasets, a ``part`` column
naming the dataset each clip comes from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from colorama import Fore, Style

from mer.evaluation.metrics import (
    au_f1_scores,
    confusion_matrix,
    per_class_scores,
    pooled_metrics,
    subject_metrics,
)
from mer.io import natural_sort_key

REQUIRED_COLUMNS = ("subject", "sample", "y_true", "y_pred")
TABLE_COLUMNS = ("subject", "clips", "uf1", "uar", "acc", "classes_present", "single_class")
SCORE_KEYS = ("uf1", "uar", "acc")
GOOD_SCORE = 0.7
FAIR_SCORE = 0.4
_MAX_QUOTED_VALUES = 5


def per_subject_table(predictions: pd.DataFrame, class_names: Sequence[str]) -> pd.DataFrame:
    """Scores each held-out subject separately.

    Args:
        predictions: Pooled predictions (see the module docstring).
        class_names: The dataset's classes in label order; every subject is scored over
            all of them (see :func:`mer.evaluation.metrics.subject_metrics`).

    Returns:
        One row per subject, in natural order ("sub2" before "sub10"), with columns
        ``subject``, ``clips``, ``uf1``, ``uar``, ``acc``, ``classes_present`` (number of
        distinct true classes) and ``single_class`` (the subject has one class only).

    Raises:
        ValueError: If columns are missing, the table is empty, a subject is missing,
            a (subject, sample) pair repeats, or a label is not in ``class_names``.
    """
    subjects, _, true_labels, predicted_labels = _encoded(predictions, class_names)
    return _subject_rows(subjects, true_labels, predicted_labels, len(class_names))


def summarize(predictions: pd.DataFrame, class_names: Sequence[str]) -> dict[str, Any]:
    """Summarises pooled LOSO predictions into a JSON-serialisable dict.

    Args:
        predictions: Pooled predictions (see the module docstring).
        class_names: The dataset's classes in label order.

    Returns:
        ``uf1``, ``uar``, ``acc`` (pooled, MEGC2019 protocol); ``mean_over_subjects``
        (``uf1``, ``uar``, ``acc`` averaged over the rows of :func:`per_subject_table`,
        the figure papers usually print); ``clips``; ``subjects``; ``class_names``;
        ``confusion_matrix`` (rows = true class); ``per_class`` (per class name:
        ``support``, ``tp``, ``fp``, ``fn``, ``f1``, ``recall``). With a ``part`` column,
        also ``parts``: per part, ``uf1``, ``uar``, ``acc`` pooled over that part's rows
        (scored over all classes) and ``clips``.

    Raises:
        ValueError: As :func:`per_subject_table`.
    """
    subjects, parts, true_labels, predicted_labels = _encoded(predictions, class_names)
    num_classes = len(class_names)
    table = _subject_rows(subjects, true_labels, predicted_labels, num_classes)
    matrix = confusion_matrix(true_labels, predicted_labels, num_classes)
    class_scores = per_class_scores(matrix)
    summary: dict[str, Any] = {
        **pooled_metrics(true_labels, predicted_labels, num_classes),
        "mean_over_subjects": {key: float(table[key].mean()) for key in SCORE_KEYS},
        "clips": len(true_labels),
        "subjects": len(set(subjects)),
        "class_names": list(class_names),
        "confusion_matrix": matrix.tolist(),
        "per_class": {
            name: {
                "support": int(class_scores["support"][index]),
                "tp": int(class_scores["tp"][index]),
                "fp": int(class_scores["fp"][index]),
                "fn": int(class_scores["fn"][index]),
                "f1": float(class_scores["f1"][index]),
                "recall": float(class_scores["recall"][index]),
            }
            for index, name in enumerate(class_names)
        },
    }
    if parts is not None:
        summary["parts"] = {}
        for part in sorted(set(parts), key=natural_sort_key):
            in_part = parts == part
            summary["parts"][part] = {
                **pooled_metrics(true_labels[in_part], predicted_labels[in_part], num_classes),
                "clips": int(in_part.sum()),
            }
    return summary


def format_report(table: pd.DataFrame, summary: dict[str, Any], *, color: bool = True) -> str:
    """Renders the per-subject table and the overall scores as aligned text.

    Args:
        table: Output of :func:`per_subject_table`.
        summary: Output of :func:`summarize` for the same predictions.
        color: Colour scores with ANSI codes (green >= 0.7, yellow >= 0.4, red below);
            False gives plain text.

    Returns:
        The report: the run's caveats (``summary["caveats"]``, see
        :func:`format_caveats`) where it has any; one line per subject (single-class
        subjects marked "(1 class)"); then the pooled and mean-over-subjects lines, the
        annotation-only reference (``summary["annotation_only_reference"]``) where there is
        one and, for composites, one line per part.

    Raises:
        ValueError: If ``table`` lacks a column or ``summary`` a key.
    """
    _require_columns(table, ("subject", "clips", *SCORE_KEYS, "single_class"), "table")
    missing_keys = [
        key for key in (*SCORE_KEYS, "clips", "mean_over_subjects") if key not in summary
    ]
    if missing_keys:
        raise ValueError(f"summary lacks keys: {', '.join(missing_keys)}")
    subject_width = max([len("Subject"), *(len(str(subject)) for subject in table["subject"])])
    clips_width = max([len("Clips"), *(len(str(clips)) for clips in table["clips"])])
    caveats = format_caveats(summary.get("caveats", []))
    lines = [*caveats, *([""] if caveats else [])]
    lines.append(
        f"{'Subject':<{subject_width}}  {'Clips':>{clips_width}}  "
        f"{'UF1':>5}  {'UAR':>5}  {'ACC':>5}"
    )
    for row in table.itertuples(index=False):
        scores = "  ".join(_score(getattr(row, key), color) for key in SCORE_KEYS)
        marker = "  (1 class)" if row.single_class else ""
        lines.append(
            f"{row.subject!s:<{subject_width}}  {row.clips:>{clips_width}}  {scores}{marker}"
        )
    lines.append("")
    lines.append(
        f"Overall (MEGC2019 pooled, {summary['clips']} clips): {_labelled(summary, color)}"
    )
    lines.append(
        f"Mean over {len(table)} subjects (as papers print): "
        f"{_labelled(summary['mean_over_subjects'], color)}"
    )
    if "annotation_only_reference" in summary:
        lines.append(format_annotation_reference(summary["annotation_only_reference"], color=color))
    for part, part_scores in summary.get("parts", {}).items():
        lines.append(
            f"  Part {part} (pooled, {part_scores['clips']} clips): {_labelled(part_scores, color)}"
        )
    return "\n".join(lines)


def format_caveats(caveats: Sequence[Mapping[str, Any]]) -> list[str]:
    """The lines that say why a run is not a clean LOSO estimate; [] when nothing does.

    Args:
        caveats: ``label``, ``text`` and ``optimistic`` of each (as summary.json records
            them, see :func:`mer.caveats.summary_entries`); an optimistic one is marked
            "FOR COMPARISON ONLY".
    """
    if not caveats:
        return []
    lines = ["NOT A CLEAN LOSO ESTIMATE:"]
    for caveat in caveats:
        text = f"FOR COMPARISON ONLY ({caveat['text']})" if caveat["optimistic"] else caveat["text"]
        lines.append(f"  [{caveat['label']}] {text}")
    return lines


def format_annotation_reference(reference: Mapping[str, Any], *, color: bool = False) -> str:
    """One line: the pooled scores of predicting each clip from its AU region alone (see
    :mod:`mer.evaluation.annotation_only`; annotated, or with ``held_out_regions``
    "predicted", the one its fold's AU detector chose), and the clips per region."""
    regions = ", ".join(f"{name} {count}" for name, count in reference["regions"].items())
    predicted = reference.get("held_out_regions") == "predicted"
    which = "predicted AU region" if predicted else "AU region"
    return (
        f"Annotation-only reference (each clip: the training folds' majority class of its "
        f"{which}, no pixels; {reference['clips']} clips): {_labelled(reference, color)}  "
        f"(regions: {regions})"
    )


def _encoded(
    predictions: pd.DataFrame, class_names: Sequence[str]
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
    """Validates the predictions; returns subjects, parts (or None) and integer labels."""
    if isinstance(class_names, str):
        raise ValueError(f"class_names must be a sequence of names, got the string {class_names!r}")
    names = list(class_names)
    if len(names) < 2:
        raise ValueError(f"class_names needs at least 2 classes, got {names}")
    if len(set(names)) != len(names):
        raise ValueError(f"class_names has duplicates: {names}")
    _require_columns(predictions, REQUIRED_COLUMNS, "predictions")
    if predictions.empty:
        raise ValueError("predictions has no rows")
    key_columns = ["part", "subject", "sample"] if "part" in predictions else ["subject", "sample"]
    for column in key_columns:
        if predictions[column].isna().any():
            raise ValueError(f"predictions column {column!r} has missing values")
    keys = predictions[key_columns].astype(str)
    repeated = keys[keys.duplicated()]
    if not repeated.empty:
        raise ValueError(
            f"predictions has more than one row for {dict(repeated.iloc[0])}; "
            "every clip must have exactly one prediction"
        )
    label_of = {name: index for index, name in enumerate(names)}
    labels = []
    for column in ("y_true", "y_pred"):
        values = predictions[column].tolist()
        unknown = sorted({repr(value) for value in values if value not in label_of})
        if unknown:
            raise ValueError(
                f"predictions column {column!r} has values not in class_names {names}: "
                f"{', '.join(unknown[:_MAX_QUOTED_VALUES])}"
            )
        labels.append(np.array([label_of[value] for value in values], dtype=np.int64))
    parts = keys["part"].to_numpy(dtype=object) if "part" in keys else None
    return keys["subject"].to_numpy(dtype=object), parts, labels[0], labels[1]


def _subject_rows(
    subjects: np.ndarray, true_labels: np.ndarray, predicted_labels: np.ndarray, num_classes: int
) -> pd.DataFrame:
    """Builds the per-subject table from validated, encoded predictions."""
    rows = []
    for subject in sorted(set(subjects), key=natural_sort_key):
        in_subject = subjects == subject
        scores = subject_metrics(true_labels[in_subject], predicted_labels[in_subject], num_classes)
        classes_present = int(np.unique(true_labels[in_subject]).size)
        rows.append(
            {
                "subject": subject,
                "clips": int(in_subject.sum()),
                **scores,
                "classes_present": classes_present,
                "single_class": classes_present == 1,
            }
        )
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS)).astype(
        {"clips": "int64", "classes_present": "int64", "single_class": "bool"}
    )


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    """Raises ValueError naming the ``columns`` that ``frame`` lacks."""
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks columns: {', '.join(missing)}")


def _score(value: float, color: bool) -> str:
    """Formats a score as 5 characters, coloured by its level when asked."""
    text = f"{value:5.3f}"
    if not color:
        return text
    if value >= GOOD_SCORE:
        shade = Fore.GREEN
    elif value >= FAIR_SCORE:
        shade = Fore.YELLOW
    else:
        shade = Fore.RED
    return f"{shade}{text}{Style.RESET_ALL}"


def _labelled(scores: dict[str, float], color: bool) -> str:
    """Formats "UF1 x  UAR y  ACC z" from a dict with those keys."""
    return "  ".join(f"{key.upper()} {_score(scores[key], color)}" for key in SCORE_KEYS)


AU_SCORE_COLUMNS = ("au", "clips", "positives", "tp", "fp", "fn", "f1", "f1_all_present")
AU_SCORING = (
    "the held-out clips' AU cells are read only to score their predictions (never to train "
    "or choose anything)"
)


def au_scores(
    targets: np.ndarray, probabilities: np.ndarray, codes: Sequence[int], threshold: float = 0.5
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per-AU detection scores of pooled predictions (every fold's clips), and their summary.

    Args:
        targets: (clips, AUs) from the clips' AU cells: 1 present, 0 absent, NaN blank.
        probabilities: (clips, AUs) predicted, same order.
        codes: the AU numbers of the columns.
        threshold: probability from which an AU counts as detected.

    Returns:
        (table, summary): one row per AU (``AU_SCORE_COLUMNS``; ``au`` as "AU12") then a row
        ``mean`` whose ``f1`` and ``f1_all_present`` are the means over the AUs; and
        ``mean_f1``, ``mean_f1_all_present``, ``per_au`` (per AU: the row's values),
        ``threshold``, ``clips`` and ``scoring`` (``AU_SCORING``). ``f1_all_present`` is the
        reference of a detector that calls every AU present in every clip, 2P / (P + clips):
        what a detector must beat to have learnt anything.

    Raises:
        ValueError: as :func:`mer.evaluation.metrics.au_f1_scores`, or ``codes`` of another
            length than the columns.
    """
    if len(codes) != np.shape(targets)[-1]:
        raise ValueError(f"{len(codes)} AU codes for {np.shape(targets)[-1]} columns: {codes}")
    scores = au_f1_scores(targets, probabilities, threshold)
    scores["f1_all_present"] = au_f1_scores(targets, np.ones_like(probabilities), threshold)["f1"]
    counts = AU_SCORE_COLUMNS[1:-2]
    rows = [
        {"au": f"AU{code}", **{key: scores[key][index] for key in AU_SCORE_COLUMNS[1:]}}
        for index, code in enumerate(codes)
    ]
    per_au = {
        row["au"]: {
            key: (int if key in counts else float)(row[key]) for key in AU_SCORE_COLUMNS[1:]
        }
        for row in rows
    }
    reference = float(scores["f1_all_present"].mean())
    rows.append({"au": "mean", "f1": scores["mean_f1"], "f1_all_present": reference})
    table = pd.DataFrame(rows, columns=list(AU_SCORE_COLUMNS)).astype(
        {key: "Int64" for key in counts}
    )
    summary = {
        "mean_f1": scores["mean_f1"],
        "mean_f1_all_present": reference,
        "per_au": per_au,
        "threshold": threshold,
        "clips": len(targets),
        "scoring": AU_SCORING,
    }
    return table, summary


def format_au_report(table: pd.DataFrame, summary: dict[str, Any], *, color: bool = True) -> str:
    """The per-AU F1 table and the mean over AUs, as aligned text, with the run's caveats
    (``summary["caveats"]``) first and how the held-out AU cells are used last.

    Args:
        table, summary: what :func:`au_scores` returned (summary may hold more keys).
        color: colour the F1 values as :func:`format_report` colours scores.
    """
    caveats = format_caveats(summary.get("caveats", []))
    lines = [*caveats, *([""] if caveats else [])]
    lines.append(
        f"{'AU':<5}  {'Clips':>5}  {'Present':>7}  {'TP':>4}  {'FP':>4}  {'FN':>4}  F1     "
        "all present"
    )
    for row in table[table["au"] != "mean"].itertuples(index=False):
        lines.append(
            f"{row.au:<5}  {row.clips:>5}  {row.positives:>7}  {row.tp:>4}  {row.fp:>4}  "
            f"{row.fn:>4}  {_score(row.f1, color)}  {row.f1_all_present:5.3f}"
        )
    lines.append("")
    lines.append(
        f"Mean F1 over {len(summary['per_au'])} AUs (pooled over the folds, {summary['clips']} "
        f"clips, detected at p >= {summary['threshold']}): {_score(summary['mean_f1'], color)}"
    )
    lines.append(
        "Reference, every AU called present in every clip: mean F1 "
        f"{summary['mean_f1_all_present']:5.3f}"
    )
    lines.append(f"Scoring: {summary['scoring']}")
    return "\n".join(lines)

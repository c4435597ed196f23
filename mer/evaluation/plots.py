"""PNG plots of evaluation results.

Figures are built with :class:`matplotlib.figure.Figure` and rendered by
:class:`~matplotlib.backends.backend_agg.FigureCanvasAgg`, so no display is needed and
pyplot's global backend and figure registry are left untouched.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from mer.io import write_atomically

VALIDATION_PREFIX = "val_"
MAX_LEGEND_FOLDS = 12
_DPI = 100


def plot_confusion_matrix(
    matrix: np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike[str],
    *,
    normalize: bool = False,
    title: str = "",
) -> None:
    """Draws a confusion matrix as a heat map with the value written in each cell.

    Args:
        matrix: (K, K) non-negative counts, rows = true class, columns = predicted.
        class_names: The K class names, in label order.
        path: Destination PNG file (parent folders are created).
        normalize: Show each row divided by its sum (the per-class recall on the
            diagonal) instead of counts; an all-zero row stays zero.
        title: Figure title.

    Raises:
        ValueError: If ``matrix`` is not square, does not match ``class_names``, or has
            negative or non-finite entries.
    """
    values = np.asarray(matrix, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] != values.shape[1]:
        raise ValueError(f"confusion matrix must be square 2-D, got shape {values.shape}")
    if values.shape[0] != len(class_names):
        raise ValueError(
            f"confusion matrix shape {values.shape} does not match "
            f"{len(class_names)} class names {list(class_names)}"
        )
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError(f"confusion matrix must be finite and non-negative, got {values.tolist()}")
    if normalize:
        row_sums = values.sum(axis=1, keepdims=True)
        values = np.divide(values, row_sums, out=np.zeros_like(values), where=row_sums > 0)
        cell_format = "{:.2f}"
    else:
        cell_format = "{:.0f}" if np.all(values == np.round(values)) else "{:.2f}"

    size = 2.5 + 0.8 * len(class_names)
    figure = Figure(figsize=(size + 1.0, size), dpi=_DPI, layout="constrained")
    axes = figure.add_subplot()
    image = axes.imshow(values, cmap="Blues", vmin=0.0, vmax=max(values.max(), 1e-12))
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    threshold = values.max() / 2.0
    for row, column in np.ndindex(values.shape):
        axes.text(
            column,
            row,
            cell_format.format(values[row, column]),
            ha="center",
            va="center",
            color="white" if values[row, column] > threshold else "black",
        )
    ticks = np.arange(len(class_names))
    axes.set_xticks(ticks, labels=list(class_names), rotation=45, ha="right")
    axes.set_yticks(ticks, labels=list(class_names))
    axes.set_xlabel("Predicted")
    axes.set_ylabel("True")
    axes.set_title(
        title or ("Confusion matrix (row-normalised)" if normalize else "Confusion matrix")
    )
    _save(figure, path)


def plot_training_curves(
    histories: Mapping[str, Mapping[str, Sequence[float]]],
    path: str | os.PathLike[str],
    *,
    title: str = "",
) -> None:
    """Draws training curves: one panel per metric, one line per fold.

    A ``val_<metric>`` series is drawn dashed in the panel of ``<metric>``, in its fold's
    colour. Panels come in the order loss, accuracy (``<output>_accuracy`` for a model with
    several outputs), then the other metrics as first seen.
    Fold names are listed in a legend when there are at most ``MAX_LEGEND_FOLDS`` folds.

    Args:
        histories: Fold name -> metric name -> one value per epoch, e.g.
            ``{"sub01": {"loss": [...], "accuracy": [...], "val_loss": [...]}}``.
        path: Destination PNG file (parent folders are created).
        title: Figure title.

    Raises:
        ValueError: If there are no folds, a fold has no metrics, or a series is empty
            or not a 1-D sequence of numbers.
    """
    if not histories:
        raise ValueError("histories is empty; at least one fold is needed")
    panel_names: list[str] = []
    for fold, history in histories.items():
        if not history:
            raise ValueError(f"history of fold {fold!r} has no metrics")
        for metric in history:
            base = metric.removeprefix(VALIDATION_PREFIX)
            if base not in panel_names:
                panel_names.append(base)
    accuracies = [name for name in panel_names if name.endswith("accuracy")]
    preferred = ["loss"] * ("loss" in panel_names) + accuracies
    panel_names = preferred + [name for name in panel_names if name not in preferred]

    figure = Figure(figsize=(5.0 * len(panel_names), 4.0), dpi=_DPI, layout="constrained")
    panels = figure.subplots(1, len(panel_names), squeeze=False)[0]
    for fold_index, (fold, history) in enumerate(histories.items()):
        color = f"C{fold_index % 10}"
        for metric, series in history.items():
            values = _series(fold, metric, series)
            is_validation = metric.startswith(VALIDATION_PREFIX)
            axes = panels[panel_names.index(metric.removeprefix(VALIDATION_PREFIX))]
            axes.plot(
                np.arange(1, len(values) + 1),
                values,
                color=color,
                linestyle="--" if is_validation else "-",
                label=None if is_validation else str(fold),
            )
    validated = any(
        metric.startswith(VALIDATION_PREFIX) for history in histories.values() for metric in history
    )
    for name, axes in zip(panel_names, panels, strict=True):
        axes.set_title(f"{name} (solid: train, dashed: validation)" if validated else name)
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_ylabel(name)
        axes.grid(alpha=0.3)
    if len(histories) <= MAX_LEGEND_FOLDS:
        panels[0].legend(title="fold", fontsize="small")
    figure.suptitle(title or f"Training curves ({len(histories)} folds)")
    _save(figure, path)


def plot_subject_scores(
    table: pd.DataFrame, path: str | os.PathLike[str], *, metric: str = "uf1"
) -> None:
    """Draws one bar per subject for a score column, with the mean as a dashed line.

    Bars of subjects with a single class (``single_class`` column, when present) are
    drawn grey, since their scores are less comparable.

    Args:
        table: Per-subject table (see :func:`mer.evaluation.report.per_subject_table`),
            at least columns ``subject`` and ``metric``.
        path: Destination PNG file (parent folders are created).
        metric: Column to plot, e.g. ``"uf1"``, ``"uar"`` or ``"acc"``.

    Raises:
        ValueError: If the table is empty, lacks a column, or ``metric`` is not numeric.
    """
    missing = [column for column in ("subject", metric) if column not in table.columns]
    if missing:
        raise ValueError(f"table lacks columns: {', '.join(missing)}")
    if table.empty:
        raise ValueError("table has no rows")
    if not pd.api.types.is_numeric_dtype(table[metric]):
        raise ValueError(f"column {metric!r} is not numeric (dtype {table[metric].dtype})")
    scores = table[metric].to_numpy(dtype=np.float64)
    subjects = [str(subject) for subject in table["subject"]]
    single_class = (
        table["single_class"].to_numpy(dtype=bool)
        if "single_class" in table.columns
        else np.zeros(len(table), dtype=bool)
    )

    figure = Figure(
        figsize=(max(6.0, 0.35 * len(subjects) + 2.0), 4.0), dpi=_DPI, layout="constrained"
    )
    axes = figure.add_subplot()
    positions = np.arange(len(subjects))
    axes.bar(positions[~single_class], scores[~single_class], color="C0", label="subject")
    if single_class.any():
        axes.bar(positions[single_class], scores[single_class], color="0.6", label="one class only")
    mean = float(np.nanmean(scores))
    axes.axhline(mean, color="C3", linestyle="--", label=f"mean {mean:.3f}")
    axes.set_xticks(positions, labels=subjects, rotation=90)
    axes.set_xlabel("subject")
    axes.set_ylabel(metric.upper())
    if np.nanmin(scores) >= 0.0 and np.nanmax(scores) <= 1.0:
        axes.set_ylim(0.0, 1.05)
    axes.legend(fontsize="small")
    axes.set_title(f"{metric.upper()} per held-out subject")
    _save(figure, path)


def plot_class_distribution(counts: Mapping[str, int], path: str | os.PathLike[str]) -> None:
    """Draws one bar per class with its clip count written above it.

    Args:
        counts: Class name -> number of clips, in the order to draw.
        path: Destination PNG file (parent folders are created).

    Raises:
        ValueError: If ``counts`` is empty or a count is negative or not an integer.
    """
    if not counts:
        raise ValueError("counts is empty; at least one class is needed")
    for name, count in counts.items():
        if isinstance(count, bool) or not isinstance(count, int | np.integer) or count < 0:
            raise ValueError(
                f"count of class {name!r} must be a non-negative integer, got {count!r}"
            )
    names = [str(name) for name in counts]
    values = [int(count) for count in counts.values()]

    figure = Figure(figsize=(max(4.0, 0.8 * len(names) + 2.0), 4.0), dpi=_DPI, layout="constrained")
    axes = figure.add_subplot()
    bars = axes.bar(names, values, color="C0")
    axes.bar_label(bars, labels=[str(value) for value in values])
    axes.margins(y=0.12)
    axes.set_xlabel("class")
    axes.set_ylabel("clips")
    axes.set_title(f"Class distribution ({sum(values)} clips)")
    axes.tick_params(axis="x", labelrotation=30)
    _save(figure, path)


def _series(fold: str, metric: str, series: Sequence[float]) -> np.ndarray:
    """Converts one history series to a float array, rejecting empty or bad ones."""
    try:
        values = np.asarray(series, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"fold {fold!r} metric {metric!r} is not numeric: {series!r}") from error
    if values.ndim != 1 or values.size == 0:
        raise ValueError(
            f"fold {fold!r} metric {metric!r} must be a non-empty 1-D sequence, got {series!r}"
        )
    return values


def _save(figure: Figure, path: str | os.PathLike[str]) -> None:
    """Renders ``figure`` to a PNG file with the Agg canvas (written atomically)."""
    FigureCanvasAgg(figure)
    image = io.BytesIO()
    figure.savefig(image, format="png")
    write_atomically(path, image.getvalue())


def plot_run_comparison(table: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Grouped bars of the pooled UF1, UAR and ACC of each run (AU detectors: the mean F1, and
    its every-AU-present reference as a mark), ± one standard deviation where a run has several
    seeds (the table of `mer.evaluation.compare.compare_runs`)."""
    detectors = "mean_f1" in table
    scores = ("mean_f1",) if detectors else ("uf1", "uar", "acc")
    runs = len(table)
    figure = Figure(figsize=(max(5.0, 1.2 * runs + 2.5), 4.0), dpi=_DPI)
    axes = figure.add_subplot()
    width = 0.8 / len(scores)
    positions = np.arange(runs)
    for index, key in enumerate(scores):
        axes.bar(
            positions + (index - (len(scores) - 1) / 2) * width,
            table[key],
            width,
            yerr=table[f"{key}_std"],
            capsize=3,
            label="mean F1 over the AUs" if detectors else key.upper(),
        )
    if detectors:
        axes.scatter(
            positions,
            table["mean_f1_all_present"],
            marker="_",
            s=600,
            color="black",
            label="every AU called present",
            zorder=3,
        )
    axes.set_xticks(positions, table["run"], rotation=20, ha="right", fontsize=8)
    axes.set_ylim(0, 1.05)
    axes.set_ylabel("pooled score")
    axes.set_title("Runs compared (pooled over clips)")
    axes.legend(loc="lower right")
    figure.tight_layout()
    _save(figure, path)


def plot_benchmarks(results: Sequence[Mapping], labels: Sequence[str], path) -> None:
    """Training (compute and pipeline) and inference clips/s of benchmark results side by side,
    with the share of the matmul peak that training reached written above each group."""
    keys = (
        ("train_compute_clips_per_s", "train: compute"),
        ("train_pipeline_clips_per_s", "train: pipeline"),
        ("infer_clips_per_s", "inference"),
    )
    if len(results) != len(labels) or not results:
        raise ValueError(f"need one label per result, got {len(labels)} for {len(results)}")
    figure = Figure(figsize=(max(5.0, 1.4 * len(results) + 2.5), 4.2), dpi=_DPI)
    axes = figure.add_subplot()
    width = 0.8 / len(keys)
    positions = np.arange(len(results))
    for index, (key, name) in enumerate(keys):
        values = [float(result[key]) for result in results]
        axes.bar(positions + (index - 1) * width, values, width, label=name)
    for position, result in zip(positions, results, strict=True):
        share = result["achieved_gflops"] / result["peak_gflops"]
        top = max(float(result[key]) for key, _ in keys)
        axes.annotate(
            f"training: {share:.0%} of peak", (position, top), ha="center", va="bottom", fontsize=8
        )
    axes.set_xticks(positions, labels, rotation=15, ha="right", fontsize=8)
    axes.set_ylabel("clips / s")
    axes.set_yscale("log")
    axes.set_title("python -m mer bench")
    axes.legend(fontsize=8)
    figure.tight_layout()
    _save(figure, path)

"""Tests of mer.evaluation.plots."""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib
import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from mer.evaluation.plots import (
    plot_class_distribution,
    plot_confusion_matrix,
    plot_subject_scores,
    plot_training_curves,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CLASSES = ("negative", "positive", "surprise")
MATRIX = np.array([[10, 2, 0], [1, 5, 1], [0, 3, 4]])


def assert_png_image(path: Path) -> None:
    """Checks that ``path`` is a PNG whose pixels are an RGB(A) image that is not blank."""
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    assert image.shape[0] > 100 and image.shape[1] > 100
    assert image.dtype == np.float32
    assert image[..., :3].std() > 0.01


@pytest.mark.parametrize("normalize", [False, True])
def test_plot_confusion_matrix_writes_png(tmp_path: Path, normalize: bool) -> None:
    path = tmp_path / "plots" / "confusion.png"
    plot_confusion_matrix(MATRIX, CLASSES, path, normalize=normalize, title="CASME II")
    assert_png_image(path)


def test_plot_confusion_matrix_with_an_empty_row(tmp_path: Path) -> None:
    path = tmp_path / "confusion.png"
    plot_confusion_matrix(np.array([[3, 1], [0, 0]]), ("a", "b"), path, normalize=True)
    assert_png_image(path)


@pytest.mark.parametrize(
    ("matrix", "class_names", "message"),
    [
        (MATRIX, CLASSES[:2], r"shape \(3, 3\) does not match 2 class names"),
        (MATRIX[:2], CLASSES, r"square 2-D, got shape \(2, 3\)"),
        (-MATRIX, CLASSES, "non-negative"),
        (np.full((3, 3), np.nan), CLASSES, "finite"),
    ],
)
def test_plot_confusion_matrix_rejects_bad_input(
    tmp_path: Path, matrix: np.ndarray, class_names: tuple[str, ...], message: str
) -> None:
    path = tmp_path / "confusion.png"
    with pytest.raises(ValueError, match=message):
        plot_confusion_matrix(matrix, class_names, path)
    assert not path.exists()


def test_plot_training_curves_writes_png(tmp_path: Path) -> None:
    histories = {
        "sub01": {
            "loss": [1.2, 0.8, 0.5],
            "accuracy": [0.3, 0.5, 0.7],
            "val_loss": [1.3, 1.0, 0.9],
            "val_accuracy": [0.2, 0.4, 0.5],
        },
        "sub02": {"loss": [1.1, 0.7], "accuracy": [0.4, 0.6], "val_uf1": [0.2, 0.3]},
    }
    path = tmp_path / "curves.png"
    plot_training_curves(histories, path, title="LOSO folds")
    assert_png_image(path)
    # Three panels (loss, accuracy, uf1) make a wider figure than one panel.
    narrow = tmp_path / "narrow.png"
    plot_training_curves({"sub01": {"loss": [1.0, 0.5]}}, narrow)
    assert_png_image(narrow)
    wide_width = matplotlib.image.imread(path).shape[1]
    narrow_width = matplotlib.image.imread(narrow).shape[1]
    assert wide_width > 2 * narrow_width


@pytest.mark.parametrize(
    ("histories", "message"),
    [
        ({}, "histories is empty"),
        ({"sub01": {}}, "'sub01' has no metrics"),
        ({"sub01": {"loss": []}}, "'sub01' metric 'loss' must be a non-empty"),
        ({"sub01": {"loss": ["high"]}}, "'sub01' metric 'loss' is not numeric"),
    ],
)
def test_plot_training_curves_rejects_bad_input(
    tmp_path: Path, histories: dict, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        plot_training_curves(histories, tmp_path / "curves.png")


def test_plot_subject_scores_writes_png(tmp_path: Path) -> None:
    table = pd.DataFrame(
        {
            "subject": ["sub1", "sub2", "sub10"],
            "uf1": [0.8, 0.2, 0.55],
            "uar": [0.7, 0.5, 0.6],
            "single_class": [False, True, False],
        }
    )
    path = tmp_path / "subjects.png"
    plot_subject_scores(table, path)
    assert_png_image(path)
    plot_subject_scores(table.drop(columns="single_class"), path, metric="uar")
    assert_png_image(path)


def test_plot_subject_scores_rejects_bad_input(tmp_path: Path) -> None:
    table = pd.DataFrame({"subject": ["sub1"], "uf1": [0.5], "note": ["x"]})
    with pytest.raises(ValueError, match="lacks columns: acc"):
        plot_subject_scores(table, tmp_path / "s.png", metric="acc")
    with pytest.raises(ValueError, match="'note' is not numeric"):
        plot_subject_scores(table, tmp_path / "s.png", metric="note")
    with pytest.raises(ValueError, match="no rows"):
        plot_subject_scores(table.iloc[:0], tmp_path / "s.png")


def test_plot_class_distribution_writes_png(tmp_path: Path) -> None:
    path = tmp_path / "classes.png"
    plot_class_distribution({"negative": 88, "positive": 32, "surprise": np.int64(25)}, path)
    assert_png_image(path)


@pytest.mark.parametrize(
    ("counts", "message"),
    [({}, "counts is empty"), ({"negative": -1}, "'negative'.*-1"), ({"a": 2.5}, "'a'.*2.5")],
)
def test_plot_class_distribution_rejects_bad_input(
    tmp_path: Path, counts: dict, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        plot_class_distribution(counts, tmp_path / "classes.png")


def test_plots_do_not_register_pyplot_figures(tmp_path: Path) -> None:
    plot_class_distribution({"a": 1, "b": 2}, tmp_path / "classes.png")
    pyplot = sys.modules.get("matplotlib.pyplot")
    assert pyplot is None or pyplot.get_fignums() == []

"""Tests of mer.evaluation.metrics."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import f1_score, recall_score

from mer.evaluation.metrics import (
    confusion_matrix,
    per_class_scores,
    pooled_metrics,
    subject_metrics,
)

# Three classes; class 2 is never predicted.
Y_TRUE = [0, 0, 0, 1, 1, 2, 2, 2, 2]
Y_PRED = [0, 0, 1, 1, 0, 0, 0, 1, 0]


def test_confusion_matrix_counts_rows_true_columns_predicted() -> None:
    matrix = confusion_matrix(Y_TRUE, Y_PRED, 3)
    assert matrix.dtype == np.int64
    np.testing.assert_array_equal(matrix, [[2, 1, 0], [1, 1, 0], [3, 1, 0]])


def test_pooled_metrics_by_hand() -> None:
    # class 0: TP 2, FP 4 (clips 4, 5, 6, 8), FN 1 -> F1 4/9, recall 2/3
    # class 1: TP 1, FP 2 (clips 2, 7), FN 1       -> F1 2/5, recall 1/2
    # class 2: TP 0, FP 0, FN 4 (never predicted)  -> F1 0,   recall 0
    scores = pooled_metrics(Y_TRUE, Y_PRED, 3)
    assert scores["uf1"] == pytest.approx((4 / 9 + 2 / 5 + 0) / 3)
    assert scores["uar"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert scores["acc"] == pytest.approx(3 / 9)
    assert all(type(value) is float for value in scores.values())


def test_per_class_scores_by_hand() -> None:
    scores = per_class_scores(confusion_matrix(Y_TRUE, Y_PRED, 3))
    np.testing.assert_array_equal(scores["support"], [3, 2, 4])
    np.testing.assert_array_equal(scores["tp"], [2, 1, 0])
    np.testing.assert_array_equal(scores["fp"], [4, 2, 0])
    np.testing.assert_array_equal(scores["fn"], [1, 1, 4])
    np.testing.assert_allclose(scores["f1"], [4 / 9, 2 / 5, 0])
    np.testing.assert_allclose(scores["recall"], [2 / 3, 1 / 2, 0])


def test_class_absent_from_truth_and_predictions_scores_zero() -> None:
    # K = 3 but class 2 never occurs: its F1 and recall are 0/0 and count as 0.
    scores = pooled_metrics([0, 1, 1], [0, 1, 1], 3)
    assert scores == pytest.approx({"uf1": 2 / 3, "uar": 2 / 3, "acc": 1.0})
    assert subject_metrics([0, 1, 1], [0, 1, 1], 3)["uf1"] == pytest.approx(2 / 3)


def test_pooled_differs_from_mean_over_subjects() -> None:
    # Subject A: two clips of class 0, both right -> UF1 (1 + 0) / 2 = 0.5, ACC 1.
    # Subject B: one clip of class 1, predicted 0 -> UF1 0, ACC 0.
    subject_a = subject_metrics([0, 0], [0, 0], 2)
    subject_b = subject_metrics([1], [0], 2)
    assert subject_a == pytest.approx({"uf1": 0.5, "uar": 0.5, "acc": 1.0})
    assert subject_b == pytest.approx({"uf1": 0.0, "uar": 0.0, "acc": 0.0})
    # Pooled: class 0 TP 2, FP 1, FN 0 -> F1 4/5; class 1 F1 0 -> UF1 0.4; UAR (1 + 0) / 2.
    pooled = pooled_metrics([0, 0, 1], [0, 0, 0], 2)
    assert pooled == pytest.approx({"uf1": 0.4, "uar": 0.5, "acc": 2 / 3})
    mean_uf1 = (subject_a["uf1"] + subject_b["uf1"]) / 2
    mean_acc = (subject_a["acc"] + subject_b["acc"]) / 2
    assert mean_uf1 == pytest.approx(0.25)
    assert mean_acc == pytest.approx(0.5)
    assert abs(mean_uf1 - pooled["uf1"]) > 0.1
    assert abs(mean_acc - pooled["acc"]) > 0.1


@st.composite
def label_arrays(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, int]:
    num_classes = draw(st.integers(min_value=2, max_value=6))
    length = draw(st.integers(min_value=1, max_value=40))
    labels = st.lists(
        st.integers(min_value=0, max_value=num_classes - 1), min_size=length, max_size=length
    )
    return np.array(draw(labels)), np.array(draw(labels)), num_classes


@settings(max_examples=100, deadline=None)
@given(label_arrays())
def test_subject_and_pooled_metrics_match_sklearn(
    arrays: tuple[np.ndarray, np.ndarray, int],
) -> None:
    y_true, y_pred, num_classes = arrays
    labels = list(range(num_classes))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected_f1 = f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
        expected_recall = recall_score(
            y_true, y_pred, labels=labels, average="macro", zero_division=0
        )
    expected = {"uf1": expected_f1, "uar": expected_recall, "acc": np.mean(y_true == y_pred)}
    assert subject_metrics(y_true, y_pred, num_classes) == pytest.approx(expected)
    assert pooled_metrics(y_true, y_pred, num_classes) == pytest.approx(expected)
    assert confusion_matrix(y_true, y_pred, num_classes).sum() == len(y_true)


@pytest.mark.parametrize("function", [confusion_matrix, pooled_metrics, subject_metrics])
@pytest.mark.parametrize(
    ("y_true", "y_pred", "num_classes", "message"),
    [
        ([0, 1, 1], [0, 1], 2, "y_true has 3 labels but y_pred has 2"),
        ([], [], 2, "empty"),
        ([0, 5], [0, 1], 3, r"y_true has labels outside \[0, 3\): 5"),
        ([0, 1], [0, -1], 3, r"y_pred has labels outside \[0, 3\): -1"),
        ([0, 0], [0, 0], 1, "num_classes must be >= 2, got 1"),
        ([0, 0], [0, 0], 2.0, "got 2.0"),
        ([0.0, 1.0], [0, 1], 2, "y_true must hold integer labels, got dtype float64"),
        ([[0, 1]], [[0, 1]], 2, r"y_true must be 1-D, got shape \(1, 2\)"),
    ],
)
def test_invalid_inputs_raise_value_error(
    function: object, y_true: list, y_pred: list, num_classes: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        function(y_true, y_pred, num_classes)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("matrix", "message"),
    [([[1, 2, 3]], r"square 2-D, got shape \(1, 3\)"), ([[1, -1], [0, 2]], "negative count: -1")],
)
def test_per_class_scores_rejects_bad_matrix(matrix: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        per_class_scores(np.array(matrix))

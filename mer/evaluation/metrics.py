"""Classification metrics for micro-expression recognition (pure NumPy).

Labels are integers in ``[0, num_classes)``. Two aggregations are offered:

* :func:`pooled_metrics`, the MEGC2019 composite protocol: the per-class TP, FP and FN
  are summed over all leave-one-subject-out folds, which is the same as computing them
  on the pooled predictions of every fold, and the scores are derived from those sums.
* :func:`subject_metrics`, the scores of one held-out subject. Averaging these over the
  subjects gives the "mean over subjects" figure many papers print, which is generally
  different from the pooled figure.

Both use the same per-class formulas, over all ``num_classes`` classes of the dataset:
F1 = 2TP / (2TP + FP + FN) and recall = TP / N_c (N_c = number of true clips of class c).
A class whose formula is 0/0 (F1: the class is neither present nor predicted; recall:
the class is not present) scores 0, as in scikit-learn with ``zero_division=0``.
UF1 and UAR are the unweighted means of these over the classes; ACC is the fraction of
correct predictions.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

_MAX_QUOTED_VALUES = 5


def confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int) -> np.ndarray:
    """Counts predictions per (true class, predicted class) pair.

    Args:
        y_true: True labels, integers in ``[0, num_classes)``.
        y_pred: Predicted labels, same length as ``y_true``.
        num_classes: Number of classes K of the dataset (at least 2).

    Returns:
        A (K, K) int64 array; rows are true classes, columns are predicted classes.

    Raises:
        ValueError: If the inputs are empty, of different lengths, not 1-D integer
            labels, out of ``[0, K)``, or if ``num_classes`` is below 2.
    """
    true_labels, predicted_labels = _validated_labels(y_true, y_pred, num_classes)
    flat_counts = np.bincount(
        true_labels * num_classes + predicted_labels, minlength=num_classes * num_classes
    )
    return flat_counts.reshape(num_classes, num_classes).astype(np.int64)


def per_class_scores(matrix: ArrayLike) -> dict[str, np.ndarray]:
    """Derives per-class counts and scores from a confusion matrix.

    Args:
        matrix: A (K, K) confusion matrix of non-negative counts, rows = true class.

    Returns:
        A dict of length-K arrays: ``"support"`` (true count N_c), ``"tp"``, ``"fp"``,
        ``"fn"`` (int64), ``"f1"`` = 2TP/(2TP+FP+FN) and ``"recall"`` = TP/N_c (float64,
        0 where the formula is 0/0).

    Raises:
        ValueError: If ``matrix`` is not square 2-D or has negative entries.
    """
    counts = np.asarray(matrix)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"confusion matrix must be square 2-D, got shape {counts.shape}")
    if counts.size and counts.min() < 0:
        raise ValueError(f"confusion matrix has a negative count: {counts.min()}")
    counts = counts.astype(np.int64)
    true_positives = np.diag(counts)
    support = counts.sum(axis=1)
    false_positives = counts.sum(axis=0) - true_positives
    false_negatives = support - true_positives
    return {
        "support": support,
        "tp": true_positives,
        "fp": false_positives,
        "fn": false_negatives,
        "f1": _divide_or_zero(
            2 * true_positives, 2 * true_positives + false_positives + false_negatives
        ),
        "recall": _divide_or_zero(true_positives, support),
    }


def pooled_metrics(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int) -> dict[str, float]:
    """MEGC2019 composite scores of the predictions pooled over all folds.

    Pass the predictions of every fold together: TP, FP and FN per class are then the
    sums over the folds, as the protocol prescribes. A 0/0 class term counts as 0.

    Args:
        y_true: True labels of all clips, integers in ``[0, num_classes)``.
        y_pred: Predicted labels, same length as ``y_true``.
        num_classes: Number of classes K of the dataset (at least 2).

    Returns:
        ``{"uf1": ..., "uar": ..., "acc": ...}``: mean F1 over the K classes, mean recall
        over the K classes, and the fraction of correct predictions.

    Raises:
        ValueError: On invalid inputs (see :func:`confusion_matrix`).
    """
    return _summary_scores(confusion_matrix(y_true, y_pred, num_classes))


def subject_metrics(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int) -> dict[str, float]:
    """Scores of one held-out subject, over all classes of the dataset.

    UF1 is the macro F1 and UAR the macro recall over all K classes, including those the
    subject does not have (a class absent from both ``y_true`` and ``y_pred`` scores 0,
    as does the recall of any class absent from ``y_true``). This matches scikit-learn's
    ``f1_score``/``recall_score`` with ``labels=range(K), average="macro",
    zero_division=0``. The formulas are those of :func:`pooled_metrics`; only the set of
    predictions differs (one subject's instead of all folds').

    Args:
        y_true: True labels of the subject's clips, integers in ``[0, num_classes)``.
        y_pred: Predicted labels, same length as ``y_true``.
        num_classes: Number of classes K of the dataset (at least 2).

    Returns:
        ``{"uf1": ..., "uar": ..., "acc": ...}``.

    Raises:
        ValueError: On invalid inputs (see :func:`confusion_matrix`).
    """
    return _summary_scores(confusion_matrix(y_true, y_pred, num_classes))


def _summary_scores(matrix: np.ndarray) -> dict[str, float]:
    """Reduces a confusion matrix to UF1, UAR and ACC."""
    scores = per_class_scores(matrix)
    return {
        "uf1": float(scores["f1"].mean()),
        "uar": float(scores["recall"].mean()),
        "acc": float(scores["tp"].sum() / matrix.sum()),
    }


def _divide_or_zero(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Element-wise division giving 0 where the denominator is 0."""
    result = np.zeros(numerator.shape, dtype=np.float64)
    nonzero = denominator != 0
    result[nonzero] = numerator[nonzero] / denominator[nonzero]
    return result


def _validated_labels(
    y_true: ArrayLike, y_pred: ArrayLike, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Checks the label arrays and class count; returns the labels as int64 arrays."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    true_labels = np.asarray(y_true)
    predicted_labels = np.asarray(y_pred)
    for name, labels in (("y_true", true_labels), ("y_pred", predicted_labels)):
        if labels.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got shape {labels.shape}")
    if len(true_labels) != len(predicted_labels):
        raise ValueError(
            f"y_true has {len(true_labels)} labels but y_pred has {len(predicted_labels)}"
        )
    if len(true_labels) == 0:
        raise ValueError("y_true and y_pred are empty; at least one label is needed")
    for name, labels in (("y_true", true_labels), ("y_pred", predicted_labels)):
        if labels.dtype.kind not in "iu":
            raise ValueError(f"{name} must hold integer labels, got dtype {labels.dtype}")
        outside = np.unique(labels[(labels < 0) | (labels >= num_classes)])
        if outside.size:
            quoted = ", ".join(str(value) for value in outside[:_MAX_QUOTED_VALUES])
            raise ValueError(f"{name} has labels outside [0, {num_classes}): {quoted}")
    return true_labels.astype(np.int64), predicted_labels.astype(np.int64)


def au_f1_scores(
    y_true: ArrayLike, y_prob: ArrayLike, threshold: float = 0.5
) -> dict[str, np.ndarray | float]:
    """Per-AU detection F1 of AU probabilities, pooled over every clip passed (all folds').

    A clip whose target for an AU is NaN (its AU cell is blank: unknown, not absent) is left
    out of that AU's counts. An AU predicted where ``y_prob >= threshold``. F1 =
    2TP / (2TP + FP + FN), 0 where that is 0/0 (as scikit-learn's ``zero_division=0``).

    Args:
        y_true: (clips, AUs) targets, 1 present, 0 absent, NaN unknown.
        y_prob: (clips, AUs) predicted probabilities, same shape.
        threshold: probability from which an AU counts as detected, in (0, 1).

    Returns:
        Length-AUs arrays ``"clips"`` (known clips), ``"positives"``, ``"tp"``, ``"fp"``,
        ``"fn"`` (int64) and ``"f1"`` (float64); ``"mean_f1"``, the mean F1 over the AUs.

    Raises:
        ValueError: shapes that are not equal and 2-D, an empty table, targets other than
            0, 1 or NaN, or a threshold outside (0, 1), quoting the value.
    """
    targets = np.asarray(y_true, dtype=np.float64)
    probabilities = np.asarray(y_prob, dtype=np.float64)
    if targets.ndim != 2 or targets.shape != probabilities.shape:
        raise ValueError(
            f"y_true and y_prob must be (clips, AUs) of one shape, got {targets.shape} and "
            f"{probabilities.shape}"
        )
    if targets.size == 0:
        raise ValueError(f"y_true is empty (shape {targets.shape}); at least one clip is needed")
    known = ~np.isnan(targets)
    bad = np.unique(targets[known & (targets != 0) & (targets != 1)])
    if bad.size:
        quoted = ", ".join(str(value) for value in bad[:_MAX_QUOTED_VALUES])
        raise ValueError(f"y_true must hold 0, 1 or NaN, got {quoted}")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
    present = known & (targets == 1)
    detected = known & (probabilities >= threshold)
    true_positives = (present & detected).sum(axis=0).astype(np.int64)
    false_positives = (detected & ~present).sum(axis=0).astype(np.int64)
    false_negatives = (present & ~detected).sum(axis=0).astype(np.int64)
    f1 = _divide_or_zero(
        2 * true_positives, 2 * true_positives + false_positives + false_negatives
    )
    return {
        "clips": known.sum(axis=0).astype(np.int64),
        "positives": present.sum(axis=0).astype(np.int64),
        "tp": true_positives,
        "fp": false_positives,
        "fn": false_negatives,
        "f1": f1,
        "mean_f1": float(f1.mean()),
    }

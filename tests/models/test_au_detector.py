"""AU detection: the per-AU F1 pooled over clips (`mer.evaluation.metrics.au_f1_scores`), by
hand on a small example, and the AU targets over a chosen AU list (`mer.models.fmer`)."""

import numpy as np
import pytest

from mer.evaluation.metrics import au_f1_scores
from mer.models.fmer import AU_CODES, au_targets

NAN = np.nan


def test_au_f1_by_hand_leaves_blank_cells_out_of_their_au():
    # 4 clips, 3 AUs; clip 3's cell is blank (NaN row), clip 2 unknown for the third AU only
    y_true = np.array([[1, 0, 1], [1, 1, 0], [0, 0, NAN], [NAN, NAN, NAN]])
    y_prob = np.array([[0.9, 0.6, 0.2], [0.4, 0.7, 0.1], [0.5, 0.1, 0.9], [0.9, 0.9, 0.9]])
    scores = au_f1_scores(y_true, y_prob)
    # AU a: truth 1,1,0 predicted 1,0,1 -> TP 1, FP 1, FN 1 -> F1 2/4
    # AU b: truth 0,1,0 predicted 1,1,0 -> TP 1, FP 1, FN 0 -> F1 2/3
    # AU c: truth 1,0 (clip 2 unknown) predicted 0,0 -> TP 0, FP 0, FN 1 -> F1 0
    np.testing.assert_array_equal(scores["clips"], [3, 3, 2])
    np.testing.assert_array_equal(scores["positives"], [2, 1, 1])
    np.testing.assert_array_equal(scores["tp"], [1, 1, 0])
    np.testing.assert_array_equal(scores["fp"], [1, 1, 0])
    np.testing.assert_array_equal(scores["fn"], [1, 0, 1])
    np.testing.assert_allclose(scores["f1"], [0.5, 2 / 3, 0.0])
    assert scores["mean_f1"] == pytest.approx((0.5 + 2 / 3) / 3)


def test_au_f1_threshold_and_zero_division():
    y_true = np.array([[0.0, 1.0], [0.0, 1.0]])
    scores = au_f1_scores(y_true, np.array([[0.1, 0.5], [0.2, 0.49]]))
    np.testing.assert_allclose(scores["f1"], [0.0, 2 / 3])  # absent and never predicted: 0
    scores = au_f1_scores(y_true, np.array([[0.1, 0.5], [0.2, 0.49]]), threshold=0.45)
    np.testing.assert_allclose(scores["f1"], [0.0, 1.0])


@pytest.mark.parametrize(
    ("y_true", "y_prob", "threshold", "message"),
    [
        (np.zeros((2, 3)), np.zeros((2, 2)), 0.5, "one shape"),
        (np.zeros(3), np.zeros(3), 0.5, "one shape"),
        (np.zeros((0, 3)), np.zeros((0, 3)), 0.5, "empty"),
        (np.full((1, 2), 2.0), np.zeros((1, 2)), 0.5, "0, 1 or NaN, got 2.0"),
        (np.zeros((1, 2)), np.zeros((1, 2)), 1.0, "threshold must be in"),
    ],
)
def test_au_f1_rejects_bad_input(y_true, y_prob, threshold, message):
    with pytest.raises(ValueError, match=message):
        au_f1_scores(y_true, y_prob, threshold)


def test_au_targets_follow_the_given_au_list():
    np.testing.assert_array_equal(au_targets({4, 5, 12}), [0, 0, 1, 0, 1, 0, 0, 0, 0])
    assert len(au_targets(set())) == len(AU_CODES)
    np.testing.assert_array_equal(au_targets({4, 5, 12}, (1, 4, 5, 7, 43)), [0, 1, 1, 0, 0])

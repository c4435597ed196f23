"""The annotation-only reference: each clip predicted from its AU region alone, fold by fold."""

import numpy as np
import pytest

from mer.evaluation.annotation_only import (
    annotation_only_scores,
    majority_class,
    region_majority_predictions,
    subject_folds,
)

# Three subjects; the predictions below are worked out by hand, fold by fold.
LABELS = [0, 0, 1, 2, 1, 0, 2, 0]
REGIONS = ["eyes", "eyes", "mouth", "brows", "mouth", "eyes", "face", "mouth"]
SUBJECTS = ["a", "a", "a", "b", "b", "b", "c", "c"]
# a held out: eyes -> 0; mouth ties 1 and 0 (rows 4, 7) -> 0, the first class.
# b held out: brows unseen -> overall majority 0; mouth ties (rows 2, 7) -> 0; eyes -> 0.
# c held out: face unseen -> overall majority 0 (three 0s, two 1s); mouth (rows 2, 4) -> 1.
EXPECTED = [0, 0, 0, 0, 0, 0, 0, 1]


def test_subject_folds_leave_each_subject_out_in_order_of_appearance():
    folds = subject_folds(SUBJECTS)
    assert [test.tolist() for _, test in folds] == [[0, 1, 2], [3, 4, 5], [6, 7]]
    assert [train.tolist() for train, _ in folds][2] == [0, 1, 2, 3, 4, 5]


def test_predictions_by_hand_ties_to_the_first_class_unseen_regions_to_the_overall_majority():
    predicted = region_majority_predictions(LABELS, REGIONS, subject_folds(SUBJECTS), 3)
    assert predicted.tolist() == EXPECTED
    assert majority_class(np.array([2, 1, 2, 1]), 3) == 1


def test_pooled_scores_by_hand():
    scores = annotation_only_scores(LABELS, REGIONS, subject_folds(SUBJECTS), 3)
    # confusion rows (true 0, 1, 2): [3, 1, 0], [2, 0, 0], [2, 0, 0]
    assert scores["uf1"] == pytest.approx((6 / 11) / 3)  # F1: 6/11, 0, 0
    assert scores["uar"] == pytest.approx((3 / 4) / 3)
    assert scores["acc"] == pytest.approx(3 / 8)
    assert scores["clips"] == 8


def test_a_region_that_decides_the_label_scores_one():
    labels = [0, 1, 2] * 3
    regions = ["eyes", "mouth", "brows"] * 3
    subjects = ["a"] * 3 + ["b"] * 3 + ["c"] * 3
    scores = annotation_only_scores(labels, regions, subject_folds(subjects), 3)
    assert scores["uf1"] == scores["uar"] == 1.0


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="8 labels but 7 regions"):
        region_majority_predictions(LABELS, REGIONS[:7], subject_folds(SUBJECTS), 3)
    with pytest.raises(ValueError, match="has no training clips"):
        region_majority_predictions([0, 1], ["eyes", "eyes"], subject_folds(["a", "a"]), 3)
    with pytest.raises(ValueError, match=r"rows \[6, 7\] are in no fold's test set"):
        region_majority_predictions(LABELS, REGIONS, subject_folds(SUBJECTS)[:2], 3)

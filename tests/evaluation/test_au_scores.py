"""The AU detector's report: `au_scores` (per-AU rows from `au_f1_scores`, a mean row, the
summary) and `format_au_report`, by hand on a small example."""

import numpy as np
import pytest

from mer.evaluation.report import AU_SCORING, au_scores, format_au_report

NAN = np.nan
TARGETS = np.array([[1, 0], [1, 1], [0, NAN]])
PROBABILITIES = np.array([[0.9, 0.2], [0.3, 0.8], [0.6, 0.9]])


def test_au_scores_by_hand():
    table, summary = au_scores(TARGETS, PROBABILITIES, [4, 12])
    # AU4: truth 1,1,0 detected 1,0,1 -> TP 1, FP 1, FN 1, F1 1/2; AU12: clip 3 blank,
    # truth 0,1 detected 0,1 -> F1 1
    assert table["au"].tolist() == ["AU4", "AU12", "mean"]
    assert table["clips"].tolist()[:2] == [3, 2] and table["tp"].tolist()[:2] == [1, 1]
    assert table["fp"].tolist()[:2] == [1, 0] and table["fn"].tolist()[:2] == [1, 0]
    np.testing.assert_allclose(table["f1"], [0.5, 1.0, 0.75])
    # every AU called present: AU4 TP 2, FP 1 -> 4/5; AU12 TP 1, FP 1 -> 2/3
    np.testing.assert_allclose(table["f1_all_present"], [0.8, 2 / 3, (0.8 + 2 / 3) / 2])
    assert summary["mean_f1_all_present"] == pytest.approx((0.8 + 2 / 3) / 2)
    assert table["clips"].isna().tolist() == [False, False, True]
    assert summary["mean_f1"] == pytest.approx(0.75)
    assert summary["per_au"]["AU12"] == {
        "clips": 2,
        "positives": 1,
        "tp": 1,
        "fp": 0,
        "fn": 0,
        "f1": 1.0,
        "f1_all_present": pytest.approx(2 / 3),
    }
    assert (summary["clips"], summary["threshold"], summary["scoring"]) == (3, 0.5, AU_SCORING)


def test_au_scores_rejects_codes_of_another_width():
    with pytest.raises(ValueError, match=r"3 AU codes for 2 columns: \[1, 2, 4\]"):
        au_scores(TARGETS, PROBABILITIES, [1, 2, 4])


def test_format_au_report_lists_each_au_the_mean_and_how_test_cells_are_used():
    table, summary = au_scores(TARGETS, PROBABILITIES, [4, 12])
    summary["caveats"] = [
        {"label": "annotated-window", "text": "onset..offset", "optimistic": False}
    ]
    text = format_au_report(table, summary, color=False)
    lines = text.splitlines()
    assert lines[0] == "NOT A CLEAN LOSO ESTIMATE:"
    assert "AU4        3        2     1     1     1  0.500  0.800" in lines
    assert "AU12       2        1     1     0     0  1.000  0.667" in lines
    assert (
        "Mean F1 over 2 AUs (pooled over the folds, 3 clips, detected at p >= 0.5): 0.750" in lines
    )
    assert "Reference, every AU called present in every clip: mean F1 0.733" in lines
    assert lines[-1] == f"Scoring: {AU_SCORING}"

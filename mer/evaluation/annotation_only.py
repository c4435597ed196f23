"""The "annotation-only" reference: how well the annotated AU region alone predicts the label.

The dual-branch AU model picks the crop of its second input from each clip's annotated AUs, the
held-out clips' too. This reference measures what that choice alone is worth: in each fold,
every test clip is predicted as the majority class of the fold's training clips of the same
region (the training clips' overall majority class where the region has no training clip), and
the predictions of all folds are scored pooled (MEGC2019, see `mer.evaluation.metrics`). No
pixel is read. With data.regions.aus=predicted the test clips' regions are those their fold's AU
detector chose (`test_regions`), so that no held-out AU cell chooses them either. Region names
come from the caller (`mer.caveats.annotation_only_reference`), so this module stays pure NumPy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from mer.evaluation.metrics import pooled_metrics

Folds = Sequence[tuple[ArrayLike, ArrayLike]]  # (training rows, test rows) per fold


def majority_class(labels: np.ndarray, num_classes: int) -> int:
    """The most frequent label; a tie goes to the class that comes first in the class order."""
    return int(np.bincount(labels, minlength=num_classes).argmax())  # argmax: the first maximum


def subject_folds(subjects: ArrayLike) -> list[tuple[np.ndarray, np.ndarray]]:
    """Leave-one-subject-out (training rows, test rows), one pair per distinct subject."""
    subjects = np.asarray(subjects, dtype=object)
    return [
        (np.flatnonzero(subjects != subject), np.flatnonzero(subjects == subject))
        for subject in dict.fromkeys(subjects)
    ]


def region_majority_predictions(
    labels: ArrayLike,
    regions: ArrayLike,
    folds: Folds,
    num_classes: int,
    test_regions: ArrayLike | None = None,
) -> np.ndarray:
    """Each clip's label as predicted from its region alone, in the fold that tests it.

    Args:
        labels: every clip's integer label in `[0, num_classes)`.
        regions: every clip's region name (e.g. "eyes", "mouth", "face") as a training clip.
        folds: (training rows, test rows) per fold; the test rows cover every clip once.
        num_classes: number of classes K.
        test_regions: every clip's region when it is tested; by default `regions`.

    Returns:
        The predicted label of every clip (int64).

    Raises:
        ValueError: lengths differ, a fold has no training clips, or a clip is in no test set.
    """
    labels = np.asarray(labels, dtype=np.int64)
    regions = np.asarray(regions, dtype=object)
    tested = regions if test_regions is None else np.asarray(test_regions, dtype=object)
    if labels.shape != regions.shape:
        raise ValueError(f"{len(labels)} labels but {len(regions)} regions")
    if tested.shape != regions.shape:
        raise ValueError(f"{len(labels)} labels but {len(tested)} test regions")
    predicted = np.full(len(labels), -1, dtype=np.int64)
    for train, test in folds:
        train, test = np.asarray(train, dtype=np.int64), np.asarray(test, dtype=np.int64)
        if not train.size:
            raise ValueError(f"a fold testing rows {test.tolist()[:5]} has no training clips")
        overall = majority_class(labels[train], num_classes)
        by_region = {
            region: majority_class(labels[train][regions[train] == region], num_classes)
            for region in set(regions[train])
        }
        predicted[test] = [by_region.get(region, overall) for region in tested[test]]
    untested = np.flatnonzero(predicted < 0)
    if untested.size:
        raise ValueError(f"rows {untested.tolist()[:5]} are in no fold's test set")
    return predicted


def annotation_only_scores(
    labels: ArrayLike,
    regions: ArrayLike,
    folds: Folds,
    num_classes: int,
    test_regions: ArrayLike | None = None,
) -> dict[str, float | int]:
    """Pooled `uf1`, `uar`, `acc` of `region_majority_predictions`, and `clips`."""
    predicted = region_majority_predictions(labels, regions, folds, num_classes, test_regions)
    return {**pooled_metrics(np.asarray(labels), predicted, num_classes), "clips": len(predicted)}

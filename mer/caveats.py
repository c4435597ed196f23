"""What keeps a run's scores from being a clean LOSO estimate, said the same way everywhere.

A clean LOSO estimate uses the held-out subject for nothing but the final prediction. Four
settings depart from that, each on purpose: the published protocol picks the epoch on the test
subject, the published normalisation takes its statistics over the whole dataset, the
dual-branch AU model crops its second input where the test clip's annotated AUs point (not with
data.regions.aus=predicted, where the fold's AU detector chooses it), and the window samplers
pick the test clip's frames inside its annotated onset..offset (as every published MER protocol
does, and the AU detector's au_frames; a new clip has no such annotation).
`run_caveats` lists those of one config; the run folder's name, summary.json, the printed
report, predictions.csv, per_subject.csv, `python -m mer compare` and `merge` all take them
from it. `annotation_only_reference` measures what the annotated region alone predicts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from mer.data.aus import au_numbers
from mer.data.regions import region_for_aus
from mer.evaluation.annotation_only import Folds, annotation_only_scores

if TYPE_CHECKING:
    from mer.config import ExperimentConfig


@dataclass(frozen=True)
class Caveat:
    """One way a run uses the test subject beyond predicting it.

    Attributes:
        label: a short name; the run folder's name ends with `-<label>`.
        text: the sentence printed above the report and stored in summary.json.
        optimistic: test-subject data shaped the model or its selection, so the score is
            biased upwards ("for comparison only").
        annotated_inputs: model inputs of the test clips computed from their annotations.
    """

    label: str
    text: str
    optimistic: bool
    annotated_inputs: tuple[str, ...] = ()


PAPER_PROTOCOL = Caveat("paper-optimistic", "optimistic: epoch chosen on the test subject", True)
DATASET_GLOBAL = Caveat(
    "dataset-global-optimistic",
    "optimistic: normalisation statistics include the test subject "
    "(data.normalization=dataset_global: one mean and one max over the whole dataset)",
    True,
)
ANNOTATED_AUS = Caveat(
    "annotated-aus",
    "the test clips' inputs use annotations: the crop of the second input (au_regions) is "
    "chosen from the clip's annotated AU cell",
    False,
    ("au_regions",),
)


ANNOTATED_WINDOW = Caveat(
    "annotated-window",
    "the test clips' frames are chosen inside their annotated onset..offset "
    "(data.sampler=onset_offset or max_motion, the flow inputs' onset and apex, FMER's "
    "patches and AU frames; a new clip has no such annotation: `python -m mer predict` spots "
    "a window)",
    False,
    ("onset_offset window",),
)
WINDOW_SAMPLERS = ("onset_offset", "max_motion")  # max_motion ranks onset..offset when given
# inputs made from the annotated onset, apex and offset whatever the sampler
WINDOW_INPUTS = {"flow", "flow_puzzle", "flow_grid", "fmer_patches", "au_frames"}


def run_caveats(config: ExperimentConfig) -> tuple[Caveat, ...]:
    """The caveats of a run with this config, in a fixed order; () for a clean LOSO run."""
    regions = "au_regions" in config.data.input_names()
    predicted = regions and config.data.regions.aus == "predicted"  # by an AU detector on au_frames
    applies = (
        (PAPER_PROTOCOL, config.eval.protocol == "paper"),
        (DATASET_GLOBAL, config.data.normalization == "dataset_global"),
        (ANNOTATED_AUS, regions and not predicted),
        (
            ANNOTATED_WINDOW,
            config.data.sampler in WINDOW_SAMPLERS
            or bool(set(config.data.input_names()) & WINDOW_INPUTS)
            or predicted,
        ),
    )
    return tuple(caveat for caveat, applied in applies if applied)


def folder_suffix(caveats: Iterable[Caveat]) -> str:
    """The run folder's name suffix, e.g. "-paper-optimistic-annotated-aus"; "" without any."""
    return "".join(f"-{caveat.label}" for caveat in caveats)


def summary_entries(caveats: Sequence[Caveat]) -> dict[str, Any]:
    """The caveats as summary.json records them."""
    annotated = [name for caveat in caveats for name in caveat.annotated_inputs]
    return {
        "caveats": [
            {"label": caveat.label, "text": caveat.text, "optimistic": caveat.optimistic}
            for caveat in caveats
        ],
        "optimistic": any(caveat.optimistic for caveat in caveats),
        "test_inputs_use_annotations": bool(annotated),
        "annotated_test_inputs": annotated,
    }


def recorded_caveats(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The caveats a summary.json records; for a summary written before they were recorded,
    the one such a run could be labelled with (the paper protocol, from its `protocol`)."""
    if "caveats" in summary:
        return list(summary["caveats"])
    if str(summary.get("protocol", "")).startswith("paper"):
        return summary_entries([PAPER_PROTOCOL])["caveats"]
    return []


def clip_regions(aus_cells: Iterable[object], au_codes: Iterable[int]) -> list[str]:
    """The region each clip's AU cell points at, by the published rule over `au_codes` (a
    blank cell has no AUs: "face", the crop a run takes for it).

    Raises:
        ValueError: a cell does not parse (quoting it).
    """
    codes = tuple(au_codes)
    return [region_for_aus(au_numbers(cell), codes).name for cell in aus_cells]


def annotation_only_reference(
    manifest: pd.DataFrame,
    classes: Sequence[str],
    folds: Folds,
    au_codes: Iterable[int],
    test_regions: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The annotation-only reference of a manifest (columns `label` and `aus`) and its folds:
    pooled `uf1`, `uar`, `acc` and `clips` (see `mer.evaluation.annotation_only`), the
    `au_codes` used, and the clips per region they are tested with. `test_regions`: the
    region each clip is tested with (data.regions.aus=predicted: its fold's predicted one, so
    that no held-out AU cell chooses it; "held_out_regions": "predicted" says so); by default
    its annotated region. The training clips' regions are always their annotated ones."""
    codes = list(au_codes)
    regions = clip_regions(manifest["aus"], codes)
    tested = regions if test_regions is None else list(test_regions)
    labels = [classes.index(label) for label in manifest["label"]]
    return {
        **annotation_only_scores(labels, regions, folds, len(classes), tested),
        "au_codes": codes,
        "regions": dict(Counter(tested).most_common()),
        **({} if test_regions is None else {"held_out_regions": "predicted"}),
    }

"""Leakage audit from outside: everything upstream of training (sheet, manifest, preprocessing,
batches, model) sees the held-out subject's annotations, and none of it may pass them on.

A CASME II replica of two real-face subjects (rendered by `mer.data.synthetic`, written as
`sub0N/EP../imgN.jpg` frames and a coding sheet) is trained through the real entry point three
times per model, holding out sub02 alone (`--folds sub02`): as is, with sub02's labels permuted
in the sheet on disk, and with sub02's AU cells permuted. Determinism is on, so a held-out
prediction that no annotation reaches is bit-identical across the three runs
(`folds/sub02/fold_result.json` keeps the probabilities exactly; predictions.csv rounds them).

The frames-only model must not move under either permutation. The dual-branch AU model must not
move under the label permutation, and DOES move under the AU permutation: its second input is
cropped where the test clip's annotated AUs point. That is the published method, labelled
`annotated-aus` on every output (`mer.caveats`); this test shows the audit sees it. With
data.regions.aus=predicted (a tiny AU detector, trained in the fold on sub01 alone, chooses
sub02's regions) it must not move under
the AU permutation (the label permutation is left out there: the class model's path is the
regions model's, and the detector trains on AU cells alone; each run costs ~20 s).

Exempt, because they use test-subject data by design and are labelled optimistic on every
output (`mer.caveats.run_caveats`): `eval.protocol=paper` (the epoch is chosen on the test
subject; tests/training/test_leakage.py sees it) and `data.normalization=dataset_global` (the
normalisation statistics include the test subject).

Each run gets its own preprocessing cache, so that a run sees only its own sheet. Keras's steps
run eagerly (`eager_keras_steps`): tracing costs more than these few tiny steps (P3D's alone
takes half a minute).
"""

import json

import cv2
import pytest

from mer.cli import run_script
from mer.data.synthetic import CLASS_NAMES, DemoSpec, render_clip
from tests.data.replicas import write_sheet
from tests.test_end_to_end import TINY, as_arguments, workspace
from tests.test_predicted_regions import tiny_detector

pytestmark = [
    pytest.mark.slow,  # training runs through the entry points
    pytest.mark.usefixtures("eager_keras_steps"),
]

HELD_OUT = "sub02"
EMOTIONS = {"negative": "disgust", "positive": "happiness", "surprise": "surprise"}
CASME2_HEADER = ["Subject", "Filename", "", "OnsetFrame", "ApexFrame", "OffsetFrame", "",
                 "Action Units", "Estimated Emotion"]
AUS, EMOTION = CASME2_HEADER.index("Action Units"), CASME2_HEADER.index("Estimated Emotion")
# no attention, recurrence or pooling layer: the data path is under test, not the network
FLAT = ["model.temporal=none", "model.pooling=none", "model.cam=none"]
MODELS = {
    "frames": ("ME_model", "me_model.yaml", ["model.branches=1"]),
    "regions": ("dual_branch_3dcnn_au", "dual_branch_au.yaml", []),
    "predicted": ("dual_branch_3dcnn_au", "dual_branch_au.yaml", ["data.regions.aus=predicted"]),
}


@pytest.fixture(scope="module")
def replica(tmp_path_factory):
    """The replica's frame folders and its sheet rows (one clip per class and subject)."""
    root = tmp_path_factory.mktemp("casme2")
    spec = DemoSpec(subjects=2, clips_per_class=1, frames=12, size=96)
    rows = []
    for subject in (1, 2):
        for index, class_name in enumerate(CLASS_NAMES, start=1):
            frames, info = render_clip(spec, subject, class_name, 1)
            name = f"EP0{index}_0{subject}"
            folder = root / f"sub0{subject}" / name
            folder.mkdir(parents=True)
            for number, frame in enumerate(frames, start=1):
                bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
                cv2.imwrite(str(folder / f"img{number}.jpg"), bgr)
            rows.append([f"0{subject}", name, None, info["onset"], info["apex"], info["offset"],
                         None, info["aus"], EMOTIONS[class_name]])
    return root, rows


def _held_out_permuted(rows: list[list], column: int) -> list[list]:
    """The rows with the held-out subject's cells of `column` rotated by one clip."""
    positions = [index for index, row in enumerate(rows) if f"sub{row[0]}" == HELD_OUT]
    permuted = [list(row) for row in rows]
    for position, source in zip(positions, positions[1:] + positions[:1], strict=True):
        permuted[position][column] = rows[source][column]
    assert all(permuted[position][column] != rows[position][column] for position in positions)
    return permuted


def _held_out_probabilities(replica, tmp_path, model: str, name: str, rows: list[list]) -> dict:
    """Trains the fold holding out sub02 with this sheet; its stored result (test rows and
    probabilities)."""
    root, _ = replica
    sheet = tmp_path / f"{name}.xlsx"
    write_sheet(sheet, rows, header=CASME2_HEADER)
    script, config, settings = MODELS[model]
    if model == "predicted":
        settings = [*settings, f"data.regions.detector={tiny_detector(tmp_path)}"]
    overrides = TINY + FLAT + settings + [
        "data.layout=casme2",
        f"data.root={root}",
        f"data.sheet={sheet}",
        "run.tensorboard=false",
        "run.save_weights=false",
        *workspace(tmp_path / name),
    ]
    arguments = as_arguments(overrides) + ["--folds", HELD_OUT]
    assert run_script(script, config, "test", arguments) == 0
    (result,) = (tmp_path / name / "runs").glob(f"*/folds/{HELD_OUT}/fold_result.json")
    stored = json.loads(result.read_text())
    return {"test": stored["test"], "probabilities": stored["probabilities"]}


@pytest.mark.parametrize("model", ["frames", "regions", "predicted"])
def test_held_out_annotations_reach_the_prediction_only_through_the_labelled_crop(
    replica, tmp_path, model
):
    _, rows = replica
    plain = _held_out_probabilities(replica, tmp_path, model, "plain", rows)
    aus = _held_out_probabilities(replica, tmp_path, model, "aus", _held_out_permuted(rows, AUS))
    assert len(plain["test"]) == 3
    if model != "predicted":  # its class path is the regions model's; its detector reads AUs
        labels = _held_out_probabilities(
            replica, tmp_path, model, "labels", _held_out_permuted(rows, EMOTION)
        )
        assert labels == plain  # bit-identical: the held-out labels reach nothing
    if model in ("frames", "predicted"):
        assert aus == plain  # nor do its AU cells
    else:  # the labelled leak: the crop follows the held-out clips' annotated AUs
        assert aus["test"] == plain["test"] and aus["probabilities"] != plain["probabilities"]

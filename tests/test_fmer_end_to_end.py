"""FMER end to end through `python -m mer train`: a LOSO run on 2 demo subjects (real-face
frames, so dlib finds the landmarks) writes every output, and its AU targets, made from the
sheet's AU cells, reach training; permuting the held-out subject's AU cells in the sheet leaves
its predictions bit-identical (that fold run alone, `--folds`); the final model predicts
through `python -m mer predict`. The AU targets of real sheet cells, and the AU term's handling
of clips without AU codes, are tested on their own.

The network keeps FMER's depth (18 transformer encoders, P3D-63's 16 bottlenecks) at the
tiniest widths and sizes (one magnification factor, 16-pixel AU frames, P3D width 1). Tracing
its training step takes 80-140 s on 2 cores, so Keras's steps run eagerly here
(`tf.config.run_functions_eagerly`): about 4 s a step. Determinism is on as in every run, so
equal inputs give equal bits in either mode.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mer.bundle import load_bundle
from mer.cli import main
from mer.config import PROJECT_ROOT, load_config
from mer.data.sources import preprocess
from mer.experiment import family_targets
from mer.models.fmer import AU_CODES, AUBinaryCrossentropy
from tests.test_dual_atme_end_to_end import CLASSES, _command, _last_path
from tests.test_end_to_end import as_arguments, workspace

pytestmark = pytest.mark.usefixtures("eager_keras_steps")
CONFIG = str(PROJECT_ROOT / "config" / "demo_fmer.yaml")
TINY_FMER = [
    "data.fmer.alphas=[2.0]",  # the test factor alone
    "data.fmer.au_size=16",  # 16 frames (T must stay 16) of 16 pixels
    "data.flow.face_size=32",
    "model.p3d_filters=1",
    "train.epochs=1",
    "train.batch_size=6",  # one step a fold (3 training clips) and for the final model (6)
    "run.tensorboard=false",
]


def _train(root, sheet, runs: str, *options: str, cache: str = "cache") -> str:
    """`python -m mer train` of the tiny FMER demo preset; returns what it printed."""
    overrides = [f"data.root={root / 'demo'}", f"data.sheet={sheet}", *TINY_FMER,
                 *workspace(root, runs), f"data.cache_dir={root / cache}"]
    return _command(["train", "--config", CONFIG, *as_arguments(overrides), *options])


@pytest.fixture(scope="module")
def whole_run(two_subject_demo):
    """The reference: one whole LOSO run, with the final model."""
    root, sheet = two_subject_demo
    output = _train(root, sheet, "whole", "--set", "train.final_model=true")
    return _last_path(output, "Results: "), output


def _fold_result(run_dir, subject: str) -> dict:
    return json.loads((run_dir / "folds" / subject / "fold_result.json").read_text())


@pytest.mark.slow
def test_tiny_loso_run_writes_every_output_and_trains_the_au_term(whole_run):
    run_dir, output = whole_run
    assert "Model: fmer, inputs fmer_patches (1, 9, 2, 30, 7, 7) + au_frames (16, 16, 16, 3)" in (
        output
    )
    predictions = pd.read_csv(run_dir / "predictions.csv", dtype={"subject": str})
    probabilities = [f"prob_{name}" for name in CLASSES]
    assert list(predictions.columns) == [
        "subject", "sample", "y_true", "y_pred", *probabilities, "caveats"
    ]
    assert len(predictions) == 6 and sorted(predictions["subject"].unique()) == ["1", "2"]
    assert (abs(predictions[probabilities].sum(axis=1) - 1) < 1e-4).all()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["family"], summary["inputs"]) == ("fmer", ["fmer_patches", "au_frames"])
    assert summary["parameters"] == load_bundle(run_dir).model.count_params()
    for name in ("per_subject.csv", "confusion_matrix.png", "training_curves.png"):
        assert (run_dir / name).stat().st_size > 0, name
    for subject in ("1", "2"):
        history = json.loads((run_dir / "folds" / subject / "history.json").read_text())
        assert {"loss", "probabilities_accuracy", "probabilities_loss"} <= set(history)
        assert len(history["au_logits_loss"]) == 1 and history["au_logits_loss"][0] > 0
        assert (run_dir / "folds" / subject / "model.weights.h5").is_file()
    info = json.loads((run_dir / "final_model.json").read_text())
    assert info["family"] == "fmer" and info["streams"] == 2 and info["training"]["clips"] == 6
    assert info["training"]["history"]["au_logits_loss"][0] > 0


@pytest.mark.slow
def test_held_out_au_cells_reach_nothing(two_subject_demo, whole_run):
    """Subject 1's AU cells rotated in a copy of the sheet (its own cache, so the inputs are
    made from that sheet): the fold holding subject 1 out predicts it bit for bit as before."""
    root, sheet = two_subject_demo
    rows = pd.read_excel(sheet)
    held = rows.index[rows["Subject"].astype(str) == "1"]
    cells = rows.loc[held, "Action Units"].tolist()
    rows.loc[held, "Action Units"] = cells[1:] + cells[:1]
    assert (rows.loc[held, "Action Units"] != pd.Series(cells, index=held)).all()
    permuted = root / "permuted.xlsx"
    rows.to_excel(permuted, index=False)
    output = _train(root, permuted, "permuted", "--folds", "1", cache="permuted_cache")
    part = _last_path(output, "Fold results: ")
    reference, _ = whole_run
    assert _fold_result(part, "1")["test"] == _fold_result(reference, "1")["test"]
    assert _fold_result(part, "1")["probabilities"] == _fold_result(reference, "1")["probabilities"]


@pytest.mark.slow
def test_the_final_model_predicts_through_the_command(whole_run, capsys):
    """`python -m mer predict` with a clip's annotated window gives the saved model's
    probabilities on the inputs the run trained on (its cache)."""
    run_dir, _ = whole_run
    bundle = load_bundle(run_dir)
    manifest = pd.read_csv(run_dir / "manifest.csv", dtype={"subject": str})
    row = manifest.iloc[0]
    streams = preprocess(load_config(run_dir / "config.yaml").data, pd.DataFrame([row])).streams
    inputs = [
        np.stack([normalizer(array) for array in stream])
        for stream, normalizer in zip(streams, bundle.normalizers, strict=True)
    ]
    expected = bundle.model.predict(inputs, verbose=0)[0]
    window = [f"--{key}={row[key]}" for key in ("onset", "apex", "offset")]
    assert main(["predict", "--model", str(run_dir), row["path"], *window, "--json"]) == 0
    [result] = json.loads(capsys.readouterr().out)
    assert result["window"] == [int(row["onset"]), int(row["offset"])]
    probabilities = [result["probabilities"][name] for name in CLASSES]
    np.testing.assert_allclose(probabilities, expected, rtol=1e-5, atol=1e-6)
    assert bundle.info["family"] == "fmer"


@pytest.mark.slow
def test_explain_draws_the_au_frames(whole_run, tmp_path, capsys):
    """FMER is explained on its AU frames (a clip input: a GIF too) at the last res4 block, the
    landmark patches fed as they are and named as not drawn."""
    run_dir, _ = whole_run
    clip = pd.read_csv(run_dir / "manifest.csv")["path"].iloc[0]
    command = ["explain", "--model", str(run_dir), clip, "--out", str(tmp_path)]
    assert main(command) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["layers"] == ["p3d_res4_block1"] and found["not_drawn"] == ["fmer_patches"]
    assert found["predicted"] == max(found["probabilities"], key=found["probabilities"].get)
    assert Path(found["strip"]).stat().st_size > 1000 and Path(found["gif"]).is_file()


def test_au_targets_of_real_sheet_cells():
    """CASME II's `4+L10` and SAMM's `(R6 or R12)+R15` (every AU of an alternative counts;
    AU 6 is not one the detector predicts); a blank cell is unknown, NaN."""
    config = load_config(CONFIG)
    manifest = pd.DataFrame(
        {"sample": ["a", "b", "c", "d"], "aus": ["4+L10", "(R6 or R12)+R15", "", np.nan]}
    )
    targets = family_targets(config, manifest)
    assert targets.dtype == np.float32 and targets.shape == (4, len(AU_CODES))
    assert dict(zip(AU_CODES, targets[0], strict=True)) == {
        1: 0, 2: 0, 4: 1, 10: 1, 12: 0, 14: 0, 15: 0, 17: 0, 25: 0
    }
    assert dict(zip(AU_CODES, targets[1], strict=True)) == {
        1: 0, 2: 0, 4: 0, 10: 0, 12: 1, 14: 0, 15: 1, 17: 0, 25: 0
    }
    assert np.isnan(targets[2:]).all()
    assert family_targets(load_config(None), manifest) is None  # MLSP trains on the classes


def test_the_au_term_leaves_out_clips_without_au_codes():
    """A NaN row counts for nothing: the loss is the mean over the other clips; all NaN
    (SMIC) gives 0."""
    random = np.random.default_rng(0)
    logits = random.standard_normal((3, len(AU_CODES))).astype("float32")
    targets = (random.random((3, len(AU_CODES))) < 0.5).astype("float32")
    loss = AUBinaryCrossentropy(0.5)
    unknown = targets.copy()
    unknown[1] = np.nan
    expected = float(loss(targets[[0, 2]], logits[[0, 2]]))
    assert float(loss(unknown, logits)) == pytest.approx(expected, rel=1e-6)
    assert float(loss(np.full_like(targets, np.nan), logits)) == 0.0

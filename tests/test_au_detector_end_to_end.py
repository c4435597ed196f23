"""The AU detector end to end through `python -m mer train`: a LOSO run on 2 demo subjects
writes au_scores.csv, whose per-AU F1 is `au_f1_scores` of the saved predictions against the
sheet's AU cells, and `python -m mer merge` rewrites it the same; rotating the held-out
subject's AU cells in the sheet leaves its predictions bit-identical (that fold run alone,
`--folds`); the final model, trained on both subjects, gives `python -m mer predict` a new
clip's AU probabilities and `explain` an AU's Grad-CAM; `--seeds`, `compare` and `bench` work
on it too; the settings that do not apply refuse in one line.

The network keeps P3D-63's 16 bottlenecks at the tiniest width and 16-pixel frames; Keras's
steps run eagerly (`tf.config.run_functions_eagerly`), as in tests/test_fmer_end_to_end.py.
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
from mer.evaluation.metrics import au_f1_scores
from mer.evaluation.report import AU_SCORING
from tests.test_dual_atme_end_to_end import _command, _last_path
from tests.test_end_to_end import as_arguments, workspace

pytestmark = pytest.mark.usefixtures("eager_keras_steps")
CONFIG = str(PROJECT_ROOT / "config" / "demo_au_detector.yaml")
AUS = [1, 2, 4, 5, 6, 12, 15]  # the demo preset's: those its sheet's cells hold
TINY = [
    "data.fmer.au_size=16",  # 16 frames (T must stay 16) of 16 pixels
    "data.flow.face_size=32",
    "model.p3d_filters=1",
    "train.epochs=1",
    "train.batch_size=6",  # one step a fold (3 training clips)
    "run.tensorboard=false",
]


def _train(root, sheet, runs: str, *options: str, cache: str = "cache") -> str:
    overrides = [
        f"data.root={root / 'demo'}",
        f"data.sheet={sheet}",
        *TINY,
        *workspace(root, runs),
        f"data.cache_dir={root / cache}",
    ]
    return _command(["train", "--config", CONFIG, *as_arguments(overrides), *options])


@pytest.fixture(scope="module")
def whole_run(two_subject_demo):
    root, sheet = two_subject_demo
    output = _train(root, sheet, "whole", "--set", "train.final_model=true")
    return _last_path(output, "Results: "), output


def _fold_result(run_dir, subject: str) -> dict:
    return json.loads((run_dir / "folds" / subject / "fold_result.json").read_text())


@pytest.mark.slow
def test_tiny_loso_run_scores_each_au_from_the_saved_predictions(whole_run, tmp_path):
    run_dir, output = whole_run
    assert "Model: au_detector, inputs au_frames (16, 16, 16, 3)" in output
    assert "its AU cells are read only to score its predictions" in output  # the protocol
    assert "Mean F1 over 7 AUs (pooled over the folds, 6 clips" in output
    assert f"Scoring: {AU_SCORING}" in output
    predictions = pd.read_csv(run_dir / "predictions.csv", dtype={"subject": str})
    assert list(predictions.columns) == ["subject", "sample", "aus"] + [
        f"{kind}_AU{code}" for code in AUS for kind in ("target", "prob")
    ]
    folds = [_fold_result(run_dir, subject) for subject in ("1", "2")]
    probabilities = np.concatenate([fold["probabilities"] for fold in folds])
    assert (
        probabilities.shape == (6, len(AUS)) and ((0 < probabilities) & (probabilities < 1)).all()
    )
    targets = predictions[[f"target_AU{code}" for code in AUS]].to_numpy()
    assert set(np.unique(targets[~np.isnan(targets)])) <= {0.0, 1.0} and targets.sum() > 0
    expected = au_f1_scores(targets, probabilities)
    scores = pd.read_csv(run_dir / "au_scores.csv")
    assert scores["au"].tolist() == [f"AU{code}" for code in AUS] + ["mean"]
    np.testing.assert_allclose(scores["f1"][:-1], expected["f1"], rtol=1e-12)
    np.testing.assert_array_equal(scores["tp"][:-1], expected["tp"])
    assert scores["f1"].iloc[-1] == pytest.approx(expected["mean_f1"])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["mean_f1"] == pytest.approx(expected["mean_f1"])
    assert (summary["family"], summary["clips"], summary["subjects"]) == ("au_detector", 6, 2)
    assert summary["scoring"] == AU_SCORING and "read only to score" in summary["protocol"]
    assert "uf1" not in summary and not (run_dir / "confusion_matrix.png").exists()
    for subject in ("1", "2"):
        history = json.loads((run_dir / "folds" / subject / "history.json").read_text())
        assert history["loss"][0] > 0 and not any("accuracy" in key for key in history)
    merged = tmp_path / "merged"
    assert main(["merge", str(run_dir), "--out", str(merged)]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(merged / "au_scores.csv"), scores)


@pytest.mark.slow
def test_held_out_au_cells_reach_nothing_but_the_scores(two_subject_demo, whole_run):
    """Subject 1's AU cells rotated in a copy of the sheet (its own cache): the fold holding
    subject 1 out predicts it bit for bit as before."""
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
def test_the_final_detector_predicts_a_new_clips_aus(whole_run, capsys):
    """`predict` of the run folder: each AU's probability in model.aus order, equal to the
    final model's on the clip as the run preprocessed it (its cache), and the AUs at p >= 0.5;
    the text table names the AUs; a clip without --onset/--offset gets a spotted window."""
    run_dir, output = whole_run
    assert "Final model: training on all 6 clips of 2 subjects" in output
    info = json.loads((run_dir / "final_model.json").read_text())
    assert (info["family"], info["aus"], info["training"]["subjects"]) == ("au_detector", AUS, 2)
    bundle = load_bundle(run_dir)
    assert bundle.outputs == [f"AU{code}" for code in AUS] and bundle.detector is None
    rows = pd.read_csv(run_dir / "manifest.csv").iloc[[0, 3]]
    config = load_config(run_dir / "config.yaml")
    (stream,) = preprocess(config.data, rows).streams  # cache hits: the training arrays
    (normalizer,) = bundle.normalizers
    expected = bundle.model.predict(np.stack([normalizer(clip) for clip in stream]), verbose=0)
    for position, row in enumerate(rows.itertuples()):
        window = ["--onset", str(row.onset), "--offset", str(row.offset)]
        assert main(["predict", "--model", str(run_dir), row.path, *window, "--json"]) == 0
        (record,) = json.loads(capsys.readouterr().out)
        assert list(record["probabilities"]) == bundle.outputs
        found = np.array(list(record["probabilities"].values()))
        np.testing.assert_allclose(found, expected[position], rtol=1e-5, atol=1e-6)
        detected = [code for code, value in zip(AUS, found, strict=True) if value >= 0.5]
        assert record["predicted"] == "+".join(map(str, detected))
        assert main(["predict", "--model", str(run_dir), row.path, *window]) == 0
        header, line = capsys.readouterr().out.strip().splitlines()
        assert header.split() == ["clip", *bundle.outputs, "predicted"]
        assert line.split()[-1] == (record["predicted"] or "none")
        assert record["window"] == [row.onset, row.offset] and not record["spotted"]
    # au_frames is made from the clip's window whatever the sampler: none given, one is spotted
    assert main(["predict", "--model", str(run_dir), rows.iloc[0]["path"], "--json"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert record["spotted"] and len(record["window"]) == 2


@pytest.mark.slow
def test_explain_draws_the_grad_cam_of_an_au(whole_run, tmp_path, capsys):
    """Without --class the likeliest AU, at the last res4 block (a map that keeps time); with
    it the AU named; an AU the detector does not predict is refused in one line."""
    run_dir, _ = whole_run
    clip = pd.read_csv(run_dir / "manifest.csv").iloc[0]["path"]
    command = ["explain", "--model", str(run_dir), clip, "--out", str(tmp_path)]
    assert main(command) == 0
    found = json.loads(capsys.readouterr().out)
    probabilities = found["probabilities"]
    assert list(probabilities) == [f"AU{code}" for code in AUS]
    assert found["explained"] == max(probabilities, key=probabilities.get)
    assert found["layers"] == ["p3d_res4_block1"] and found["spotted"]
    detected = [code for code in AUS if probabilities[f"AU{code}"] >= 0.5]
    assert found["predicted"] == "+".join(map(str, detected))
    assert Path(found["strip"]).stat().st_size > 1000 and Path(found["gif"]).is_file()
    assert main([*command, "--class", "AU15"]) == 0
    assert json.loads(capsys.readouterr().out)["explained"] == "AU15"
    assert main([*command, "--class", "AU9"]) == 2
    error = capsys.readouterr().err
    assert "--class 'AU9' is not one of the model's outputs" in error
    assert len(error.strip().splitlines()) == 1


@pytest.mark.slow
def test_seeds_and_compare_set_detectors_side_by_side(
    two_subject_demo, whole_run, tmp_path, capsys
):
    """--seeds: the mean ± std of the mean F1 and of each AU's over the seeds' runs; compare:
    detectors by their mean F1, and a classifier's run beside them is refused in one line."""
    root, sheet = two_subject_demo
    output = _train(root, sheet, "seeds", "--seeds", "3,5", cache="cache")
    parent = _last_path(output, "Results: ")
    assert "Over 2 seeds (3, 5)" in output and "mean F1 over 7 AUs: " in output
    runs = [json.loads((parent / f"seed{seed}" / "summary.json").read_text()) for seed in (3, 5)]
    summary = json.loads((parent / "summary.json").read_text())
    values = [run["mean_f1"] for run in runs]
    assert summary["mean_f1"] == pytest.approx(np.mean(values))
    assert summary["std"]["mean_f1"] == pytest.approx(np.std(values, ddof=1))
    each = [run["per_au"]["AU4"]["f1"] for run in runs]
    assert summary["per_au"]["AU4"]["f1"] == pytest.approx(np.mean(each))
    assert summary["per_au_std"]["AU4"]["f1"] == pytest.approx(np.std(each, ddof=1))
    assert summary["mean_f1_all_present"] == runs[0]["mean_f1_all_present"]
    seeds = pd.read_csv(parent / "seeds.csv")
    assert list(seeds["seed"]) == [3, 5] and list(seeds["f1_AU4"]) == pytest.approx(each)

    single, _ = whole_run
    plot = tmp_path / "compare.png"
    assert main(["compare", str(parent), str(single), "--out", str(plot)]) == 0
    header, *rows = capsys.readouterr().out.splitlines()[:3]
    assert "mean F1" in header and "all present" in header and "F1 AU4" in header
    assert "UF1" not in header and "±" in rows[0] and plot.stat().st_size > 0
    classifier = tmp_path / "classifier"
    classifier.mkdir()
    scores = {"uf1": 0.5, "uar": 0.5, "acc": 0.5}
    summary = {**scores, "mean_over_subjects": scores, "dataset": "demo"}
    (classifier / "summary.json").write_text(json.dumps(summary))
    assert main(["compare", str(single), str(classifier), "--out", str(plot)]) == 2
    error = capsys.readouterr().err
    assert f"{single.name} is an AU detector (mean F1)" in error
    assert len(error.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--set", "eval.protocol=paper"], "has no class accuracy: use eval.protocol=loso"),
        (["--set", "model.aus=[1, 1]"], "model.aus must be distinct positive AU numbers"),
        (["--set", "data.inputs=[frames]"], "reads one input, data.inputs: [au_frames]"),
    ],
)
def test_train_refuses_what_does_not_apply(arguments, message, capsys):
    assert main(["train", "--config", CONFIG, "--dry-run", *arguments]) == 2
    error = capsys.readouterr().err
    assert message in error and len(error.strip().splitlines()) == 1


@pytest.mark.slow
def test_bench_trains_the_detector_on_au_targets(capsys):
    """The benchmark's steps train the one output on AU targets, as a run does (it once
    refused the family: it fed class labels)."""
    arguments = ["bench", "--quick", "--clips", "6", "--config", CONFIG]
    for item in [*TINY, "train.batch_size=2"]:
        arguments += ["--set", item]
    assert main(arguments) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["train_compute_clips_per_s"] > 0 and result["train_pipeline_clips_per_s"] > 0
    assert result["inputs"] == [["au_frames", [16, 16, 16, 3]]] and result["infer_clips_per_s"] > 0

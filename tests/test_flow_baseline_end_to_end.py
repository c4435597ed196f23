"""The flow baseline end to end through `python -m mer train`, on 3 demo subjects (real-face
frames, so dlib finds the landmarks the flow is aligned by): each fold's probabilities are
those of scikit-learn fitted on that fold's training subjects alone; the folds run in parts,
resumed or merged, give the whole run's report; `--seeds` runs; the final model predicts the
full scikit-learn pipeline's probabilities; explain says in one line why it does not apply;
export works (the fitted regression is a small Keras model)."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from mer.bundle import load_bundle
from mer.cli import main
from mer.config import PROJECT_ROOT, load_config
from mer.data.sources import preprocess
from mer.data.synthetic import DemoSpec, generate_demo
from tests.test_dual_atme_end_to_end import CLASSES, _command, _last_path
from tests.test_end_to_end import as_arguments, workspace

CONFIG = str(PROJECT_ROOT / "config" / "demo_flow_baseline.yaml")
TINY = ["data.flow.face_size=64", "data.flow.grid=4"]


@pytest.fixture(scope="module")
def train(tmp_path_factory):
    """`train(runs, *options)`: `python -m mer train` of the baseline on the 3-subject demo
    (9 clips), writing to `runs`, all runs sharing one cache; returns what it printed."""
    root = tmp_path_factory.mktemp("flow_baseline")
    sheet = generate_demo(root / "demo", DemoSpec(subjects=3, clips_per_class=1, frames=16,
                                                  size=96))
    overrides = [f"data.root={root / 'demo'}", f"data.sheet={sheet}", *TINY]

    def run(runs: str, *options: str) -> str:
        arguments = as_arguments([*overrides, *workspace(root, runs)])
        return _command(["train", "--config", CONFIG, *arguments, *options])

    return run


@pytest.fixture(scope="module")
def whole_run(train):
    output = train("whole", "--set", "train.final_model=true")
    run_dir = _last_path(output, "Results: ")
    config = load_config(run_dir / "config.yaml")
    manifest = pd.read_csv(run_dir / "manifest.csv", dtype={"subject": str})
    (stream,) = preprocess(config.data, manifest).streams  # the run's cache
    features = np.stack(stream).reshape(len(manifest), -1).astype(np.float64)
    labels = manifest["label"].map(CLASSES.index).to_numpy()
    return run_dir, output, manifest, features, labels


def _scikit_learn(features, labels, train, seed):
    """The pipeline the family stands for, fitted on the `train` rows only."""
    scaler = StandardScaler().fit(features[train])
    classifier = LogisticRegression(class_weight="balanced", max_iter=1000, random_state=seed)
    classifier.fit(scaler.transform(features[train]), labels[train])
    return lambda rows: classifier.predict_proba(scaler.transform(features[rows]))


@pytest.mark.slow
def test_each_fold_predicts_what_scikit_learn_fits_on_its_training_subjects(whole_run):
    run_dir, output, manifest, features, labels = whole_run
    assert "Model: flow_baseline, inputs flow_grid (4, 4, 2), 163 parameters; " in output
    assert "train.epochs, learning_rate, decay_epochs" in output and "fitted once each" in output
    predictions = pd.read_csv(run_dir / "predictions.csv", dtype={"subject": str})
    assert len(predictions) == 9 and sorted(predictions["subject"].unique()) == ["1", "2", "3"]
    for subject in ("1", "2", "3"):
        held = (manifest["subject"] == subject).to_numpy()
        seed = json.loads((run_dir / "folds" / subject / "fold_result.json").read_text())["seed"]
        expected = _scikit_learn(features, labels, ~held, seed)(held)
        rows = predictions.set_index("sample").loc[manifest["sample"][held]]
        np.testing.assert_allclose(rows[[f"prob_{name}" for name in CLASSES]], expected,
                                   atol=1e-5)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["family"], summary["inputs"]) == ("flow_baseline", ["flow_grid"])
    assert len(json.loads((run_dir / "folds" / "1" / "history.json").read_text())["loss"]) == 1


@pytest.mark.slow
def test_folds_in_parts_resumed_or_merged_equal_the_whole_run(train, whole_run, tmp_path):
    reference = whole_run[0]
    part = _last_path(train("parts", "--folds", "1,2"), "Fold results: ")
    merged = _last_path(_command(["merge", str(part), str(reference)]), "Results: ")
    resumed = _last_path(_command(["train", "--resume", str(part)]), "Results: ")
    for run_dir in (resumed, merged):
        for name in ("predictions.csv", "per_subject.csv"):
            assert (run_dir / name).read_text() == (reference / name).read_text(), (run_dir, name)


@pytest.mark.slow
def test_seeds_run_one_folder_each(train):
    parent = _last_path(train("seeds", "--seeds", "1,2"), "Results: ")
    assert sorted(path.name for path in parent.glob("seed*") if path.is_dir()) == [
        "seed1", "seed2"
    ]
    assert (parent / "seeds.csv").is_file() and (parent / "summary.json").is_file()


def test_the_final_model_predicts_the_pipeline_fitted_on_every_clip(whole_run, capsys):
    run_dir, _, manifest, features, labels = whole_run
    seed = json.loads((run_dir / "final_model.json").read_text())["training"]["seed"]
    expected = _scikit_learn(features, labels, slice(None), seed)([0])[0]
    row = manifest.iloc[0]
    window = [f"--{key}={row[key]}" for key in ("onset", "apex", "offset")]
    assert main(["predict", "--model", str(run_dir), row["path"], *window, "--json"]) == 0
    [result] = json.loads(capsys.readouterr().out)
    probabilities = [result["probabilities"][name] for name in CLASSES]
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    assert load_bundle(run_dir).info["family"] == "flow_baseline"


def test_explain_says_in_one_line_that_it_does_not_apply(whole_run, tmp_path, capsys):
    run_dir, _, manifest, _, _ = whole_run
    arguments = ["explain", "--model", str(run_dir), manifest["path"][0], "--out", str(tmp_path)]
    assert main(arguments) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "no convolution layer" in error


def test_export_of_the_final_model_matches_keras(whole_run, tmp_path, capsys):
    assert main(["export", "--model", str(whole_run[0]), "--out", str(tmp_path)]) == 0
    output = capsys.readouterr().out
    assert float(output.split("max |difference| from Keras ")[1].split(")")[0]) < 1e-5

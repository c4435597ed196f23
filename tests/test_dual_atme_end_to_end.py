"""Dual-ATME end to end through `python -m mer train`: a LOSO run on 2 demo subjects (real-face
frames, so dlib finds the landmarks the flow inputs are aligned by) with every output checked;
its fold 2 trained again on resume, or merged from another folder, gives the same predictions;
its final model reloads in a fresh process for predict, and goes through explain and export. One
shared run of a tiny network (16x16 flow images of a 64-pixel face, one Inception block per
branch, 1 epoch) keeps it short: on TensorFlow most of a fold's time is tracing the training
step (about 6 s on 2 cores with one block, twice that with the preset's two), so the resume
trains one fold, and the parts are made from the whole run's folders. Keras's steps run eagerly
(`eager_keras_steps`, 23 s of CPU for this file instead of 38 s); the fresh-process predict
runs in graph mode, so it also compares the two modes' probabilities."""

import contextlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mer.bundle import load_bundle
from mer.cli import main
from mer.config import PROJECT_ROOT, load_config
from mer.data.sources import preprocess
from mer.data.synthetic import DemoSpec, generate_demo
from tests.test_end_to_end import as_arguments, workspace

pytestmark = [
    pytest.mark.slow,  # training runs through the entry points
    pytest.mark.usefixtures("eager_keras_steps"),
]

CONFIG = str(PROJECT_ROOT / "config" / "demo_dual_atme.yaml")
TINY_DUAL_ATME = [
    "data.flow.face_size=64",
    "data.flow.size=16",  # two MaxPool 2: 16 -> 8 -> 4
    "model.inception_filters=[4]",  # one block: half the tracing of two; 16 -> 8 after its pool
    "model.bottleneck_filters=2",
    "model.cbam_reduction=4",
    "model.dense_units=8",
    "train.epochs=1",
    "train.batch_size=3",
    "run.tensorboard=false",
]
CLASSES = ["negative", "positive", "surprise"]


def _last_path(output: str, label: str) -> Path:
    line = output.strip().splitlines()[-1]
    assert line.startswith(label), output[-2000:]
    return Path(line.removeprefix(label))


def _command(arguments: list[str]) -> str:
    """Runs `python -m mer ...` here; returns what it printed (capsys is per test, the runs are
    shared)."""
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        code = main(arguments)
    assert code == 0, output.getvalue()[-2000:]
    return output.getvalue()


@pytest.fixture(scope="module")
def train(tmp_path_factory):
    """`train(runs, *options)`: `python -m mer train` of the tiny Dual-ATME preset on the
    2-subject demo (6 clips), writing to `runs`, all runs sharing one cache; returns what it
    printed."""
    root = tmp_path_factory.mktemp("dual_atme")
    spec = DemoSpec(subjects=2, clips_per_class=1, frames=16, size=96)
    sheet = generate_demo(root / "demo", spec)
    overrides = [f"data.root={root / 'demo'}", f"data.sheet={sheet}", *TINY_DUAL_ATME]

    def run(runs: str, *options: str) -> str:
        arguments = as_arguments([*overrides, *workspace(root, runs)])
        return _command(["train", "--config", CONFIG, *arguments, *options])

    return run


@pytest.fixture(scope="module")
def whole_run(train):
    """The reference: one whole LOSO run, with the final model."""
    output = train("whole", "--set", "train.final_model=true")
    return _last_path(output, "Results: "), output


def test_tiny_loso_run_writes_every_output(whole_run):
    run_dir, output = whole_run
    assert run_dir.name.startswith("demo_dual_atme-demo-annotated-window-")
    assert "Model: dual_atme, inputs flow (16, 16, 3) + flow_puzzle (16, 16, 3)" in output
    config = load_config(run_dir / "config.yaml")
    assert config.model.family == "dual_atme" and config.data.input_names() == [
        "flow",
        "flow_puzzle",
    ]
    predictions = pd.read_csv(run_dir / "predictions.csv", dtype={"subject": str})
    probabilities = [f"prob_{name}" for name in CLASSES]
    assert list(predictions.columns) == [
        "subject", "sample", "y_true", "y_pred", *probabilities, "caveats"
    ]
    assert len(predictions) == 6 and predictions["sample"].is_unique
    assert sorted(predictions["subject"].unique()) == ["1", "2"]
    assert (abs(predictions[probabilities].sum(axis=1) - 1) < 1e-4).all()
    assert set(predictions["caveats"]) == {"annotated-window"}

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["clips"] == 6 and summary["subjects"] == 2
    assert (summary["family"], summary["inputs"]) == ("dual_atme", ["flow", "flow_puzzle"])
    assert [caveat["label"] for caveat in summary["caveats"]] == ["annotated-window"]
    assert summary["test_inputs_use_annotations"] is True and not summary["optimistic"]
    assert summary["parameters"] == load_bundle(run_dir).model.count_params()
    for name in ("per_subject.csv", "confusion_matrix.png", "training_curves.png"):
        assert (run_dir / name).stat().st_size > 0, name
    for subject in ("1", "2"):
        fold = run_dir / "folds" / subject
        assert (fold / "model.weights.h5").is_file()
        assert len(json.loads((fold / "history.json").read_text())["loss"]) == 1
    info = json.loads((run_dir / "final_model.json").read_text())
    assert info["family"] == "dual_atme" and info["streams"] == 2
    assert info["input_shape"] == [16, 16, 3] and info["training"]["clips"] == 6
    assert [normalizer["mode"] for normalizer in info["normalizers"]] == ["none", "none"]


def test_folds_in_parts_resumed_or_merged_equal_the_whole_run(whole_run, tmp_path):
    """A copy of the whole run without fold 2 and the report, as a run stopped in fold 2 leaves
    them, resumed: fold 2 is trained again by a network built from the run's config.yaml, and
    the report is the whole run's (the final model's files are kept, so that it is reused and
    only the fold trains). Merging a folder holding that fold 2 alone with the whole run (for
    fold 1) gives the same report."""
    reference, _ = whole_run
    cut = tmp_path / "cut" / reference.name
    shutil.copytree(reference, cut)
    shutil.rmtree(cut / "folds" / "2")
    for name in ("predictions.csv", "per_subject.csv", "summary.json"):
        (cut / name).unlink()
    output = _command(["train", "--resume", str(cut)])
    assert _last_path(output, "Results: ") == cut
    assert output.count("completed earlier, result reused") == 1  # fold 1
    assert "Final model: saved earlier, reused" in output
    part = tmp_path / "part"
    shutil.copytree(cut, part)
    shutil.rmtree(part / "folds" / "1")
    merged = _last_path(_command(["merge", str(part), str(reference)]), "Results: ")
    assert merged.parent == tmp_path
    for run_dir in (cut, merged):
        for name in ("predictions.csv", "per_subject.csv"):
            assert (run_dir / name).read_text() == (reference / name).read_text(), (run_dir, name)


@pytest.fixture(scope="module")
def clip(whole_run):
    """A positive clip of the run: its manifest row, with the annotated onset, apex and
    offset."""
    run_dir, _ = whole_run
    manifest = pd.read_csv(run_dir / "manifest.csv", dtype={"subject": str})
    return manifest[manifest["label"] == "positive"].iloc[0]


def _window(row) -> list[str]:
    """--onset, --apex and --offset of a manifest row."""
    return [text for key in ("onset", "apex", "offset") for text in (f"--{key}", str(row[key]))]


def test_predict_in_a_fresh_process_matches_the_training_inputs(whole_run, clip):
    """`python -m mer predict` in a new interpreter (so the saved model's layers must register
    on import) with the clip's annotated window gives model.predict's probabilities on the
    flow images the run trained on (its own cache)."""
    run_dir, _ = whole_run
    bundle = load_bundle(run_dir)
    config = load_config(run_dir / "config.yaml")
    streams = preprocess(config.data, pd.DataFrame([clip])).streams  # cache hits
    inputs = [
        np.stack([normalizer(array) for array in stream])
        for stream, normalizer in zip(streams, bundle.normalizers, strict=True)
    ]
    expected = bundle.model.predict(inputs, verbose=0)[0]
    command = [sys.executable, "-m", "mer", "predict", "--model", str(run_dir), clip["path"],
               *_window(clip), "--json"]
    finished = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True,
                              timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    [result] = json.loads(finished.stdout)
    assert result["window"] == [int(clip["onset"]), int(clip["offset"])]
    assert result["apex"] == int(clip["apex"]) and result["spotted"] is False
    probabilities = [result["probabilities"][name] for name in CLASSES]
    np.testing.assert_allclose(probabilities, expected, rtol=1e-5, atol=1e-6)


def test_predict_spots_a_window_for_a_flow_model(whole_run, clip, capsys):
    """A new clip without --onset/--offset gets a spotted window of data.frames frames, the
    flow running to its middle (data.flow.apex), whose frame the JSON gives: the same
    probabilities as with that window and apex given; an apex outside the window is a one-line
    error."""
    run_dir, _ = whole_run
    assert load_bundle(run_dir).data.flow.apex == "middle"
    assert main(["predict", "--model", str(run_dir), clip["path"], "--json"]) == 0
    [result] = json.loads(capsys.readouterr().out)
    onset, offset = result["window"]
    assert result["spotted"] is True and result["apex"] == (onset + offset) // 2
    assert offset - onset == load_bundle(run_dir).data.frames - 1
    given = [f"--onset={onset}", f"--apex={result['apex']}", f"--offset={offset}"]
    assert main(["predict", "--model", str(run_dir), clip["path"], *given, "--json"]) == 0
    [again] = json.loads(capsys.readouterr().out)
    assert again["probabilities"] == result["probabilities"] and again["spotted"] is False
    arguments = ["--onset", str(onset), "--apex", str(offset + 1), "--offset", str(offset)]
    assert main(["predict", "--model", str(run_dir), clip["path"], *arguments]) == 2
    error = capsys.readouterr().err.strip()
    assert f"--apex {offset + 1} must lie within --onset {onset}" in error
    assert len(error.splitlines()) == 1


def test_explain_draws_each_flow_image_and_its_grad_cam(whole_run, clip, tmp_path, capsys):
    run_dir, _ = whole_run
    arguments = ["explain", "--model", str(run_dir), clip["path"], "--out", str(tmp_path)]
    assert main([*arguments, *_window(clip), "--class", "surprise"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["layers"] == ["aars_inception1", "hars_inception1"]  # one block per branch
    assert result["explained"] == "surprise" and result["gif"] is None
    assert result["apex"] == int(clip["apex"]) and result["spotted"] is False
    strip = Image.open(result["strip"])
    # two rows (flow, flow_puzzle) of four 192-pixel tiles: u, v, magnitude, Grad-CAM
    assert strip.format == "PNG" and strip.width > 4 * 192 and 2 * 192 < strip.height < 3 * 192
    assert not list(tmp_path.glob("*.gif"))


def test_export_of_the_final_model_matches_keras(whole_run, tmp_path, capsys):
    run_dir, _ = whole_run
    assert main(["export", "--model", str(run_dir), "--out", str(tmp_path)]) == 0
    output = capsys.readouterr().out
    difference = float(output.split("max |difference| from Keras ")[1].split(")")[0])
    assert (tmp_path / "saved_model" / "saved_model.pb").is_file() and difference < 1e-5

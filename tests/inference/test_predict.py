"""The final model of a run, and `python -m mer predict` on new clips."""

import json

import cv2
import numpy as np
import pandas as pd
import pytest

from mer.cli import main
from mer.config import load_config
from mer.data.sources import preprocess
from mer.inference.bundle import load_bundle

PLOTS = (
    "confusion_matrix.png",
    "confusion_matrix_normalized.png",
    "per_subject_uf1.png",
    "training_curves.png",
    "class_distribution.png",
)


def test_run_writes_plots_and_final_model(trained_run):
    for name in PLOTS:
        assert (trained_run.run_dir / name).stat().st_size > 1000, name
    info = json.loads((trained_run.run_dir / "final_model.json").read_text())
    assert info["classes"] == ["negative", "positive", "surprise"]
    assert info["streams"] == 2 and info["input_shape"] == [6, 32, 32, 3]
    assert info["data"]["regions"]["enabled"] and info["data"]["sampler"] == "max_motion"
    assert info["training"]["clips"] == 6 and info["training"]["subjects"] == 2
    assert len(info["training"]["history"]["loss"]) == 1


def _predict_json(capsys, arguments):
    assert main(["predict", *arguments, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_predict_matches_model_predict_on_training_preprocessing(trained_run, capsys):
    """The command's probabilities equal model.predict on the clip as the training run
    preprocessed it (the run's own cache), normalised by the saved normalisers."""
    bundle = load_bundle(trained_run.run_dir)  # a run folder: its final_model.keras
    config = load_config(trained_run.run_dir / "config.yaml")
    rows = trained_run.manifest.iloc[[0, 4]]
    streams = preprocess(config.data, rows).streams  # cache hits: the training arrays
    inputs = [
        np.stack([normalizer(clip) for clip in stream])
        for stream, normalizer in zip(streams, bundle.normalizers, strict=True)
    ]
    expected = bundle.model.predict(inputs, verbose=0)
    for position, (_, row) in enumerate(rows.iterrows()):
        arguments = ["--model", str(trained_run.run_dir / "final_model.keras"), row["path"]]
        arguments += ["--onset", str(row["onset"]), "--offset", str(row["offset"])]
        arguments += ["--aus", row["aus"]]
        [result] = _predict_json(capsys, arguments)
        probabilities = np.array([result["probabilities"][name] for name in bundle.classes])
        assert probabilities.sum() == pytest.approx(1.0, abs=1e-5)
        np.testing.assert_allclose(probabilities, expected[position], rtol=1e-5, atol=1e-6)
        assert result["predicted"] == bundle.classes[int(expected[position].argmax())]


def test_predict_videos_and_frame_folders(one_stream_bundle, tmp_path, capsys):
    model, clips = one_stream_bundle
    folder = tmp_path / "frames"  # the first clip again, as a folder of numbered images
    folder.mkdir()
    capture = cv2.VideoCapture(str(clips[0]))
    number = 0
    while True:
        ok, image = capture.read()
        if not ok:
            break
        number += 1
        cv2.imwrite(str(folder / f"img{number}.png"), image)
    capture.release()
    results = _predict_json(capsys, ["--model", str(model), str(clips[0]), str(folder)])
    assert [result["clip"] for result in results] == [str(clips[0]), str(folder)]
    for result in results:
        assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert main(["predict", "--model", str(model), *map(str, clips)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["clip", "negative", "positive", "surprise", "predicted"]
    assert len(table) == 1 + len(clips)
    values = pd.Series(table[1].split()[1:4], dtype=float)
    assert values.sum() == pytest.approx(1.0, abs=2e-3)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda path: path / "missing.avi", "clip not found"),
        (lambda path: _write(path / "broken.avi", b"not a video"), "cannot open video"),
        (lambda path: _write(path / "notes.txt", b"text"), "is not a video"),
    ],
)
def test_bad_clips_are_one_line_errors(one_stream_bundle, tmp_path, capsys, make, message):
    model, _ = one_stream_bundle
    assert main(["predict", "--model", str(model), str(make(tmp_path))]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and "Traceback" not in error and len(error.splitlines()) == 1


def test_missing_model_and_side_file(one_stream_bundle, tmp_path, capsys):
    _, clips = one_stream_bundle
    assert main(["predict", "--model", str(tmp_path), str(clips[0])]) == 2
    assert "model not found" in capsys.readouterr().err
    lone = tmp_path / "lone.keras"
    lone.write_bytes(b"")
    assert main(["predict", "--model", str(lone), str(clips[0])]) == 2
    assert "lone.json beside it" in capsys.readouterr().err


def _write(path, content: bytes):
    path.write_bytes(content)
    return path

"""The final model of a run, and `python -m mer predict` on new clips."""

import json

import cv2
import numpy as np
import pandas as pd
import pytest

from mer.bundle import load_bundle
from mer.cli import main
from mer.config import load_config
from mer.data.sources import preprocess
from mer.inference.predict import largest_change_start, spot_window
from tests.inference.conftest import SLIDE_SPAN

PLOTS = (
    "confusion_matrix.png",
    "confusion_matrix_normalized.png",
    "per_subject_uf1.png",
    "training_curves.png",
    "class_distribution.png",
)


@pytest.mark.slow  # trained_run: a training run
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


@pytest.mark.slow  # trained_run: a training run
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


@pytest.mark.slow
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


def test_largest_change_start():
    changes = [0, 1, 1, 9, 9, 1, 1]  # windows of 3 hold 2 changes: 2, 10, 18, 10, 2
    assert largest_change_start(changes, 3) == 2
    assert largest_change_start(changes, 1) == 0  # a lone frame holds no change: a tie
    assert largest_change_start([0, 5, 0, 0, 5, 0], 2) == 0  # ties: the earliest
    assert largest_change_start(changes, 7) == largest_change_start(changes, 9) == 0
    with pytest.raises(ValueError, match="got length 0"):
        largest_change_start(changes, 0)


def test_spotted_window_holds_the_movement_or_lies_in_it(onset_offset_bundle):
    _, video = onset_offset_bundle
    first, last = SLIDE_SPAN
    onset, offset = spot_window(video, 24, 4)  # shorter than the movement: inside it
    assert first <= onset and offset <= last and offset - onset == 3
    onset, offset = spot_window(video, 24, 12)  # longer: around it
    assert onset <= first and last <= offset and offset - onset == 11


@pytest.mark.slow
def test_predict_spots_the_window_of_a_clip_without_onset(onset_offset_bundle, capsys, caplog):
    """An onset_offset model on an unannotated clip: a warning naming the clip and the window,
    which the JSON reports as spotted, and the same probabilities as with that window given."""
    model, video = onset_offset_bundle
    [spotted] = _predict_json(capsys, ["--model", str(model), str(video)])
    onset, offset = spotted["window"]
    assert spotted["spotted"] is True
    assert SLIDE_SPAN[0] <= onset and offset <= SLIDE_SPAN[1] and offset - onset == 3
    [warning] = [record.getMessage() for record in caplog.records if "spotted" in record.message]
    assert str(video) in warning and f"frames {onset}..{offset}" in warning
    window = ["--onset", str(onset), "--offset", str(offset)]
    [given] = _predict_json(capsys, ["--model", str(model), str(video), *window])
    assert given["spotted"] is False and given["window"] == [onset, offset]
    assert given["probabilities"] == pytest.approx(spotted["probabilities"], abs=1e-7)
    assert main(["predict", "--model", str(model), str(video), "--onset", "3"]) == 2
    error = capsys.readouterr().err.strip()
    assert "--onset 3 and --offset None: give both, or neither" in error
    assert len(error.splitlines()) == 1


@pytest.mark.slow
def test_a_model_without_windows_reports_none(one_stream_bundle, capsys):
    model, clips = one_stream_bundle  # data.sampler=even: frames spread over the whole clip
    arguments = ["--model", str(model), str(clips[0]), "--onset", "2", "--offset", "9"]
    [result] = _predict_json(capsys, arguments)
    assert result["window"] is None and result["spotted"] is False and result["apex"] is None
    assert main(["predict", *arguments, "--apex", "5"]) == 2  # no flow input reads an apex
    assert "--apex 5: no input of this model reads an apex (inputs frames)" in (
        capsys.readouterr().err
    )
    assert main(["predict", *arguments, "--aus", "4+12"]) == 2  # one stream: no AU crop
    assert "--aus 4+12: no input of this model reads action units (inputs frames;" in (
        capsys.readouterr().err
    )


def _write(path, content: bytes):
    path.write_bytes(content)
    return path

"""`python -m mer explain`: Grad-CAM strip and GIF, with the AU region marked."""

import json

import keras
import numpy as np
import pytest
from PIL import Image

from mer.bundle import load_bundle
from mer.cli import main
from mer.data.regions import region_for_aus
from mer.inference.explain import grad_cam, input_streams, resize_map
from mer.models.builders import build_mlsp_model
from mer.training.loso import make_deterministic


def _explain(capsys, arguments):
    assert main(["explain", *arguments]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_two_stream_explanation_marks_the_region(trained_run, tmp_path, capsys):
    row = trained_run.manifest.iloc[2]
    arguments = ["--model", str(trained_run.run_dir), row["path"], "--out", str(tmp_path)]
    arguments += ["--aus", row["aus"], "--onset", str(row["onset"]), "--offset", str(row["offset"])]
    result = _explain(capsys, [*arguments, "--class", "surprise"])
    assert result["layers"] == ["branch5_conv", "branch3_conv"]
    assert result["explained"] == "surprise"
    assert result["region"] == region_for_aus([int(au) for au in row["aus"].split("+")]).name
    assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    strip = Image.open(result["strip"])
    assert strip.format == "PNG" and strip.width > 6 * 96
    gif = Image.open(result["gif"])
    assert gif.format == "GIF" and gif.n_frames == 6  # one per model frame
    assert gif.width == 2 * gif.height  # face and region overlays side by side


def test_one_stream_explanation_and_grad_cam_maps(one_stream_bundle, tmp_path, capsys):
    model, clips = one_stream_bundle
    result = _explain(capsys, ["--model", str(model), str(clips[1]), "--out", str(tmp_path)])
    assert result["layers"] == ["merge_conv"] and result["region"] is None
    assert Image.open(result["gif"]).n_frames == 4
    assert (tmp_path / f"{clips[1].stem}_gradcam.png").is_file()

    bundle = load_bundle(model)
    assert input_streams(bundle.model, "merge_conv") == {0}
    clip = np.random.default_rng(1).standard_normal((1, 4, 16, 16, 3)).astype(np.float32)
    [cam] = grad_cam(bundle.model, [clip], 0, ["merge_conv"])
    assert cam.shape == (2, 6, 6) and cam.min() >= 0 and cam.max() <= 1
    assert resize_map(cam, 4, 16).shape == (4, 16, 16)
    assert main(["explain", "--model", str(model), str(clips[0]), "--out", str(tmp_path),
                 "--class", "joy"]) == 2
    assert "'joy' is not one of the model's classes" in capsys.readouterr().err


def test_explain_spots_the_window_as_predict_does(onset_offset_bundle, tmp_path, capsys):
    model, video = onset_offset_bundle
    assert main(["predict", "--model", str(model), str(video), "--json"]) == 0
    [predicted] = json.loads(capsys.readouterr().out)
    result = _explain(capsys, ["--model", str(model), str(video), "--out", str(tmp_path)])
    assert result["spotted"] is True and result["window"] == predicted["window"]
    assert result["probabilities"] == pytest.approx(predicted["probabilities"], abs=1e-7)
    window = ["--onset", "2", "--offset", "5"]
    result = _explain(capsys, ["--model", str(model), str(video), "--out", str(tmp_path), *window])
    assert result["spotted"] is False and result["window"] == [2, 5]


def _blob_clips(random: np.random.Generator, present: np.ndarray) -> np.ndarray:
    """Noise clips of 4 frames of 32x32, normalised to zero mean; where `present`, a bright 6x6
    blob near the centre of the top-right quadrant (rows 0-15, columns 16-31), in every frame.
    Zero-mean noise keeps the zero padding from looking like a blob, and a fixed normalisation
    keeps the blob from changing the statistics of the rest of the clip."""
    clips = random.integers(0, 128, (len(present), 4, 32, 32, 3)).astype(np.float32)
    for index in np.flatnonzero(present):
        row, column = np.array([5, 21]) + random.integers(-2, 3, 2)  # blob centred at (8, 24)
        clips[index, :, row : row + 6, column : column + 6] = 255
    return (clips - 64) / 64


def test_grad_cam_peaks_where_the_label_is():
    """A tiny model learns that a blob in the top-right quadrant means class 1; on new clips
    with the blob its Grad-CAM of class 1 is largest inside that quadrant (not symmetric under
    a swap of height and width, so a transposed or misplaced map fails). It shows where the
    model looks, not which class the evidence favours: at merge_conv, whose outputs are signed
    (before the activation), the negated gradient peaks on the blob as well."""
    make_deterministic()
    keras.utils.set_random_seed(0)
    random = np.random.default_rng(0)
    labels = np.arange(64) % 2
    model = build_mlsp_model((4, 32, 32, 3), 2, branches=1, branch_filters=8, merge_filters=8,
                             cam="none", temporal="none", pooling="none", dense_units=(8,),
                             head_units=(8,), dropout=0.0, l2=0.0)
    model.compile(keras.optimizers.Adam(1e-3), "categorical_crossentropy")
    model.fit(_blob_clips(random, labels == 1), np.eye(2)[labels], epochs=10, batch_size=8,
              verbose=0)
    clips = _blob_clips(random, np.ones(4, dtype=bool))
    assert (model.predict(clips, verbose=0).argmax(axis=1) == 1).all()  # it learnt the blob
    for clip in clips:
        [cam] = grad_cam(model, [clip[None]], 1)  # at merge_conv: (2, 11, 11)
        shown = resize_map(cam, 4, 32)  # as drawn over the frames
        _, row, column = np.unravel_index(shown.argmax(), shown.shape)
        assert row < 16 and column >= 16, (row, column)

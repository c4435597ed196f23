"""`python -m mer explain`: Grad-CAM strip and GIF, with the AU region marked."""

import json

import keras
import numpy as np
import pytest
from PIL import Image

from mer.bundle import load_bundle
from mer.cli import main
from mer.data.regions import region_for_aus
from mer.inference.explain import (
    default_layers,
    drawn_inputs,
    grad_cam,
    input_streams,
    resize_map,
)
from mer.models.builders import build_mlsp_model
from mer.models.dual_atme import build_dual_atme_model
from mer.training.loso import make_deterministic


def _explain(capsys, arguments):
    assert main(["explain", *arguments]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.slow  # trained_run: a training run
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


def test_grad_cam_of_a_2d_map_weighs_each_channel_by_its_mean_gradient():
    """A 1x1 conv passes an 8x8 image's two channels through: channel 0 lit in the top-right
    quadrant, channel 1 in the bottom-left. Class 1's logit is the sum of channel 0 minus the
    sum of channel 1, so the channel weights are +1 and -1 and the map is exactly the top-right
    quadrant; class 0's logit ignores the conv, so its map is all zero."""
    inputs = keras.Input((8, 8, 2))
    features = keras.layers.Conv2D(2, 1, use_bias=False, name="conv")(inputs)
    logits = keras.layers.Dense(2, use_bias=False, name="logits")(
        keras.layers.Flatten()(features)
    )
    model = keras.Model(inputs, keras.layers.Softmax()(logits))
    model.get_layer("conv").set_weights([np.eye(2, dtype=np.float32)[None, None]])
    sign = np.tile([1.0, -1.0], 64).astype(np.float32)  # flattened (row, column, channel)
    model.get_layer("logits").set_weights([np.stack([np.zeros(128, np.float32), sign], axis=1)])
    image = np.zeros((1, 8, 8, 2), dtype=np.float32)
    image[0, :4, 4:, 0] = image[0, 4:, :4, 1] = 1.0
    assert default_layers(model) == ["conv"]
    [cam] = grad_cam(model, [image], 1)
    np.testing.assert_allclose(cam, image[0, :, :, 0], atol=1e-6)
    [cam] = grad_cam(model, [image], 0)
    assert cam.shape == (8, 8) and not cam.any()
    with pytest.raises(ValueError, match="Grad-CAM needs a spatial map"):
        grad_cam(model, [image], 1, ["logits"])


def test_grad_cam_explains_one_branch_of_two_and_a_layer_feeding_another():
    """One 8x8 image into two 1x1 convs, `left` (then `after`, twice it) and `right`; class
    1's logit sums `after` minus three times `right`. So the logit's gradient is +2 at each
    position of `left`, +1 of `after` and -3 of `right`: the lit quadrant for the first two,
    nothing for `right`, whether each is named alone or with the others."""
    inputs = keras.Input((8, 8, 1))
    left = keras.layers.Conv2D(1, 1, use_bias=False, name="left")(inputs)
    right = keras.layers.Conv2D(1, 1, use_bias=False, name="right")(inputs)
    after = keras.layers.Conv2D(1, 1, use_bias=False, name="after")(left)
    merged = keras.layers.Flatten()(keras.layers.Concatenate()([after, right]))
    logits = keras.layers.Dense(2, use_bias=False, name="logits")(merged)
    model = keras.Model(inputs, keras.layers.Softmax()(logits))
    for name, weight in (("left", 1.0), ("right", 1.0), ("after", 2.0)):
        model.get_layer(name).set_weights([np.full((1, 1, 1, 1), weight, np.float32)])
    sign = np.tile([1.0, -3.0], 64).astype(np.float32)  # flattened (row, column, channel)
    model.get_layer("logits").set_weights([np.stack([np.zeros(128, np.float32), sign], axis=1)])
    image = np.zeros((1, 8, 8, 1), dtype=np.float32)
    image[0, :4, 4:, 0] = 1.0
    quadrant = image[0, :, :, 0]
    for layers, expected in (
        (["left", "after"], [quadrant, quadrant]),
        (["left"], [quadrant]),
        (["after", "right"], [quadrant, np.zeros((8, 8))]),
    ):
        maps = grad_cam(model, [image], 1, layers)
        assert len(maps) == len(expected), layers
        for cam, wanted in zip(maps, expected, strict=True):
            np.testing.assert_allclose(cam, wanted, atol=1e-6, err_msg=str(layers))


@pytest.mark.parametrize("attention_on", ["aars", "both"])
def test_dual_atme_is_explained_at_each_branchs_last_inception_block(attention_on):
    """Not at CBAM, which also holds a conv but keeps its input's shape (and, shared by both
    branches, has no one output); each branch's map has the block's 4x4 resolution."""
    model = build_dual_atme_model([(8, 8, 3)] * 2, 3, attention_on=attention_on,
                                  inception_filters=(2, 4), cbam_reduction=4, dense_units=8)
    layers = default_layers(model)
    assert layers == ["aars_inception2", "hars_inception2"]
    assert [input_streams(model, layer) for layer in layers] == [{0}, {1}]
    images = [np.random.default_rng(0).uniform(-1, 1, (1, 8, 8, 3)).astype(np.float32)] * 2
    for cam in grad_cam(model, images, 2):
        assert cam.shape == (4, 4) and cam.min() >= 0 and cam.max() <= 1


def test_drawn_inputs_leave_out_what_is_neither_frames_nor_an_image():
    """FMER's kind of model: a patches input of another rank is fed, not drawn, and the
    default layer is the clip input's own; frames beside an image, or neither, are refused."""
    patches = keras.Input((2, 4, 2, 3, 3), name="patches")  # rank 6 with the batch
    frames = keras.Input((4, 8, 8, 3), name="frames")
    image = keras.Input((8, 8, 3), name="image")
    conv = keras.layers.Conv3D(2, 3, padding="same", name="clip_conv")(frames)
    pooled = keras.layers.GlobalAveragePooling3D()(conv)
    mixed = keras.layers.Concatenate()([pooled, keras.layers.Flatten()(patches)])
    model = keras.Model([patches, frames], keras.layers.Dense(2, name="logits")(mixed))
    assert drawn_inputs(model) == [1] and default_layers(model) == ["clip_conv"]
    flat = keras.layers.Flatten()
    both = keras.Model([frames, image], keras.layers.Concatenate()([pooled, flat(image)]))
    with pytest.raises(ValueError, match=r"one kind: inputs \[\(4, 8, 8, 3\), \(8, 8, 3\)\]"):
        drawn_inputs(both)
    with pytest.raises(ValueError, match="one kind"):
        drawn_inputs(keras.Model(patches, keras.layers.Flatten()(patches)))

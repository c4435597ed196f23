"""AU detection: the per-AU F1 pooled over clips (`mer.evaluation.metrics.au_f1_scores`), by
hand on a small example; the AU targets over a chosen AU list (`mer.models.fmer`); and the
`au_detector` family: its output, its parameter counts against FMER's P3D part, its loss on
probabilities, its config, checks and targets."""

import keras
import numpy as np
import pandas as pd
import pytest

from mer.config import PROJECT_ROOT, ConfigError, ExperimentConfig, build_typed, load_config
from mer.evaluation.metrics import au_f1_scores
from mer.experiment import family_targets
from mer.models import model_family
from mer.models.au_detector import FAMILY, AUDetectorConfig, build_au_detector_model
from mer.models.fmer import AU_CODES, AUBinaryCrossentropy, au_targets, build_fmer_model
from mer.specs import InputSpec

NAN = np.nan
# the parameter counts do not depend on the frame size (the pooling before the logits is
# global), so the published widths are counted at 16 px
FRAMES = [InputSpec("au_frames", (16, 16, 16, 3))]


def test_au_f1_by_hand_leaves_blank_cells_out_of_their_au():
    # 4 clips, 3 AUs; clip 3's cell is blank (NaN row), clip 2 unknown for the third AU only
    y_true = np.array([[1, 0, 1], [1, 1, 0], [0, 0, NAN], [NAN, NAN, NAN]])
    y_prob = np.array([[0.9, 0.6, 0.2], [0.4, 0.7, 0.1], [0.5, 0.1, 0.9], [0.9, 0.9, 0.9]])
    scores = au_f1_scores(y_true, y_prob)
    # AU a: truth 1,1,0 predicted 1,0,1 -> TP 1, FP 1, FN 1 -> F1 2/4
    # AU b: truth 0,1,0 predicted 1,1,0 -> TP 1, FP 1, FN 0 -> F1 2/3
    # AU c: truth 1,0 (clip 2 unknown) predicted 0,0 -> TP 0, FP 0, FN 1 -> F1 0
    np.testing.assert_array_equal(scores["clips"], [3, 3, 2])
    np.testing.assert_array_equal(scores["positives"], [2, 1, 1])
    np.testing.assert_array_equal(scores["tp"], [1, 1, 0])
    np.testing.assert_array_equal(scores["fp"], [1, 1, 0])
    np.testing.assert_array_equal(scores["fn"], [1, 0, 1])
    np.testing.assert_allclose(scores["f1"], [0.5, 2 / 3, 0.0])
    assert scores["mean_f1"] == pytest.approx((0.5 + 2 / 3) / 3)


def test_au_f1_threshold_and_zero_division():
    y_true = np.array([[0.0, 1.0], [0.0, 1.0]])
    scores = au_f1_scores(y_true, np.array([[0.1, 0.5], [0.2, 0.49]]))
    np.testing.assert_allclose(scores["f1"], [0.0, 2 / 3])  # absent and never predicted: 0
    scores = au_f1_scores(y_true, np.array([[0.1, 0.5], [0.2, 0.49]]), threshold=0.45)
    np.testing.assert_allclose(scores["f1"], [0.0, 1.0])


@pytest.mark.parametrize(
    ("y_true", "y_prob", "threshold", "message"),
    [
        (np.zeros((2, 3)), np.zeros((2, 2)), 0.5, "one shape"),
        (np.zeros(3), np.zeros(3), 0.5, "one shape"),
        (np.zeros((0, 3)), np.zeros((0, 3)), 0.5, "empty"),
        (np.full((1, 2), 2.0), np.zeros((1, 2)), 0.5, "0, 1 or NaN, got 2.0"),
        (np.zeros((1, 2)), np.zeros((1, 2)), 1.0, "threshold must be in"),
    ],
)
def test_au_f1_rejects_bad_input(y_true, y_prob, threshold, message):
    with pytest.raises(ValueError, match=message):
        au_f1_scores(y_true, y_prob, threshold)


def test_au_targets_follow_the_given_au_list():
    np.testing.assert_array_equal(au_targets({4, 5, 12}), [0, 0, 1, 0, 1, 0, 0, 0, 0])
    assert len(au_targets(set())) == len(AU_CODES)
    np.testing.assert_array_equal(au_targets({4, 5, 12}, (1, 4, 5, 7, 43)), [0, 1, 1, 0, 0])


def _trainable(weights) -> int:
    return sum(int(np.prod(weight.shape)) for weight in weights)


@pytest.mark.slow
def test_published_width_is_fmers_p3d_part_and_the_dense_scales_with_the_aus():
    nine = build_au_detector_model(FRAMES)
    assert _trainable(nine.trainable_weights) == 24_944_073  # FMER's P3D part (the issue's)
    assert nine.output_names == ["au_probabilities"] and tuple(nine.outputs[0].shape) == (None, 9)
    seven = build_au_detector_model(FRAMES, aus=[1, 2, 4, 5, 6, 12, 15])
    assert tuple(seven.outputs[0].shape) == (None, 7)
    # only the logits' Dense(2048 -> AUs) changes: 2,049 weights per AU
    assert _trainable(nine.trainable_weights) - _trainable(seven.trainable_weights) == 2 * 2049


@pytest.mark.slow
def test_same_layers_as_fmers_detector_at_a_small_width():
    """FMER at P3D width 2 and the detector at width 2: the same p3d_ layers and counts."""
    fmer = build_fmer_model(
        [InputSpec("fmer_patches", (9, 2, 30, 7, 7)), *FRAMES], 3, p3d_filters=2
    )
    detector = build_au_detector_model(FRAMES, p3d_filters=2)
    p3d = {
        layer.name: _trainable(layer.trainable_weights)
        for layer in fmer.layers
        if layer.name.startswith("p3d_")
    }
    mine = {
        layer.name: _trainable(layer.trainable_weights)
        for layer in detector.layers
        if layer.name.startswith("p3d_")
    }
    assert mine == p3d and sum(mine.values()) == _trainable(detector.trainable_weights)


def test_tiny_detector_gives_probabilities_per_au():
    keras.utils.set_random_seed(3)
    model = FAMILY.build(AUDetectorConfig(aus=[4, 12, 15], p3d_filters=1, dropout=0.2), FRAMES, 3)
    probabilities = np.asarray(model(np.zeros((2, 16, 16, 16, 3), "float32"), training=False))
    assert probabilities.shape == (2, 3) and probabilities.dtype == np.float32
    assert ((0 < probabilities) & (probabilities < 1)).all()


@pytest.mark.parametrize(
    "specs, arguments, message",
    [
        ([InputSpec("frames", (16, 16, 16, 3))], {}, "one input, 'au_frames'; got ['frames']"),
        ([InputSpec("au_frames", (8, 16, 16, 3))], {}, "the frames must be (16, height, width"),
        (FRAMES, dict(aus=[]), "aus must be distinct positive AU numbers, got []"),
        (FRAMES, dict(aus=[4, 4]), "aus must be distinct positive AU numbers, got [4, 4]"),
        (FRAMES, dict(aus=[0, 4]), "got [0, 4]"),
        (FRAMES, dict(p3d_filters=0), "p3d_filters must be a positive integer, got 0"),
        (FRAMES, dict(dropout=1.0), "dropout must be in [0, 1), got 1.0"),
    ],
)
def test_invalid_arguments(specs, arguments, message):
    with pytest.raises(ValueError) as error:
        build_au_detector_model(specs, **arguments)
    assert message in str(error.value)


def test_loss_on_probabilities_is_the_loss_on_logits():
    """The family's loss reads sigmoid outputs: equal to FMER's on the logits, NaN rows out."""
    logits = np.array([[2.0, -1.0, 0.5], [3.0, -3.0, -0.2], [0.1, 0.2, 0.3]], "float32")
    targets = np.array([[1, 0, 1], [0, 0, 1], [NAN, NAN, NAN]], "float32")
    on_logits = float(AUBinaryCrossentropy()(targets, logits))
    loss = FAMILY.loss(None)
    assert not loss.from_logits
    np.testing.assert_allclose(
        float(loss(targets, 1 / (1 + np.exp(-logits)))), on_logits, rtol=1e-5
    )
    restored = AUBinaryCrossentropy.from_config(loss.get_config())
    assert (restored.from_logits, restored.weight) == (False, 1.0)


def _experiment(**sections) -> ExperimentConfig:
    values = {
        "model": {"family": "au_detector"},
        "data": {"inputs": ["au_frames"]},
        "train": {"class_weights": None},
        "eval": {},
    }
    for key, value in sections.items():
        values[key].update(value)
    return build_typed(ExperimentConfig, values)


def test_family_section_and_checks():
    assert model_family("au_detector") is FAMILY and FAMILY.predicts == "aus"
    config = _experiment(model={"aus": [1, 12]})
    assert isinstance(config.model, AUDetectorConfig) and config.model.aus == [1, 12]
    assert _experiment().model.aus == list(AU_CODES)
    FAMILY.check(config)
    with pytest.raises(ConfigError, match="unknown config key"):
        _experiment(model={"au_loss": True})
    for sections, message in (
        ({"data": {"inputs": ["au_frames", "frames"]}}, r"data.inputs: \[au_frames\]"),
        ({"train": {"class_weights": [1.0, 2.0]}}, "train.class_weights must be null"),
        ({"eval": {"protocol": "paper"}}, "has no class accuracy"),
        ({"model": {"aus": [1, 1]}}, r"model.aus must be distinct positive AU numbers, got \[1"),
        ({"model": {"dropout": 1.0}}, r"model.dropout must be in \[0, 1\), got 1.0"),
        ({"model": {"p3d_filters": 0}}, "model.p3d_filters must be positive, got 0"),
    ):
        with pytest.raises(ConfigError, match=message):
            FAMILY.check(_experiment(**sections))


def test_targets_follow_model_aus_and_need_some_au_cell():
    config = load_config(PROJECT_ROOT / "config" / "demo_au_detector.yaml")
    manifest = pd.DataFrame({"sample": ["a", "b", "c"], "aus": ["4+L10", "(R6 or R12)+R15", ""]})
    targets = family_targets(config, manifest)
    assert targets.shape == (3, 7)  # AUs 1, 2, 4, 5, 6, 12, 15
    np.testing.assert_array_equal(targets[0], [0, 0, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(targets[1], [0, 0, 0, 0, 1, 1, 1])
    assert np.isnan(targets[2]).all()
    with pytest.raises(ConfigError, match="no clip has one"):
        family_targets(config, manifest.assign(aus=["", " ", np.nan]))

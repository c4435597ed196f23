"""The flow baseline family: the Keras model predicts what scikit-learn fitted, classes absent
from the training clips get probability 0, and the settings it cannot honour are refused."""

import keras
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from mer.config import ConfigError, load_config
from mer.models.flow_baseline import FAMILY
from mer.specs import InputSpec
from mer.training.loso import build_model

CLASSES = ["negative", "positive", "surprise"]


def _config(*overrides):
    return load_config(None, ["model.family=flow_baseline", "data.inputs=[flow_grid]",
                              f"data.classes={CLASSES}", *overrides])


def _features(labels, seed=0):
    """(clips, 4, 4, 2) features whose first cell's u tells the class, on a shifted scale."""
    random = np.random.default_rng(seed)
    features = random.normal(3.0, 2.0, (len(labels), 4, 4, 2)).astype(np.float32)
    features[:, 0, 0, 0] += 4.0 * np.asarray(labels)
    return features


def _reference(features, labels, config, seed):
    """The scikit-learn pipeline the family stands for, fitted on the same clips."""
    flat = features.reshape(len(features), -1).astype(np.float64)
    scaler = StandardScaler().fit(flat)
    classifier = LogisticRegression(class_weight="balanced", max_iter=1000, random_state=seed)
    classifier.fit(scaler.transform(flat), labels)
    return scaler, classifier


def _fitted(labels, config, seed=3):
    model = build_model(config, [InputSpec("flow_grid", (4, 4, 2), "float32", "none")])
    features = _features(labels)
    curves = FAMILY.fit(model, [features], np.asarray(labels), config, seed)
    return model, features, curves


def test_the_keras_model_gives_scikit_learns_probabilities():
    config = _config()
    labels = [0, 0, 0, 0, 1, 1, 2, 2, 2]  # unbalanced: the class weights matter
    model, features, curves = _fitted(labels, config)
    scaler, classifier = _reference(features, labels, config, 3)
    test = _features([0, 1, 2, 2], seed=1)
    expected = classifier.predict_proba(scaler.transform(test.reshape(4, -1)))
    np.testing.assert_allclose(model.predict(test, verbose=0), expected, atol=1e-5)
    assert set(curves) == {"loss", "accuracy"} and len(curves["loss"]) == 1
    assert model.count_params() == 32 * 3 + 3 + 2 * 32  # coefficients, intercepts; mean, scale


def test_a_class_without_training_clips_gets_probability_zero():
    config = _config()
    labels = [0, 0, 0, 2, 2, 2]  # no positive clip: scikit-learn fits a binary model
    model, features, _ = _fitted(labels, config)
    scaler, classifier = _reference(features, labels, config, 3)
    test = _features([0, 2], seed=1)
    probabilities = model.predict(test, verbose=0)
    np.testing.assert_allclose(probabilities[:, 1], 0, atol=1e-12)
    expected = classifier.predict_proba(scaler.transform(test.reshape(2, -1)))
    np.testing.assert_allclose(probabilities[:, [0, 2]], expected, atol=1e-5)


def test_the_fitted_model_saves_and_reloads(tmp_path):
    model, features, _ = _fitted([0, 1, 2, 0, 1, 2], _config())
    model.save(tmp_path / "baseline.keras")
    loaded = keras.saving.load_model(tmp_path / "baseline.keras", compile=False)
    np.testing.assert_array_equal(loaded.predict(features, verbose=0),
                                  model.predict(features, verbose=0))


def test_one_class_alone_cannot_be_fitted():
    with pytest.raises(ValueError, match="at least 2 classes, got only class 'surprise'"):
        _fitted([2, 2, 2], _config())


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("eval.protocol=paper", "flow_baseline has no epochs: use eval.protocol=loso"),
        ("train.validation_subjects=1", "no epochs to monitor"),
        ("model.regularization=0", "model.regularization must be > 0, got 0"),
        ("data.inputs=[flow_grid, flow]", "reads one feature input"),
        ("model.epochs=3", "epochs"),  # the MLSP keys are not this family's
    ],
)
def test_settings_it_cannot_honour_are_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        _config(override)


def test_the_family_fills_its_train_defaults_and_says_what_does_not_apply():
    config = _config()
    assert (config.train.epochs, config.train.class_weights, config.train.decay_epochs) == (
        1, None, []
    )
    assert "train.epochs, learning_rate" in FAMILY.not_applicable["train"]
    assert "Grad-CAM" in FAMILY.not_applicable["explain"]

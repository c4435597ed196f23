"""The weighted cross-entropy against a hand computation, and the learning-rate schedule."""

import math

import keras
import numpy as np
import pytest

from mer.models.losses import WeightedCategoricalCrossentropy
from mer.training.schedules import step_decay


def test_weighted_cross_entropy_by_hand():
    y_true = np.array([[1, 0, 0], [0, 0, 1]], "float32")
    y_pred = np.array([[0.5, 0.25, 0.25], [0.1, 0.2, 0.7]], "float32")
    loss = WeightedCategoricalCrossentropy([0.3, 0.35, 0.35])
    # batch mean of w_y * CE, not divided by the sum of weights
    expected = (0.3 * -math.log(0.5) + 0.35 * -math.log(0.7)) / 2
    assert float(loss(y_true, y_pred)) == pytest.approx(expected, rel=1e-6)


def test_unweighted_equals_keras_cross_entropy():
    y_true = np.eye(3, dtype="float32")[[0, 2, 1, 1]]
    y_pred = np.random.default_rng(0).dirichlet([1, 1, 1], size=4).astype("float32")
    ours = WeightedCategoricalCrossentropy(None)(y_true, y_pred)
    theirs = keras.losses.CategoricalCrossentropy()(y_true, y_pred)
    assert float(ours) == pytest.approx(float(theirs), rel=1e-5)


def test_loss_config_round_trip_and_validation():
    loss = WeightedCategoricalCrossentropy([0.2, 0.8], epsilon=1e-6)
    clone = WeightedCategoricalCrossentropy.from_config(loss.get_config())
    assert clone.class_weights == [0.2, 0.8] and clone.epsilon == 1e-6
    with pytest.raises(ValueError, match="-1"):
        WeightedCategoricalCrossentropy([1.0, -1.0])


def test_step_decay_published_schedule():
    schedule = step_decay(1e-3, [40, 80, 120, 160], 0.9)
    assert schedule(0) == pytest.approx(1e-3)
    assert schedule(39) == pytest.approx(1e-3)
    assert schedule(40) == pytest.approx(9e-4)
    assert schedule(159) == pytest.approx(1e-3 * 0.9**3)
    assert schedule(199) == pytest.approx(1e-3 * 0.9**4)
    with pytest.raises(ValueError, match="1.5"):
        step_decay(1e-3, [40], 1.5)

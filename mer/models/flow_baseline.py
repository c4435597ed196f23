"""The `flow_baseline` family: a multinomial logistic regression on hand-crafted flow features,
the classical floor every deep preset has to clear.

Input: `flow_grid` (`mer.data.inputs.flow_grid`): the onset -> apex optical flow on the aligned
face, its median removed, averaged over a g x g grid (g = `data.flow.grid`, 8 by default).
Per fold, scikit-learn standardises the training subjects' features (`StandardScaler`) and fits
a `LogisticRegression` (lbfgs, balanced class weights by default) on them; the held-out subject
is only predicted. The fitted mean, scale, coefficients and intercepts are then written into a
small Keras model (Flatten -> `Standardize` -> Dense -> softmax), so that folds, the final
model, `.keras` bundles, `predict` and `export` work as for every family, and `predict` gives
scikit-learn's probabilities (to float32 rounding).

It is fitted to convergence, not trained by epochs: the optimiser settings (`train.epochs`,
`learning_rate`, `decay_*`, `batch_size` but for prediction, `micro_batches`, `class_weights`,
`precision`) do not apply, and a run says so; explain has no convolution to take a Grad-CAM of.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Sequence
from typing import Literal

import keras
import numpy as np

from mer.config import ConfigError, ExperimentConfig, FamilyConfig
from mer.models import ModelFamily
from mer.specs import InputSpec

logger = logging.getLogger(__name__)

ABSENT_CLASS_LOGIT = -1e4  # a class without a training clip: softmax gives it 0 (exp underflows)
NOT_APPLICABLE = {
    "train": "model.family=flow_baseline is fitted to convergence by scikit-learn (lbfgs): "
    "train.epochs, learning_rate, decay_epochs, decay_factor, micro_batches, class_weights and "
    "precision do not apply (model.class_weight and model.regularization do)",
    "explain": "model.family=flow_baseline has no convolution layer to take a Grad-CAM of: "
    "it is a logistic regression on grid-mean flow; its coefficients are the 'logits' layer's "
    "kernel, one row per grid cell and flow component (u, v)",
}


@dataclasses.dataclass
class FlowBaselineConfig(FamilyConfig):
    """The logistic regression's settings (scikit-learn's names in the comments)."""

    family: str = "flow_baseline"
    regularization: float = 1.0  # C: the inverse of the L2 penalty's strength
    class_weight: Literal["balanced", "none"] = "balanced"  # class_weight
    max_iterations: int = 1000  # max_iter of lbfgs


@keras.saving.register_keras_serializable(package="mer")
class Standardize(keras.layers.Layer):
    """(x - mean) / scale per feature, with the mean and scale a scaler measured on the
    training clips (non-trainable weights, saved with the model)."""

    def build(self, input_shape):
        features = (input_shape[-1],)
        self.mean = self.add_weight(shape=features, initializer="zeros", trainable=False,
                                    name="mean")
        self.scale = self.add_weight(shape=features, initializer="ones", trainable=False,
                                     name="scale")

    def call(self, inputs):
        return (inputs - self.mean) / self.scale

    def compute_output_shape(self, input_shape):
        return input_shape


def build(model: FlowBaselineConfig, specs: Sequence[InputSpec], classes: int) -> keras.Model:
    """Flatten -> Standardize -> Dense(classes) -> softmax, on the one feature input."""
    (spec,) = specs
    inputs = keras.Input(spec.shape, name=spec.name)
    features = keras.layers.Flatten(name="flatten")(inputs)
    features = Standardize(name="standardize")(features)
    logits = keras.layers.Dense(classes, name="logits")(features)
    probabilities = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(
        logits
    )
    return keras.Model(inputs, probabilities, name="flow_baseline")


def fit(
    network: keras.Model,
    inputs: Sequence[np.ndarray],
    labels: np.ndarray,
    config: ExperimentConfig,
    seed: int,
) -> dict[str, list[float]]:
    """Fits the scaler and the regression on the training clips and writes them into
    `network`; returns the training log loss and accuracy (one value each, as curves)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.preprocessing import StandardScaler

    (features,) = inputs
    features = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    labels = np.asarray(labels)
    classes = len(config.data.classes)
    present = np.unique(labels)
    if len(present) < 2:
        raise ValueError(
            f"flow_baseline needs training clips of at least 2 classes, got only class "
            f"{config.data.classes[present[0]] if len(present) else None!r}"
        )
    scaler = StandardScaler().fit(features)
    settings = config.model
    classifier = LogisticRegression(
        C=settings.regularization,
        class_weight=None if settings.class_weight == "none" else "balanced",
        max_iter=settings.max_iterations,
        random_state=seed,
    )
    scaled = scaler.transform(features)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        classifier.fit(scaled, labels)
    if any(issubclass(item.category, ConvergenceWarning) for item in caught):
        logger.warning(
            "flow_baseline: lbfgs did not converge in %d iterations (model.max_iterations)",
            settings.max_iterations,
        )
    kernel = np.zeros((features.shape[1], classes))
    bias = np.full(classes, ABSENT_CLASS_LOGIT)
    if len(classifier.classes_) == 2:  # one coefficient row: the logit of classes_[1] vs [0]
        kernel[:, classifier.classes_[1]] = classifier.coef_[0]
        bias[classifier.classes_] = [0.0, classifier.intercept_[0]]
    else:
        kernel[:, classifier.classes_] = classifier.coef_.T
        bias[classifier.classes_] = classifier.intercept_
    absent = sorted(set(range(classes)) - set(classifier.classes_.tolist()))
    if absent:
        logger.warning(
            "flow_baseline: no training clip of %s: predicted with probability 0",
            ", ".join(config.data.classes[index] for index in absent),
        )
    network.get_layer("standardize").set_weights([scaler.mean_, scaler.scale_])
    network.get_layer("logits").set_weights([kernel, bias])
    probabilities = classifier.predict_proba(scaled)
    return {
        "loss": [float(log_loss(labels, probabilities, labels=classifier.classes_))],
        "accuracy": [float(np.mean(classifier.classes_[probabilities.argmax(1)] == labels))],
    }


def loss(config: ExperimentConfig) -> keras.losses.Loss:
    """Compiled but unused: the regression is fitted by scikit-learn."""
    return keras.losses.CategoricalCrossentropy()


def check(config: ExperimentConfig) -> None:
    """The settings this family reads, and the ones it cannot honour.

    Raises:
        ConfigError: naming the key and the value.
    """
    model = config.model
    if not model.regularization > 0:
        raise ConfigError(f"model.regularization must be > 0, got {model.regularization}")
    if model.max_iterations < 1:
        raise ConfigError(f"model.max_iterations must be at least 1, got {model.max_iterations}")
    inputs = config.data.input_names()
    if len(inputs) != 1:
        raise ConfigError(
            f"model.family=flow_baseline reads one feature input (data.inputs [flow_grid]), "
            f"got {inputs}"
        )
    if config.eval.protocol == "paper":
        raise ConfigError(
            "eval.protocol=paper picks the best epoch on the test subject; flow_baseline has no "
            "epochs: use eval.protocol=loso"
        )
    if config.train.validation_subjects:
        raise ConfigError(
            f"train.validation_subjects={config.train.validation_subjects}: flow_baseline has "
            "no epochs to monitor; set it to 0"
        )
    if config.train.distribution != "none":
        raise ConfigError("train.distribution: flow_baseline is fitted on the CPU by scikit-learn")


FAMILY = ModelFamily(
    name="flow_baseline",
    config=FlowBaselineConfig,
    build=build,
    loss=loss,
    train_defaults={"epochs": 1, "batch_size": 64, "decay_epochs": [], "class_weights": None},
    check=check,
    fit=fit,
    not_applicable=NOT_APPLICABLE,
)

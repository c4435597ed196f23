"""Training losses."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mer")
class WeightedCategoricalCrossentropy(keras.losses.Loss):
    """Categorical cross-entropy on probabilities, each sample scaled by its class's weight.

    The batch loss is the plain mean of w_y · CE over the batch (not divided by the sum of the
    weights), as in the published code; the model's L2 terms are added by Keras on top.
    """

    def __init__(
        self,
        class_weights: Sequence[float] | None = None,
        epsilon: float = 1e-7,
        name: str = "weighted_categorical_crossentropy",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        if class_weights is not None:
            class_weights = [float(weight) for weight in class_weights]
            if any(weight < 0 for weight in class_weights):
                raise ValueError(f"class_weights must be non-negative, got {class_weights}")
        if not 0 < epsilon < 0.5:
            raise ValueError(f"epsilon must be in (0, 0.5), got {epsilon!r}")
        self.class_weights = class_weights
        self.epsilon = epsilon

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        probabilities = ops.clip(y_pred, self.epsilon, 1.0 - self.epsilon)
        cross_entropy = -ops.sum(y_true * ops.log(probabilities), axis=-1)
        if self.class_weights is None:
            return cross_entropy
        weights = ops.convert_to_tensor(self.class_weights, dtype=y_pred.dtype)
        return ops.sum(y_true * weights, axis=-1) * cross_entropy

    def get_config(self):
        return {
            **super().get_config(),
            "class_weights": self.class_weights,
            "epsilon": self.epsilon,
        }

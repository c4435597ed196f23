"""Dual-ATME (Zhou et al., Entropy 25(3):460, 2023): two Inception branches over optical-flow
images, CBAM attention, a cosine agreement term between the branches, and a focal loss.

Written from the authors' public PyTorch code (HaoliangZhou/Dual-ATME: `Me_Model_att.py`,
`MEROIInception`; `LossFunctions.py`, `FocalLoss`; the training script) and their paper. The
"aars" input is the whole-face flow image, the "hars" input the flow between the two ROI puzzles.

How the cosine term reaches the loss: the authors' network returns (x1, x2, logits) and their
loop adds 0.01 * mean(1 - cos(x1, x2)) to the focal loss. Here the layer that concatenates the
two embeddings, `SimilarityFusion`, adds that term with `add_loss`, so the model has one output,
the class probabilities: `model.predict` gives them, `model.fit(x, y)` takes the plain focal loss
of `focal_loss()` and Keras adds the cosine term on every backend (and scales it for
`tf.distribute` like the compiled loss), and `.keras` files reload with no custom objects once
this module is imported. A second "embeddings" output would have made `predict` return a dict and
every caller pick from it.

Checked once against the authors' modules (PyTorch 2.13, CPU): the same parameter counts, and with
their weights copied in, the same probabilities (to 6e-8) and the same focal + cosine loss.

Differences from the PyTorch code that are not choices: Keras initialises kernels Glorot-uniform
and biases with zeros (PyTorch: uniform in +-1/sqrt(fan_in) for both), and its BatchNormalization
updates the moving variance with the biased batch variance (PyTorch: the unbiased one). The
flattening order is (height, width, channels) rather than (channels, height, width): a permutation
of the first head Dense's inputs, which changes neither the counts nor the cosine.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Literal

import keras
from keras import ops

from mer.config import ConfigError, ExperimentConfig, FamilyConfig
from mer.models import ModelFamily
from mer.specs import InputSpec

INPUT_NAMES = ("aars", "hars")  # whole-face flow image; flow between the ROI puzzles
ATTENTION_CHOICES = ("aars", "both")  # where the one CBAM instance is applied


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class DualAtmeDefaults:
    """The authors' training settings, for the family to declare. Their optimiser is Adam, as
    every run's; their inputs, 28x28x3 per branch in [-1, 1] (ToTensor then
    Normalize(0.5, 0.5)), are config/dual_atme.yaml's `data.flow` settings."""

    learning_rate: float = 1e-3
    decay_every_epochs: int = 10  # StepLR(step_size=10, gamma=0.5): the rate halves every 10
    decay_factor: float = 0.5
    epochs: int = 60  # fixed; the last epoch's weights predict the held-out subject
    batch_size: int = 128
    class_weights: None = None  # the focal loss is unweighted
    focal_gamma: float = 2.0
    cosine_weight: float = 0.01

    @property
    def decay_epochs(self) -> tuple[int, ...]:
        """0-based epochs at which one more `decay_factor` applies: 10, 20, ... below epochs."""
        return tuple(range(self.decay_every_epochs, self.epochs, self.decay_every_epochs))


DEFAULTS = DualAtmeDefaults()


@keras.saving.register_keras_serializable(package="mer")
class Inception2D(keras.layers.Layer):
    """The authors' Inception block on a (batch, height, width, channels) image.

    Four paths, concatenated on channels in this order, each conv with a bias and followed by
    BatchNormalization and ReLU: 1x1(filters); 1x1(bottleneck_filters) -> 3x3(filters);
    1x1(bottleneck_filters) -> 5x5(filters); MaxPool 3x3 stride 1 "same" -> 1x1(filters).
    Output: (batch, height, width, 4 * filters). `momentum` is Keras's (PyTorch's 0.1 is 0.9).
    """

    def __init__(
        self,
        filters: int = 6,
        bottleneck_filters: int = 6,
        momentum: float = 0.9,
        epsilon: float = 1e-5,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        if epsilon <= 0:
            raise ValueError(f"epsilon must be positive, got {epsilon!r}")
        self.filters = _positive_int("filters", filters)
        self.bottleneck_filters = _positive_int("bottleneck_filters", bottleneck_filters)
        self.momentum = momentum
        self.epsilon = epsilon
        self.paths = [
            self._conv_unit(self.filters, 1, "direct"),
            self._conv_unit(self.bottleneck_filters, 1, "three_reduce")
            + self._conv_unit(self.filters, 3, "three"),
            self._conv_unit(self.bottleneck_filters, 1, "five_reduce")
            + self._conv_unit(self.filters, 5, "five"),
            [keras.layers.MaxPooling2D(3, strides=1, padding="same", name="pool")]
            + self._conv_unit(self.filters, 1, "pool_projection"),
        ]

    def _conv_unit(self, filters: int, kernel_size: int, name: str) -> list[keras.layers.Layer]:
        """Conv2D (same, bias) -> BatchNormalization -> ReLU."""
        return [
            keras.layers.Conv2D(filters, kernel_size, padding="same", name=f"{name}_conv"),
            keras.layers.BatchNormalization(
                momentum=self.momentum, epsilon=self.epsilon, name=f"{name}_batch_norm"
            ),
            keras.layers.ReLU(name=f"{name}_relu"),
        ]

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"expected a 4-D input (batch, H, W, C), got shape {input_shape}")
        for path in self.paths:
            shape = input_shape
            for layer in path:
                layer.build(shape)
                shape = layer.compute_output_shape(shape)

    def call(self, inputs, training=None):
        outputs = []
        for path in self.paths:
            tensor = inputs
            for layer in path:
                tensor = layer(tensor, training=training)
            outputs.append(tensor)
        return ops.concatenate(outputs, axis=-1)  # (batch, H, W, 4 * filters)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 4 * self.filters)

    def forward_flops(self, input_shape) -> int:
        """Multiply-adds (x2) of the six convs for one sample (see `mer.models.flops`)."""
        positions = math.prod(int(size) for size in input_shape[1:-1])
        kernels = sum(
            math.prod(layer.kernel.shape)
            for path in self.paths
            for layer in path
            if isinstance(layer, keras.layers.Conv2D)
        )
        return 2 * kernels * positions

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "bottleneck_filters": self.bottleneck_filters,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
        }


@keras.saving.register_keras_serializable(package="mer")
class CBAM2D(keras.layers.Layer):
    """CBAM on a (batch, height, width, channels) image, as the authors wrote it.

    Channel attention first: one shared MLP Dense(channels // reduction) -> ReLU ->
    Dense(channels) on the global average and on the global maximum, summed, sigmoid, times x.
    Then spatial attention on that result: [mean over channels, max over channels] ->
    Conv2D(1, kernel_size, same, bias) -> sigmoid, times it. Same shape out as in.
    """

    def __init__(self, reduction: int = 16, kernel_size: int = 3, **kwargs):
        super().__init__(**kwargs)
        self.reduction = _positive_int("reduction", reduction)
        self.kernel_size = _positive_int("kernel_size", kernel_size)

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"expected a 4-D input (batch, H, W, C), got shape {input_shape}")
        channels = input_shape[-1]
        hidden = channels // self.reduction
        if hidden < 1:
            raise ValueError(
                f"channels ({channels}) // reduction ({self.reduction}) must be at least 1"
            )
        self.mlp_hidden = keras.layers.Dense(hidden, activation="relu", name="mlp_hidden")
        self.mlp_output = keras.layers.Dense(channels, name="mlp_output")
        self.spatial_conv = keras.layers.Conv2D(
            1, self.kernel_size, padding="same", activation="sigmoid", name="spatial_conv"
        )
        self.mlp_hidden.build((input_shape[0], channels))
        self.mlp_output.build((input_shape[0], hidden))
        self.spatial_conv.build((*input_shape[:-1], 2))

    def call(self, inputs):
        from_average = self.mlp_output(self.mlp_hidden(ops.mean(inputs, axis=(1, 2))))
        from_maximum = self.mlp_output(self.mlp_hidden(ops.max(inputs, axis=(1, 2))))
        attended = inputs * ops.sigmoid(from_average + from_maximum)[:, None, None, :]
        descriptors = ops.concatenate(
            [ops.mean(attended, axis=-1, keepdims=True), ops.max(attended, axis=-1, keepdims=True)],
            axis=-1,
        )  # (batch, H, W, 2)
        return attended * self.spatial_conv(descriptors)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def forward_flops(self, input_shape) -> int:
        """Multiply-adds (x2) of the MLP (twice) and of the spatial conv for one sample."""
        channels = int(input_shape[-1])
        positions = math.prod(int(size) for size in input_shape[1:-1])
        mlp = 2 * channels * (channels // self.reduction)
        return 2 * (2 * mlp + self.kernel_size**2 * 2 * positions)

    def get_config(self):
        return {
            **super().get_config(),
            "reduction": self.reduction,
            "kernel_size": self.kernel_size,
        }


@keras.saving.register_keras_serializable(package="mer")
class SimilarityFusion(keras.layers.Layer):
    """Concatenates two (batch, features) embeddings x1, x2 and adds the authors' agreement
    term, cosine_weight * mean over the batch of (1 - cos(x1, x2)), to the model's losses.

    The cosine divides by max(norm, 1e-7) per vector (Keras's normalize; PyTorch's
    CosineSimilarity uses 1e-8), so an all-zero embedding gives a finite term.
    """

    def __init__(self, cosine_weight: float = 0.01, **kwargs):
        super().__init__(**kwargs)
        if cosine_weight < 0:
            raise ValueError(f"cosine_weight must be non-negative, got {cosine_weight!r}")
        self.cosine_weight = cosine_weight

    def build(self, input_shape):
        if len(input_shape) != 2 or any(len(shape) != 2 for shape in input_shape):
            raise ValueError(f"expected two (batch, features) inputs, got {input_shape}")
        if input_shape[0][-1] != input_shape[1][-1]:
            raise ValueError(
                f"the two embeddings must have the same width, got {input_shape[0][-1]} "
                f"and {input_shape[1][-1]}"
            )

    def call(self, inputs):
        first, second = (ops.cast(tensor, "float32") for tensor in inputs)
        disagreement = 1.0 + keras.losses.cosine_similarity(first, second)  # 1 - cos, per sample
        self.add_loss(self.cosine_weight * ops.mean(disagreement))
        return ops.concatenate(inputs, axis=-1)

    def compute_output_shape(self, input_shape):
        first, second = input_shape
        return (first[0], first[-1] + second[-1])

    def get_config(self):
        return {**super().get_config(), "cosine_weight": self.cosine_weight}


def focal_loss(gamma: float = DEFAULTS.focal_gamma) -> keras.losses.Loss:
    """The authors' focal loss on probabilities and one-hot labels: the batch mean of
    -(1 - p_y)**gamma * log(p_y), with no class weights.

    Keras's CategoricalFocalCrossentropy is exactly that with alpha=1 (its default alpha 0.25
    would scale the loss by a quarter); it clips p to [1e-7, 1 - 1e-7], a safe log where the
    authors' `probs.log()` gives inf at p = 0.

    Args:
        gamma: focusing exponent, >= 0 (0: plain cross-entropy).

    Returns:
        A serialisable Keras loss for `model.compile(loss=...)`.

    Raises:
        ValueError: a negative gamma, quoting it.
    """
    if gamma < 0:
        raise ValueError(f"gamma must be non-negative, got {gamma!r}")
    return keras.losses.CategoricalFocalCrossentropy(alpha=1.0, gamma=gamma, name="focal")


def build_dual_atme_model(
    input_shapes: Sequence[Sequence[int]],
    num_classes: int,
    *,
    attention_on: str = "aars",
    inception_filters: Sequence[int] = (6, 12),
    bottleneck_filters: int = 6,
    cbam_reduction: int = 16,
    cbam_kernel_size: int = 3,
    dense_units: int = 1024,
    dropout: float = 0.5,
    cosine_weight: float = DEFAULTS.cosine_weight,
    momentum: float = 0.9,
    epsilon: float = 1e-5,
    name: str = "dual_atme",
) -> keras.Model:
    """The Dual-ATME network: two Inception branches, CBAM, fusion, a dense head.

    Per branch, for each entry f of `inception_filters`: Inception2D(f) -> MaxPool 2 (the
    defaults: 28x28x3 -> 28x28x24 -> 14x14x24 -> 14x14x48 -> 7x7x48). One CBAM2D instance is
    applied to the AARS branch (`attention_on="aars"`, the paper) or to both branches (`"both"`,
    the shipped code, which the authors' comment says scored lower); reusing it adds no weights.
    Each branch is flattened into its embedding ("aars_embedding", "hars_embedding"),
    `SimilarityFusion` concatenates them and adds the cosine term, then Dense(dense_units) ->
    BatchNormalization -> ReLU -> Dropout -> Dense(num_classes) -> softmax.

    The last Inception block of each branch is named "<input>_inception<n>" (the defaults:
    "aars_inception2", "hars_inception2"): its concatenated output is the Grad-CAM layer.

    Args:
        input_shapes: (height, width, channels) of the "aars" and of the "hars" input, in that
            order; both must flatten to embeddings of the same width.
        num_classes: size of the softmax output.
        attention_on: "aars" or "both", as above.
        inception_filters: filters per path of each Inception block; each block outputs 4x.
        bottleneck_filters: filters of the 1x1 convs before the 3x3 and the 5x5 convs.
        cbam_reduction, cbam_kernel_size: CBAM's MLP hidden width is channels // reduction;
            size of its spatial conv.
        dense_units: width of the head's hidden Dense.
        dropout: rate of the head's Dropout.
        cosine_weight: factor of the mean (1 - cos(x1, x2)) term added to the loss.
        momentum, epsilon: of every BatchNormalization (Keras's momentum; PyTorch's 0.1 is 0.9).
        name: model name.

    Returns:
        An uncompiled Keras model with inputs ["aars", "hars"] and output (batch, num_classes)
        softmax probabilities; compile it with `focal_loss()`.

    Raises:
        ValueError: an argument out of range, quoting the value received.
    """
    if len(input_shapes) != 2 or any(len(shape) != 3 for shape in input_shapes):
        raise ValueError(
            f"input_shapes must be two (height, width, channels) shapes, got {input_shapes!r}"
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer of at least 2, got {num_classes!r}")
    if attention_on not in ATTENTION_CHOICES:
        raise ValueError(f"attention_on must be one of {ATTENTION_CHOICES}, got {attention_on!r}")
    if not inception_filters:
        raise ValueError(
            f"inception_filters must name at least one block, got {inception_filters!r}"
        )
    _positive_int("dense_units", dense_units)
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")

    inputs = [
        keras.Input(tuple(shape), name=input_name)
        for input_name, shape in zip(INPUT_NAMES, input_shapes, strict=True)
    ]
    attention = CBAM2D(cbam_reduction, cbam_kernel_size, name="cbam")
    embeddings = []
    for input_name, tensor in zip(INPUT_NAMES, inputs, strict=True):
        for index, filters in enumerate(inception_filters, start=1):
            tensor = Inception2D(
                filters,
                bottleneck_filters,
                momentum,
                epsilon,
                name=f"{input_name}_inception{index}",
            )(tensor)
            tensor = keras.layers.MaxPooling2D(2, name=f"{input_name}_pool{index}")(tensor)
        if input_name == "aars" or attention_on == "both":
            tensor = attention(tensor)
        embeddings.append(keras.layers.Flatten(name=f"{input_name}_embedding")(tensor))

    fused = SimilarityFusion(cosine_weight, name="fusion")(embeddings)  # (batch, 2 * features)
    hidden = keras.layers.Dense(dense_units, name="head_dense")(fused)
    hidden = keras.layers.BatchNormalization(
        momentum=momentum, epsilon=epsilon, name="head_batch_norm"
    )(hidden)
    hidden = keras.layers.ReLU(name="head_relu")(hidden)
    hidden = keras.layers.Dropout(dropout, name="head_dropout")(hidden)
    logits = keras.layers.Dense(num_classes, name="logits")(hidden)
    probabilities = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(
        logits
    )
    return keras.Model(inputs, probabilities, name=name)


@dataclasses.dataclass
class DualAtmeConfig(FamilyConfig):
    """The `model:` section of `family: dual_atme`; the defaults are the authors' numbers."""

    family: str = "dual_atme"
    attention_on: Literal["aars", "both"] = "aars"  # where the one CBAM applies (paper: aars)
    inception_filters: list[int] = dataclasses.field(default_factory=lambda: [6, 12])
    bottleneck_filters: int = 6
    cbam_reduction: int = 16
    cbam_kernel_size: int = 3
    dense_units: int = 1024
    dropout: float = 0.5
    cosine_weight: float = DEFAULTS.cosine_weight  # of the mean (1 - cos(x1, x2)) loss term
    focal_gamma: float = DEFAULTS.focal_gamma
    momentum: float = 0.9  # BatchNormalization (Keras's sense; PyTorch's 0.1)
    epsilon: float = 1e-5


def _build(model: DualAtmeConfig, specs: Sequence[InputSpec], classes: int) -> keras.Model:
    settings = {
        key: value
        for key, value in dataclasses.asdict(model).items()
        if key not in ("family", "focal_gamma")
    }
    return build_dual_atme_model([spec.shape for spec in specs], classes, **settings)


def _check(config: ExperimentConfig) -> None:
    """Dual-ATME reads two flow images: the whole face's and the puzzle's, in that order."""
    inputs = config.data.input_names()
    if len(inputs) != 2:
        raise ConfigError(
            f"model.family=dual_atme reads two inputs (data.inputs: [flow, flow_puzzle]), got "
            f"{inputs}"
        )
    if not 0.0 <= config.model.dropout < 1.0:
        raise ConfigError(f"model.dropout must be in [0, 1), got {config.model.dropout}")


FAMILY = ModelFamily(
    name="dual_atme",
    config=DualAtmeConfig,
    build=_build,
    loss=lambda config: focal_loss(config.model.focal_gamma),
    train_defaults={
        "epochs": DEFAULTS.epochs,
        "batch_size": DEFAULTS.batch_size,
        "learning_rate": DEFAULTS.learning_rate,
        "decay_epochs": list(DEFAULTS.decay_epochs),
        "decay_factor": DEFAULTS.decay_factor,
        "class_weights": DEFAULTS.class_weights,
    },
    check=_check,
)

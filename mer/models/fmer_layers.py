"""The layers of FMER (`mer.models.fmer`), each one block of the authors' PyTorch modules.

Written from ini17/Micro-expression-recognition-by-fusing-Action-Unit-detection-and-spatio-
temporal-features (`PythonCodes/models/`: `graph_model.py`, `transformer_encoder.py`,
`p3d_model.py`, `myau_gcn.py`, `au_fusion.py`), channels-last. Every parameter count equals the
PyTorch module's (checked by instantiating them). `momentum` is Keras's: PyTorch's BatchNorm
momentum 0.1 is Keras's 0.9.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
from keras import ops

P3D_UNITS = ("A", "B", "C", "2D")  # the three spatial-temporal units of P3D, and res5's 2-D one
# The authors' GCN builds nn.Embedding(15, 40) and never calls it; built here so that the
# parameter count matches theirs (600 weights that no loss reaches).
PUBLISHED_EMBEDDINGS = 15


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _rate(name: str, value: float) -> float:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return value


def _odd_kernel_size(value: int) -> int:
    if _positive_int("kernel_size", value) % 2 == 0:
        raise ValueError(f"kernel_size must be odd, got {value!r}")
    return value


def _batch_norm_settings(momentum: float, epsilon: float) -> tuple[float, float]:
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
    if epsilon <= 0:
        raise ValueError(f"epsilon must be positive, got {epsilon!r}")
    return momentum, epsilon


def _positions(shape) -> int:
    """Product of the dimensions between batch and features: where a kernel is applied."""
    return math.prod(int(size) for size in shape[1:-1])


def _convolution_flops(convolution: keras.layers.Layer, input_shape) -> int:
    """Multiply-adds (x2) of a Conv2D or Conv3D on one sample (groups included: the kernel
    holds in_channels / groups per filter)."""
    output_shape = convolution.compute_output_shape(input_shape)
    return 2 * math.prod(convolution.kernel.shape) * _positions(output_shape)


def _dense_flops(dense: keras.layers.Dense, input_shape) -> int:
    return 2 * math.prod(dense.kernel.shape) * _positions(input_shape)


def _build_chain(layers: Sequence[keras.layers.Layer], shape) -> tuple:
    """Builds each layer on the previous one's output shape; the last output shape."""
    for layer in layers:
        layer.build(shape)
        shape = layer.compute_output_shape(shape)
    return shape


@keras.saving.register_keras_serializable(package="mer")
class MagnificationChoice(keras.layers.Layer):
    """One magnification factor of the patches: (batch, alphas, steps, ...) -> (batch, steps,
    ...).

    The cache holds the patches of every factor, the test factor first (`fmer_patches`).
    Training draws one factor per clip, uniformly (`per_step`: one per flow step, as the
    published loader does, which its author calls unintended); inference takes index 0.
    """

    def __init__(self, per_step: bool = False, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(per_step, bool):
            raise ValueError(f"per_step must be True or False, got {per_step!r}")
        self.per_step = per_step
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed, name="seed_generator")

    def build(self, input_shape):
        if len(input_shape) < 3:
            raise ValueError(f"expected (batch, alphas, steps, ...), got shape {input_shape}")

    def call(self, inputs, training=None):
        if not training:
            return inputs[:, 0]
        alphas, steps = inputs.shape[1], inputs.shape[2]
        draws = keras.random.randint(
            (ops.shape(inputs)[0], steps if self.per_step else 1), 0, alphas,
            seed=self.seed_generator,
        )
        choice = ops.transpose(ops.one_hot(draws, alphas, dtype=inputs.dtype), (0, 2, 1))
        for _ in inputs.shape[3:]:
            choice = choice[..., None]  # (batch, alphas, steps or 1, 1, ...)
        return ops.sum(inputs * choice, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *input_shape[2:])

    def get_config(self):
        return {**super().get_config(), "per_step": self.per_step, "seed": self.seed}


@keras.saving.register_keras_serializable(package="mer")
class LandmarkConvolution(keras.layers.Layer):
    """One kxk convolution per landmark, summed over depth: the authors' depthwise Conv3D.

    (batch, depth, height, width, landmarks) -> (batch, height, width, landmarks): their
    Conv3d(groups=landmarks, kernel (depth, k, k), bias, padding (0, k // 2, k // 2)), then
    BatchNormalization and ReLU. In the graph branch depth is u/v (2) per flow step, then the
    flow steps (9). The kernel has Keras's grouped Conv3D shape, (depth, k, k, 1, landmarks),
    and initialisation; it runs as a depthwise 2-D convolution over depth x landmarks channels,
    which every backend has natively (TensorFlow runs a grouped Conv3D through XLA only).
    The bias, theirs, is removed by the BatchNormalization in training: no gradient reaches it.
    """

    def __init__(self, kernel_size: int = 3, momentum: float = 0.9, epsilon: float = 1e-5,
                 **kwargs):
        super().__init__(**kwargs)
        self.kernel_size = _odd_kernel_size(kernel_size)
        self.momentum, self.epsilon = _batch_norm_settings(momentum, epsilon)
        self.batch_norm = keras.layers.BatchNormalization(momentum=momentum, epsilon=epsilon,
                                                          name="batch_norm")

    def build(self, input_shape):
        if len(input_shape) != 5:
            raise ValueError(
                f"expected a 5-D input (batch, depth, height, width, landmarks), got shape "
                f"{input_shape}"
            )
        depth, landmarks = input_shape[1], input_shape[-1]
        size = self.kernel_size
        self.kernel = self.add_weight(shape=(depth, size, size, 1, landmarks),
                                      initializer="glorot_uniform", name="kernel")
        self.bias = self.add_weight(shape=(landmarks,), initializer="zeros", name="bias")
        self.batch_norm.build(self.compute_output_shape(input_shape))

    def call(self, inputs, training=None):
        _, depth, height, width, landmarks = inputs.shape
        channels = depth * landmarks  # channel d * landmarks + l: depth d of landmark l
        tensor = ops.reshape(ops.transpose(inputs, (0, 2, 3, 1, 4)), (-1, height, width, channels))
        kernel = ops.transpose(self.kernel[:, :, :, 0, :], (1, 2, 0, 3))  # (k, k, depth, L)
        kernel = ops.reshape(kernel, (self.kernel_size, self.kernel_size, channels, 1))
        tensor = ops.depthwise_conv(tensor, kernel, padding="same")
        tensor = ops.sum(ops.reshape(tensor, (-1, height, width, depth, landmarks)), axis=3)
        return ops.relu(self.batch_norm(tensor + self.bias, training=training))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *input_shape[2:])

    def forward_flops(self, input_shape) -> int:
        """Multiply-adds (x2) of the convolution for one sample (see `mer.models.flops`)."""
        return 2 * math.prod(self.kernel.shape) * math.prod(input_shape[2:4])

    def get_config(self):
        return {
            **super().get_config(),
            "kernel_size": self.kernel_size,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
        }


@keras.saving.register_keras_serializable(package="mer")
class FlowStepConvolution(keras.layers.Layer):
    """The graph branch's first convolution, on each flow step of the patches.

    (batch, steps, directions, landmarks, height, width), the authors' layout of the patches,
    -> (batch, steps, height, width, landmarks): per step, a `LandmarkConvolution` over the u/v
    directions. `shared=True` applies one module to every step, as published (their
    `OFConv_List` holds the same module `parallel` times, so its batch statistics are those of
    each step in turn); False gives each step its own.
    """

    def __init__(self, shared: bool = True, kernel_size: int = 3, momentum: float = 0.9,
                 epsilon: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(shared, bool):
            raise ValueError(f"shared must be True or False, got {shared!r}")
        self.shared = shared
        self.kernel_size = _odd_kernel_size(kernel_size)
        self.momentum, self.epsilon = _batch_norm_settings(momentum, epsilon)

    def build(self, input_shape):
        if len(input_shape) != 6:
            raise ValueError(
                f"expected a 6-D input (batch, steps, directions, landmarks, height, width), got "
                f"shape {input_shape}"
            )
        steps = input_shape[1]
        names = ["step"] if self.shared else [f"step{index}" for index in range(1, steps + 1)]
        self.convolutions = [
            LandmarkConvolution(self.kernel_size, self.momentum, self.epsilon, name=name)
            for name in names
        ]
        batch, _, directions, landmarks, height, width = input_shape
        for convolution in self.convolutions:
            convolution.build((batch, directions, height, width, landmarks))

    def call(self, inputs, training=None):
        channels_last = ops.transpose(inputs, (0, 1, 2, 4, 5, 3))  # landmarks last
        steps = inputs.shape[1]
        outputs = [
            self.convolutions[0 if self.shared else step](channels_last[:, step],
                                                          training=training)
            for step in range(steps)
        ]
        return ops.stack(outputs, axis=1)

    def compute_output_shape(self, input_shape):
        batch, steps, _, landmarks, height, width = input_shape
        return (batch, steps, height, width, landmarks)

    def forward_flops(self, input_shape) -> int:
        """Multiply-adds (x2) of the convolution of every step, for one sample."""
        batch, steps, directions, landmarks, height, width = input_shape
        step_shape = (batch, directions, height, width, landmarks)
        return steps * self.convolutions[0].forward_flops(step_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "shared": self.shared,
            "kernel_size": self.kernel_size,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
        }


@keras.saving.register_keras_serializable(package="mer")
class TokenSplit(keras.layers.Layer):
    """(batch, tokens, features) -> one tensor per group of consecutive tokens, of `sizes`:
    the landmark tokens of the brows (10) and of the mouth (20)."""

    def __init__(self, sizes: Sequence[int] = (10, 20), **kwargs):
        super().__init__(**kwargs)
        if not sizes:
            raise ValueError(f"sizes must name at least one group, got {sizes!r}")
        self.sizes = [_positive_int("sizes", size) for size in sizes]

    def build(self, input_shape):
        if len(input_shape) != 3 or input_shape[1] != sum(self.sizes):
            raise ValueError(
                f"expected (batch, {sum(self.sizes)} tokens, features), got shape {input_shape}"
            )

    def call(self, inputs):
        starts = [sum(self.sizes[:index]) for index in range(len(self.sizes))]
        return [inputs[:, start:start + size] for start, size in zip(starts, self.sizes,
                                                                     strict=True)]

    def compute_output_shape(self, input_shape):
        return [(input_shape[0], size, input_shape[2]) for size in self.sizes]

    def get_config(self):
        return {**super().get_config(), "sizes": list(self.sizes)}


@keras.saving.register_keras_serializable(package="mer")
class MultiHeadSelfAttention(keras.layers.Layer):
    """The authors' attention on (batch, tokens, width): q, k, v Dense(heads * head_size, no
    bias), softmax(q k^T / sqrt(head_size)) per head, heads concatenated, Dense(width).

    Keras's MultiHeadAttention projects per head with biases: another parameter count.
    """

    def __init__(self, heads: int = 8, head_size: int = 16, **kwargs):
        super().__init__(**kwargs)
        self.heads = _positive_int("heads", heads)
        self.head_size = _positive_int("head_size", head_size)

    def build(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"expected (batch, tokens, width), got shape {input_shape}")
        inner = self.heads * self.head_size
        self.query, self.key, self.value = (
            keras.layers.Dense(inner, use_bias=False, name=name) for name in ("query", "key",
                                                                               "value")
        )
        self.projection = keras.layers.Dense(input_shape[-1], name="projection")
        for dense in (self.query, self.key, self.value):
            dense.build(input_shape)
        self.projection.build((*input_shape[:-1], inner))

    def _split_heads(self, tensor, tokens):
        tensor = ops.reshape(tensor, (-1, tokens, self.heads, self.head_size))
        return ops.transpose(tensor, (0, 2, 1, 3))  # (batch, heads, tokens, head_size)

    def call(self, inputs):
        tokens = inputs.shape[1]
        query, key, value = (
            self._split_heads(dense(inputs), tokens) for dense in (self.query, self.key,
                                                                   self.value)
        )
        scores = ops.matmul(query, ops.transpose(key, (0, 1, 3, 2))) / math.sqrt(self.head_size)
        attended = ops.matmul(ops.softmax(scores, axis=-1), value)
        attended = ops.reshape(ops.transpose(attended, (0, 2, 1, 3)),
                               (-1, tokens, self.heads * self.head_size))
        return self.projection(attended)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def forward_flops(self, input_shape) -> int:
        """Multiply-adds (x2) of the four projections and the two products, for one sample."""
        tokens = int(input_shape[1])
        products = 2 * 2 * self.heads * tokens * tokens * self.head_size
        projections = (self.query, self.key, self.value)
        inner_shape = (*input_shape[:-1], self.heads * self.head_size)
        return (
            sum(_dense_flops(dense, input_shape) for dense in projections)
            + _dense_flops(self.projection, inner_shape)
            + products
        )

    def get_config(self):
        return {**super().get_config(), "heads": self.heads, "head_size": self.head_size}


@keras.saving.register_keras_serializable(package="mer")
class TransformerEncoder(keras.layers.Layer):
    """The authors' post-LN encoder on (batch, tokens, width), width kept.

    x = LayerNorm(x + Dropout(MultiHeadSelfAttention(x))); then
    x = LayerNorm(x + Dropout(Dense(width)(ReLU(Dense(feed_forward)(x))))), LayerNorm eps 1e-6.
    """

    def __init__(self, feed_forward: int = 128, heads: int = 8, head_size: int = 16,
                 dropout: float = 0.1, epsilon: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        self.feed_forward = _positive_int("feed_forward", feed_forward)
        self.heads = heads
        self.head_size = head_size
        self.dropout = _rate("dropout", dropout)
        if epsilon <= 0:
            raise ValueError(f"epsilon must be positive, got {epsilon!r}")
        self.epsilon = epsilon
        self.attention = MultiHeadSelfAttention(heads, head_size, name="attention")
        self.attention_dropout = keras.layers.Dropout(dropout, name="attention_dropout")
        self.attention_norm = keras.layers.LayerNormalization(epsilon=epsilon,
                                                              name="attention_norm")
        self.feed_forward_dropout = keras.layers.Dropout(dropout, name="feed_forward_dropout")
        self.feed_forward_norm = keras.layers.LayerNormalization(epsilon=epsilon,
                                                                 name="feed_forward_norm")

    def build(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"expected (batch, tokens, width), got shape {input_shape}")
        self.hidden = keras.layers.Dense(self.feed_forward, activation="relu", name="hidden")
        self.output_dense = keras.layers.Dense(input_shape[-1], name="output_dense")
        for layer in (self.attention, self.attention_norm, self.feed_forward_norm, self.hidden):
            layer.build(input_shape)
        self.output_dense.build((*input_shape[:-1], self.feed_forward))

    def call(self, inputs, training=None):
        attended = self.attention_dropout(self.attention(inputs), training=training)
        tensor = self.attention_norm(inputs + attended)
        transformed = self.feed_forward_dropout(self.output_dense(self.hidden(tensor)),
                                                training=training)
        return self.feed_forward_norm(tensor + transformed)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def forward_flops(self, input_shape) -> int:
        """Multiply-adds (x2) of the attention and of the two feed-forward Dense layers."""
        hidden_shape = (*input_shape[:-1], self.feed_forward)
        return (
            self.attention.forward_flops(input_shape)
            + _dense_flops(self.hidden, input_shape)
            + _dense_flops(self.output_dense, hidden_shape)
        )

    def get_config(self):
        return {
            **super().get_config(),
            "feed_forward": self.feed_forward,
            "heads": self.heads,
            "head_size": self.head_size,
            "dropout": self.dropout,
            "epsilon": self.epsilon,
        }


def p3d_initializer(kernel_size: Sequence[int], filters: int) -> keras.initializers.Initializer:
    """The authors' P3D Conv3D initialisation: normal(0, sqrt(2 / n)), with their
    n = kernel_size[0] * kernel_size[1] * filters (time by height, the width left out)."""
    return keras.initializers.RandomNormal(
        stddev=math.sqrt(2.0 / (kernel_size[0] * kernel_size[1] * filters))
    )


@keras.saving.register_keras_serializable(package="mer")
class P3DBottleneck(keras.layers.Layer):
    """One bottleneck block of P3D (Qiu et al., ICCV 2017), every conv without bias.

    3-D units ("A", "B", "C") on (batch, time, height, width, channels): Conv 1x1x1(filters,
    stride (1, strides, strides)) -> BN -> ReLU; then with S = Conv(1, 3, 3) -> BN -> ReLU and
    T = Conv(3, 1, 1) -> BN -> ReLU, "same" padding: A is T(S(x)), B is S(x) + T(x), C is S(x) +
    T(S(x)); Conv 1x1x1(4 * filters) -> BN; plus the shortcut (a strided 1x1x1 conv + BN when
    `projection`, else x) -> ReLU. "2D" (res5) is the same on (batch, height, width, channels)
    with one 3x3 conv in place of the unit.
    """

    def __init__(self, filters: int, strides: int = 1, unit: str = "A", projection: bool = False,
                 momentum: float = 0.9, epsilon: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        self.filters = _positive_int("filters", filters)
        self.strides = _positive_int("strides", strides)
        if unit not in P3D_UNITS:
            raise ValueError(f"unit must be one of {P3D_UNITS}, got {unit!r}")
        self.unit = unit
        if not isinstance(projection, bool):
            raise ValueError(f"projection must be True or False, got {projection!r}")
        self.projection = projection
        self.momentum, self.epsilon = _batch_norm_settings(momentum, epsilon)
        self.reduce = self._convolution(filters, 1, self.strides, "reduce")
        self.reduce_norm = self._batch_norm("reduce_norm")
        if unit == "2D":
            self.spatial = self._convolution(filters, 3, 1, "spatial")
            self.temporal = None
        else:
            self.spatial = self._convolution(filters, (1, 3, 3), 1, "spatial")
            self.temporal = self._convolution(filters, (3, 1, 1), 1, "temporal")
            self.temporal_norm = self._batch_norm("temporal_norm")
        self.spatial_norm = self._batch_norm("spatial_norm")
        self.expand = self._convolution(4 * filters, 1, 1, "expand")
        self.expand_norm = self._batch_norm("expand_norm")
        if projection:
            self.shortcut = self._convolution(4 * filters, 1, self.strides, "shortcut")
            self.shortcut_norm = self._batch_norm("shortcut_norm")

    def _convolution(self, filters, kernel_size, strides, name):
        if self.unit == "2D":  # the authors initialise only their Conv3d layers
            return keras.layers.Conv2D(filters, kernel_size, strides=strides, padding="same",
                                       use_bias=False, name=name)
        kernel_size = (kernel_size,) * 3 if isinstance(kernel_size, int) else kernel_size
        return keras.layers.Conv3D(
            filters, kernel_size, strides=(1, strides, strides), padding="same",
            use_bias=False, kernel_initializer=p3d_initializer(kernel_size, filters), name=name,
        )

    def _batch_norm(self, name):
        return keras.layers.BatchNormalization(momentum=self.momentum, epsilon=self.epsilon,
                                               name=name)

    def build(self, input_shape):
        dimensions = 4 if self.unit == "2D" else 5
        if len(input_shape) != dimensions:
            raise ValueError(
                f"unit {self.unit!r} expects a {dimensions}-D channels-last input, got shape "
                f"{input_shape}"
            )
        if not self.projection and (input_shape[-1] != 4 * self.filters or self.strides != 1):
            raise ValueError(
                f"without projection the block must keep the shape: {input_shape[-1]} channels "
                f"in, {4 * self.filters} out, strides {self.strides}"
            )
        reduced = _build_chain([self.reduce, self.reduce_norm], input_shape)
        _build_chain([self.spatial, self.spatial_norm], reduced)
        if self.temporal is not None:
            _build_chain([self.temporal, self.temporal_norm], reduced)
        _build_chain([self.expand, self.expand_norm], reduced)
        if self.projection:
            _build_chain([self.shortcut, self.shortcut_norm], input_shape)

    def _unit(self, conv, norm, tensor, training):
        return ops.relu(norm(conv(tensor), training=training))

    def call(self, inputs, training=None):
        tensor = self._unit(self.reduce, self.reduce_norm, inputs, training)
        spatial = self._unit(self.spatial, self.spatial_norm, tensor, training)
        if self.unit == "A":
            tensor = self._unit(self.temporal, self.temporal_norm, spatial, training)
        elif self.unit == "B":
            tensor = spatial + self._unit(self.temporal, self.temporal_norm, tensor, training)
        elif self.unit == "C":
            tensor = spatial + self._unit(self.temporal, self.temporal_norm, spatial, training)
        else:
            tensor = spatial
        tensor = self.expand_norm(self.expand(tensor), training=training)
        shortcut = inputs
        if self.projection:
            shortcut = self.shortcut_norm(self.shortcut(inputs), training=training)
        return ops.relu(tensor + shortcut)

    def compute_output_shape(self, input_shape):
        return self.expand.compute_output_shape(self.reduce.compute_output_shape(input_shape))

    def forward_flops(self, input_shape) -> int:
        """Multiply-adds (x2) of every convolution of the block, for one sample."""
        reduced = self.reduce.compute_output_shape(input_shape)
        on_reduced = [self.spatial, self.expand] + ([self.temporal] if self.temporal else [])
        flops = _convolution_flops(self.reduce, input_shape)
        flops += sum(_convolution_flops(convolution, reduced) for convolution in on_reduced)
        if self.projection:
            flops += _convolution_flops(self.shortcut, input_shape)
        return flops

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "strides": self.strides,
            "unit": self.unit,
            "projection": self.projection,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
        }


@keras.saving.register_keras_serializable(package="mer")
class AUGraph(keras.layers.Layer):
    """The authors' AU graph: AU logits (batch, aus) -> AU embeddings (batch, aus, widths[-1]).

    The adjacency is `encoders` TransformerEncoders over diag(logits), (batch, aus, aus); each
    AU's logit is then its node feature, through graph convolutions h <- LeakyReLU(A h W)
    (no bias, slope 0.2) of `widths` (1 -> 40 -> 80 -> 160 as published), W initialised
    uniform in +-1/sqrt(width) as theirs. Gradients reach the AU detector through both.
    The unused embedding gets none: Keras warns once that it has no gradient.
    """

    def __init__(self, encoders: int = 6, feed_forward: int = 40, heads: int = 8,
                 head_size: int = 16, dropout: float = 0.1, widths: Sequence[int] = (40, 80, 160),
                 negative_slope: float = 0.2, epsilon: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        self.encoders = _positive_int("encoders", encoders)
        if not widths:
            raise ValueError(f"widths must name at least one graph convolution, got {widths!r}")
        self.widths = [_positive_int("widths", width) for width in widths]
        self.feed_forward = feed_forward
        self.heads = heads
        self.head_size = head_size
        self.dropout = dropout
        if negative_slope < 0:
            raise ValueError(f"negative_slope must be non-negative, got {negative_slope!r}")
        self.negative_slope = negative_slope
        self.epsilon = epsilon
        self.adjacency_encoders = [
            TransformerEncoder(feed_forward, heads, head_size, dropout, epsilon,
                               name=f"adjacency_encoder{index}")
            for index in range(1, encoders + 1)
        ]
        self.graph_convolutions = [
            keras.layers.Dense(
                width, use_bias=False, name=f"graph_convolution{index}",
                kernel_initializer=keras.initializers.RandomUniform(-1 / math.sqrt(width),
                                                                    1 / math.sqrt(width)),
            )
            for index, width in enumerate(self.widths, start=1)
        ]
        self.unused_embedding = keras.layers.Embedding(PUBLISHED_EMBEDDINGS, self.widths[0],
                                                       name="unused_embedding")

    def build(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(f"expected AU logits (batch, aus), got shape {input_shape}")
        batch, aus = input_shape
        for encoder in self.adjacency_encoders:
            encoder.build((batch, aus, aus))
        width = 1
        for convolution in self.graph_convolutions:
            convolution.build((batch, aus, width))
            width = convolution.units
        self.unused_embedding.build((batch,))

    def call(self, inputs, training=None):
        aus = inputs.shape[-1]
        adjacency = inputs[:, :, None] * ops.eye(aus, dtype=inputs.dtype)  # diag(logits)
        for encoder in self.adjacency_encoders:
            adjacency = encoder(adjacency, training=training)
        nodes = inputs[:, :, None]  # (batch, aus, 1)
        for convolution in self.graph_convolutions:
            nodes = ops.leaky_relu(ops.matmul(adjacency, convolution(nodes)),
                                   negative_slope=self.negative_slope)
        return nodes

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.widths[-1])

    def forward_flops(self, input_shape) -> int:
        """Multiply-adds (x2) of the encoders, the graph convolutions and the adjacency
        products, for one sample."""
        batch, aus = input_shape
        flops = sum(encoder.forward_flops((batch, aus, aus)) for encoder in
                    self.adjacency_encoders)
        width = 1
        for convolution in self.graph_convolutions:
            flops += _dense_flops(convolution, (batch, aus, width))
            flops += 2 * aus * aus * convolution.units
            width = convolution.units
        return flops

    def get_config(self):
        return {
            **super().get_config(),
            "encoders": self.encoders,
            "feed_forward": self.feed_forward,
            "heads": self.heads,
            "head_size": self.head_size,
            "dropout": self.dropout,
            "widths": list(self.widths),
            "negative_slope": self.negative_slope,
            "epsilon": self.epsilon,
        }


@keras.saving.register_keras_serializable(package="mer")
class AUFusion(keras.layers.Layer):
    """[brows (batch, F), mouth (batch, F), AU embeddings (batch, aus, F)] -> (batch, aus):
    the brow features' dot product with each of the first `brow_aus` AU embeddings (AUs 1, 2,
    4), then the mouth features' with each of the others (10, 12, 14, 15, 17, 25)."""

    def __init__(self, brow_aus: int = 3, **kwargs):
        super().__init__(**kwargs)
        self.brow_aus = _positive_int("brow_aus", brow_aus)

    def build(self, input_shape):
        brows, mouth, embeddings = input_shape
        if len(embeddings) != 3 or not brows[-1] == mouth[-1] == embeddings[-1]:
            raise ValueError(
                f"expected (batch, F) twice and (batch, aus, F), got {list(input_shape)}"
            )
        if not 0 < self.brow_aus < embeddings[1]:
            raise ValueError(
                f"brow_aus must leave the mouth at least one of {embeddings[1]} AUs, got "
                f"{self.brow_aus}"
            )

    def call(self, inputs):
        brows, mouth, embeddings = inputs
        brow_scores = ops.einsum("bf,baf->ba", brows, embeddings[:, :self.brow_aus])
        mouth_scores = ops.einsum("bf,baf->ba", mouth, embeddings[:, self.brow_aus:])
        return ops.concatenate([brow_scores, mouth_scores], axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape[2][:2]

    def get_config(self):
        return {**super().get_config(), "brow_aus": self.brow_aus}

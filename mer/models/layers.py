"""The custom layers of the MLSP network: channel attention, spatial attention, MSMH, and the
first-stage Conv3D computed as one Conv2D over frames stacked in depth.

Written with `keras.ops` only, so the model runs on the TensorFlow, JAX and PyTorch backends, and
registered as serialisable so that a saved `.keras` model reloads after `import mer`.
"""

from __future__ import annotations

import math

import keras
from keras import ops

CAM_MODES = ("difference", "sum", "cbam")


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


@keras.saving.register_keras_serializable(package="mer")
class ChannelAttention(keras.layers.Layer):
    """Channel attention map Mc(x) of a (batch, time, height, width, channels) tensor.

    Global average and max pooling over (time, height, width) each go through an MLP
    Dense(channels / reduction) -> activation -> Dense(channels). The mode decides how they meet:
    - "difference" (the paper's enhanced CAM): unshared MLPs, sigmoid(0.5 * (max - avg));
    - "sum": unshared MLPs, sigmoid(max + avg), as in one published file;
    - "cbam": the original CBAM, one shared MLP with ReLU, sigmoid(max + avg).
    Returns the map with shape (batch, 1, 1, 1, channels), to be multiplied with the input.
    """

    def __init__(
        self,
        reduction: int = 8,
        mode: str = "difference",
        l2: float = 0.01,
        negative_slope: float = 0.2,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if mode not in CAM_MODES:
            raise ValueError(f"mode must be one of {CAM_MODES}, got {mode!r}")
        if l2 < 0:
            raise ValueError(f"l2 must be non-negative, got {l2!r}")
        self.reduction = _positive_int("reduction", reduction)
        self.mode = mode
        self.l2 = l2
        self.negative_slope = negative_slope

    def _mlp(self, channels: int, name: str) -> list[keras.layers.Layer]:
        hidden = max(1, channels // self.reduction)
        regularizer = keras.regularizers.L2(self.l2) if self.l2 else None
        if self.mode == "cbam":
            activation = keras.layers.ReLU(name=f"{name}_relu")
        else:
            activation = keras.layers.LeakyReLU(self.negative_slope, name=f"{name}_leaky")
        return [
            keras.layers.Dense(hidden, kernel_regularizer=regularizer, name=f"{name}_hidden"),
            activation,
            keras.layers.Dense(channels, kernel_initializer="he_normal", name=f"{name}_out"),
        ]

    def build(self, input_shape):
        if len(input_shape) != 5:
            raise ValueError(f"expected a 5-D input (batch, T, H, W, C), got shape {input_shape}")
        channels = input_shape[-1]
        self.max_mlp = self._mlp(channels, "max_mlp")
        self.avg_mlp = self.max_mlp if self.mode == "cbam" else self._mlp(channels, "avg_mlp")
        distinct = [self.max_mlp] if self.mode == "cbam" else [self.max_mlp, self.avg_mlp]
        for mlp in distinct:
            shape = (input_shape[0], channels)
            for layer in mlp:
                layer.build(shape)
                shape = layer.compute_output_shape(shape)

    @staticmethod
    def _apply(mlp: list[keras.layers.Layer], inputs):
        for layer in mlp:
            inputs = layer(inputs)
        return inputs

    def call(self, inputs):
        pooled_max = ops.max(inputs, axis=(1, 2, 3))  # (batch, channels)
        pooled_avg = ops.mean(inputs, axis=(1, 2, 3))
        from_max = self._apply(self.max_mlp, pooled_max)
        from_avg = self._apply(self.avg_mlp, pooled_avg)
        if self.mode == "difference":
            logits = 0.5 * (from_max - from_avg)
        else:
            logits = from_max + from_avg
        return ops.sigmoid(logits)[:, None, None, None, :]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1, 1, 1, input_shape[-1])

    def forward_flops(self, input_shape) -> int:
        """Multiply-adds (x2) of the two MLPs for one sample (see `mer.models.flops`)."""
        channels = int(input_shape[-1])
        return 2 * 2 * 2 * channels * max(1, channels // self.reduction)

    def get_config(self):
        return {
            **super().get_config(),
            "reduction": self.reduction,
            "mode": self.mode,
            "l2": self.l2,
            "negative_slope": self.negative_slope,
        }


@keras.saving.register_keras_serializable(package="mer")
class SpatialAttention(keras.layers.Layer):
    """Spatial attention map Ms(x): Conv3D over [max over channels, mean over channels], sigmoid.

    The published code gives the conv as many filters as the input has channels, so the map is
    per channel too; `filters=None` follows that.
    """

    def __init__(self, filters: int | None = None, kernel_size: int = 3, **kwargs):
        super().__init__(**kwargs)
        self.filters = None if filters is None else _positive_int("filters", filters)
        self.kernel_size = _positive_int("kernel_size", kernel_size)

    def build(self, input_shape):
        if len(input_shape) != 5:
            raise ValueError(f"expected a 5-D input (batch, T, H, W, C), got shape {input_shape}")
        self.conv = keras.layers.Conv3D(
            self.filters or input_shape[-1],
            self.kernel_size,
            padding="same",
            activation="sigmoid",
            dtype="float32",  # under a 16-bit policy too: in bfloat16 its kernel gradient
            name="conv",  # turned NaN within three steps on the demo (TensorFlow, CPU)
        )
        self.conv.build((*input_shape[:-1], 2))

    def call(self, inputs):
        values = ops.cast(inputs, "float32")  # a no-op unless the policy is mixed
        descriptors = ops.concatenate(
            [ops.max(values, axis=-1, keepdims=True), ops.mean(values, axis=-1, keepdims=True)],
            axis=-1,
        )
        return ops.cast(self.conv(descriptors), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.filters or input_shape[-1])

    def forward_flops(self, input_shape) -> int:
        """Multiply-adds (x2) of the conv for one sample (see `mer.models.flops`)."""
        positions = math.prod(int(size) for size in input_shape[1:-1])
        kernel = self.kernel_size**3 * 2 * (self.filters or int(input_shape[-1]))
        return 2 * kernel * positions

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size}


@keras.saving.register_keras_serializable(package="mer")
class MultiScaleMultiHeadAttention(keras.layers.Layer):
    """Multi-scale multi-head (MSMH) self-attention pooling of a (batch, time, features) sequence.

    Head s (s = 1..heads) has width features / 2**s. Each head projects the sequence to q, k, v,
    scores q·kᵀ/√width, takes the maximum over the query axis (what the published pooling does
    for T <= 10), softmaxes over keys, sums v with those weights and projects the result with a
    Dense of the same width. The heads are concatenated: (batch, sum of widths).
    """

    def __init__(self, heads: int = 8, **kwargs):
        super().__init__(**kwargs)
        self.heads = _positive_int("heads", heads)

    def head_widths(self, features: int) -> list[int]:
        """Widths of the heads for an input of `features` features."""
        if features % 2**self.heads:
            raise ValueError(
                f"features ({features}) must be divisible by 2**heads ({2**self.heads})"
            )
        return [features // 2**scale for scale in range(1, self.heads + 1)]

    def build(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"expected a 3-D input (batch, time, features), got {input_shape}")
        self.projections = []
        for index, width in enumerate(self.head_widths(input_shape[-1])):
            names = ("query", "key", "value", "output")
            head = [keras.layers.Dense(width, name=f"head{index}_{name}") for name in names]
            for layer in head[:3]:
                layer.build(input_shape)
            head[3].build((input_shape[0], width))
            self.projections.append(head)

    def call(self, inputs):
        outputs = []
        for query_layer, key_layer, value_layer, output_layer in self.projections:
            query, key, value = query_layer(inputs), key_layer(inputs), value_layer(inputs)
            scale = 1.0 / math.sqrt(query_layer.units)
            scores = ops.matmul(query, ops.transpose(key, (0, 2, 1))) * scale  # (b, query, key)
            weights = ops.softmax(ops.max(scores, axis=1), axis=-1)  # (batch, key)
            pooled = ops.sum(weights[:, :, None] * value, axis=1)  # (batch, width)
            outputs.append(output_layer(pooled))
        return ops.concatenate(outputs, axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], sum(self.head_widths(input_shape[-1])))

    def forward_flops(self, input_shape) -> int:
        """Multiply-adds (x2) of the projections and products for one sample."""
        steps, features = int(input_shape[1]), int(input_shape[-1])
        return sum(
            2 * (3 * steps * features * width + steps * steps * width + steps * width + width**2)
            for width in self.head_widths(features)
        )

    def get_config(self):
        return {**super().get_config(), "heads": self.heads}


@keras.saving.register_keras_serializable(package="mer")
class Conv3D(keras.layers.Conv3D):
    """`keras.layers.Conv3D` (stride 1, no dilation, one group, channels last) computed as one
    Conv2D over frames stacked in depth: the stacked-frame Conv3D. Takes Conv3D's arguments.

    A 3-D convolution with a (kt, kh, kw) kernel is, at each output frame t, a 2-D (kh, kw)
    convolution of frames t..t+kt-1 laid side by side along the channels. This layer pads time
    as Conv3D does, stacks the kt shifted clips along the channels, folds time into the batch
    and calls one Conv2D whose kernel is the Conv3D kernel with its time axis moved into the
    input channels: the same sum, term for term. Where TensorFlow runs without its oneDNN
    kernels (by default on CPUs without AVX512_VNNI, AVX512_BF16, AVX-VNNI or AMX), its Conv2D
    computes MLSP's branch convs (forward, and forward + weight gradient) 1.6-3x faster than
    its Conv3D, and with JAX on CPUs the training steps are about 2x faster; see
    `stacked_is_faster`.

    Its variables are Conv3D's (kernel (kt, kh, kw, in, out), bias (out,), the same names), so
    parameter and FLOP counts are Conv3D's and code that looks for Conv3D layers (Grad-CAM's
    layer choice) finds it. It keeps the class name too, because Keras weight files key a
    model's layers by their class names (`conv3d`, `conv3d_1`, ...): so the weights of a model
    built with either form load into the other.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in ("strides", "dilation_rate"):
            if getattr(self, name) != (1, 1, 1):
                raise ValueError(f"{name} must be 1, got {getattr(self, name)!r}")
        if self.groups != 1:
            raise ValueError(f"groups must be 1, got {self.groups!r}")
        if self.data_format != "channels_last":
            raise ValueError(f"data_format must be 'channels_last', got {self.data_format!r}")

    def build(self, input_shape):
        if input_shape[1] is None:
            raise ValueError(f"the number of frames must be known, got shape {input_shape}")
        super().build(input_shape)

    def convolution_op(self, inputs, kernel):
        depth, rows, columns, channels, filters = kernel.shape
        if self.padding == "same":  # as Conv3D pads: the odd cell at the end
            before = (depth - 1) // 2
            inputs = ops.pad(inputs, ((0, 0), (before, depth - 1 - before), (0, 0), (0, 0), (0, 0)))
        steps = inputs.shape[1] - depth + 1
        stacked = ops.concatenate(
            [inputs[:, offset : offset + steps] for offset in range(depth)], axis=-1
        )  # (batch, steps, height, width, depth * channels), frame t+offset at block offset
        shape = ops.shape(stacked)
        frames = ops.reshape(stacked, (-1, shape[2], shape[3], depth * channels))
        planar_kernel = ops.reshape(
            ops.transpose(kernel, (1, 2, 0, 3, 4)), (rows, columns, depth * channels, filters)
        )  # (rows, columns, depth * channels, filters), in the stacking's channel order
        outputs = ops.conv(frames, planar_kernel, padding=self.padding)
        shape = ops.shape(outputs)
        return ops.reshape(outputs, (-1, steps, shape[1], shape[2], filters))


def tensorflow_onednn() -> bool | None:
    """Whether TensorFlow computes with its oneDNN kernels in this process (on Linux it does by
    default only on CPUs with AVX512_VNNI, AVX512_BF16, AVX-VNNI or AMX; TF_ENABLE_ONEDNN_OPTS
    overrides that); None on the other backends."""
    if keras.backend.backend() != "tensorflow":
        return None
    from tensorflow.python.util import _pywrap_util_port  # no public call says it

    return bool(_pywrap_util_port.IsMklEnabled())


def stacked_is_faster() -> bool:
    """Whether the stacked-frame `Conv3D` is the faster form of the first-stage convs here, as
    measured for MLSP training steps on a 2-core AMD EPYC (issue 15): on CPUs, with TensorFlow
    when its oneDNN kernels are off (its Eigen Conv3D is slow: 1.25-1.6x faster steps) and with
    JAX (XLA's: about 2x); not where TensorFlow runs oneDNN (equal with AVX-512, 1.3-1.7x slower
    with AVX2), nor with PyTorch (slower). Not measured on GPUs, which keep Conv3D."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tensorflow_onednn() is False and not tf.config.list_physical_devices("GPU")
    if backend == "jax":
        import jax

        return jax.default_backend() == "cpu"
    return False

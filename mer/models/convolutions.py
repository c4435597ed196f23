"""A Conv3D computed as one 2-D convolution over frames stacked in depth, with Conv3D's weights.

A 3-D convolution with a (kt, kh, kw) kernel is, at each output frame t, a 2-D (kh, kw)
convolution of frames t..t+kt-1 laid side by side along the channels. `StackedFrameConv3D`
computes it that way: it pads time as Conv3D does, stacks the kt shifted clips along the
channels, folds time into the batch and calls one Conv2D whose kernel is the Conv3D kernel with
its time axis moved into the input channels. The sum is the same, term for term; on CPUs the 2-D
kernels of oneDNN run it at a far higher rate than its 3-D ones do for the few input channels of
a first layer (see the README's "Performance").

The layer subclasses `keras.layers.Conv3D` and keeps its variables as they are (kernel
(kt, kh, kw, in, out), bias (out,), the same names), so weights saved from one load into the
other, parameter counts and FLOP counts are those of Conv3D, and code that looks for Conv3D
layers (Grad-CAM's layer choice) finds it. Written with `keras.ops` only: every backend runs it.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mer")
class StackedFrameConv3D(keras.layers.Conv3D):
    """`keras.layers.Conv3D` (stride 1, no dilation, one group, channels last) computed as a
    Conv2D over frames stacked kt deep (see the module docstring). Takes Conv3D's arguments."""

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

"""Functional builders of the published networks, from shapes and hyperparameters alone."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from mer.models.layers import ChannelAttention, MultiScaleMultiHeadAttention, SpatialAttention


def build_mlsp_model(
    input_shape: Sequence[int],
    num_classes: int,
    *,
    streams: int = 1,
    branch_filters: int = 32,
    merge_filters: int = 32,
    pool_size: int = 3,
    cam: str = "difference",
    cam_reduction: int = 8,
    dense_units: Sequence[int] = (128, 64),
    dropout: float = 0.3,
    gru_units: int = 512,
    heads: int = 8,
    head_units: Sequence[int] = (128, 64),
    l2: float = 0.01,
    negative_slope: float = 0.2,
    name: str = "mlsp",
) -> keras.Model:
    """The shallow dual-branch 3D-CNN -> CAM + spatial attention -> GRU -> MSMH recognizer.

    Branch A (5x5x5 conv) and branch B (3x3x3 conv) read the same clip when `streams` is 1 (the
    MLSP 2024 model); with `streams` 2 branch B reads a second input (the AU-region crops of the
    dual-branch AU model).

    Args:
        input_shape: (frames, height, width, channels) of one clip.
        num_classes: size of the softmax output.
        streams: 1 or 2 inputs, as above.
        branch_filters, merge_filters: filters of the branch convs and of the merge conv.
        pool_size: MaxPool3D pool and stride ("same" padding, extra pad at the end as in TF).
        cam, cam_reduction: channel attention mode ("difference", "sum", "cbam") and reduction.
        dense_units: per-frame Dense widths before the GRU.
        dropout: rate of the two Dropout layers around the first per-frame Dense.
        gru_units: GRU width; MSMH head s has width gru_units / 2**s.
        heads: number of MSMH heads.
        head_units: Dense widths of the classification head.
        l2: L2 factor of the regularised Dense kernels.
        negative_slope: LeakyReLU slope.
        name: model name.

    Returns:
        An uncompiled Keras model with output (batch, num_classes) softmax probabilities.
    """
    if len(input_shape) != 4:
        raise ValueError(
            f"input_shape must be (frames, height, width, channels), got {input_shape}"
        )
    if streams not in (1, 2):
        raise ValueError(f"streams must be 1 or 2, got {streams!r}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes!r}")
    regularizer = keras.regularizers.L2(l2) if l2 else None

    def leaky(name: str) -> keras.layers.Layer:
        return keras.layers.LeakyReLU(negative_slope, name=name)

    def conv_block(tensor, filters: int, kernel: int, prefix: str):
        tensor = keras.layers.Conv3D(
            filters, kernel, padding="same", kernel_initializer="he_normal", name=f"{prefix}_conv"
        )(tensor)
        tensor = leaky(f"{prefix}_leaky")(tensor)
        return keras.layers.MaxPooling3D(
            pool_size, strides=pool_size, padding="same", name=f"{prefix}_pool"
        )(tensor)

    inputs = [keras.Input(tuple(input_shape), name="frames")]
    if streams == 2:
        inputs.append(keras.Input(tuple(input_shape), name="regions"))
    branch_a = conv_block(inputs[0], branch_filters, 5, "branch5")
    branch_b = conv_block(inputs[-1], branch_filters, 3, "branch3")
    features = keras.layers.Concatenate(name="branches")([branch_a, branch_b])
    features = conv_block(features, merge_filters, 3, "merge")  # (batch, T, H, W, C)

    channel_map = ChannelAttention(
        cam_reduction, cam, l2=l2, negative_slope=negative_slope, name="channel_attention"
    )(features)
    spatial_map = SpatialAttention(name="spatial_attention")(features)
    features = keras.layers.Multiply(name="attention")([features, channel_map, spatial_map])

    steps = features.shape[1]
    sequence = keras.layers.Reshape((steps, -1), name="flatten")(features)  # (batch, T, H*W*C)
    sequence = keras.layers.Dropout(dropout, name="dropout_flat")(sequence)
    for index, units in enumerate(dense_units):
        sequence = keras.layers.Dense(
            units,
            kernel_initializer="he_normal",
            kernel_regularizer=regularizer,
            name=f"frame_dense{index}",
        )(sequence)
        sequence = leaky(f"frame_leaky{index}")(sequence)
        if index == 0:
            sequence = keras.layers.Dropout(dropout, name="dropout_dense")(sequence)
    sequence = keras.layers.GRU(gru_units, return_sequences=True, name="gru")(sequence)
    pooled = MultiScaleMultiHeadAttention(heads, name="msmh")(sequence)

    for index, units in enumerate(head_units):
        pooled = keras.layers.Dense(
            units, kernel_initializer="he_normal", name=f"head_dense{index}"
        )(pooled)
        pooled = leaky(f"head_leaky{index}")(pooled)
    logits = keras.layers.Dense(num_classes, name="logits")(pooled)
    probabilities = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(
        logits
    )
    return keras.Model(inputs if streams == 2 else inputs[0], probabilities, name=name)

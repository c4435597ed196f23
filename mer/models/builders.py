"""Functional builders of the published networks and their ablation variants, from shapes and
hyperparameters alone."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from mer.models.layers import (
    CAM_MODES,
    ChannelAttention,
    MultiScaleMultiHeadAttention,
    SpatialAttention,
    stacked_is_faster,
)
from mer.models.layers import Conv3D as StackedFrameConv3D  # named Conv3D for the weight files

ATTENTION_CHOICES = (*CAM_MODES, "none")  # `cam`: a channel-attention mode, or no attention
TEMPORAL_BLOCKS = ("gru", "lstm", "none")
POOLINGS = ("msmh", "multi_head", "none")
CONVOLUTIONS = ("auto", "stacked", "conv3d")  # how the first-stage convs are computed


def build_mlsp_model(
    input_shape: Sequence[int],
    num_classes: int,
    *,
    streams: int = 1,
    branches: int = 2,
    branch_filters: int = 32,
    merge_filters: int = 32,
    pool_size: int = 3,
    cam: str = "difference",
    cam_reduction: int = 8,
    dense_units: Sequence[int] = (128, 64),
    dropout: float = 0.3,
    temporal: str = "gru",
    gru_units: int = 512,
    pooling: str = "msmh",
    heads: int = 8,
    causal_attention_heads: int = 0,
    head_units: Sequence[int] = (128, 64),
    head_dropout: float = 0.0,
    l2: float = 0.01,
    negative_slope: float = 0.2,
    convolution: str = "auto",
    name: str = "mlsp",
) -> keras.Model:
    """The shallow dual-branch 3D-CNN -> CAM + spatial attention -> GRU -> MSMH recognizer.

    Branch A (5x5x5 conv) and branch B (3x3x3 conv) read the same clip when `streams` is 1 (the
    MLSP 2024 model); with `streams` 2 branch B reads a second input (the AU-region crops of the
    dual-branch AU model). The defaults build the published MLSP network; the other values
    build the papers' ablations and dataset variants.

    Args:
        input_shape: (frames, height, width, channels) of one clip.
        num_classes: size of the softmax output.
        streams: 1 or 2 inputs, as above.
        branches: 2 conv branches, or 1 (branch A alone: the ablations' single-branch 3D-CNN).
        branch_filters, merge_filters: filters of the branch convs and of the merge conv.
        pool_size: MaxPool3D pool and stride ("same" padding, extra pad at the end as in TF).
        cam, cam_reduction: channel attention mode ("difference": the enhanced CAM, EC-CBAM;
            "sum"; "cbam": the original CBAM) and reduction; "none" leaves out the whole
            attention block (channel and spatial).
        dense_units: per-frame Dense widths before the temporal block; empty: none.
        dropout: rate of the Dropout on the per-frame features and after the first frame Dense.
        temporal: "gru", "lstm" (of width `gru_units`) or "none" over the per-frame features.
        gru_units: width of the GRU or LSTM; MSMH head s has width gru_units / 2**s.
        pooling: how the sequence becomes one vector: "msmh" (multi-scale multi-head
            attention), "multi_head" (Keras MultiHeadAttention with `heads` heads of key size
            = feature width, then the maximum over time), or "none" (the recurrent layer's last
            output; without one, the flattened sequence).
        heads: MSMH heads (scales), or Keras attention heads for "multi_head".
        causal_attention_heads: >0 adds a causal Keras MultiHeadAttention with this many heads
            (key size = feature width), maximum over time, concatenated with the pooling output
            (the deception model: 4).
        head_units: Dense widths of the classification head.
        head_dropout: rate of a Dropout after each head Dense; 0: none.
        l2: L2 factor of the regularised Dense kernels.
        negative_slope: LeakyReLU slope.
        convolution: how the two branch convs are computed, with the same weights either way:
            "stacked" (`mer.models.layers.Conv3D`: one Conv2D over frames stacked in depth),
            "conv3d" (Keras Conv3D), or "auto": stacked where that is the faster form here
            (`mer.models.layers.stacked_is_faster`). The merge conv is always a Keras Conv3D:
            its stacked form, which needs the input gradient too, measured slower.
        name: model name.

    Returns:
        An uncompiled Keras model with output (batch, num_classes) softmax probabilities.

    Raises:
        ValueError: an argument out of range, quoting the value received.
    """
    if len(input_shape) != 4:
        raise ValueError(
            f"input_shape must be (frames, height, width, channels), got {input_shape}"
        )
    if streams not in (1, 2):
        raise ValueError(f"streams must be 1 or 2, got {streams!r}")
    if branches not in (1, 2):
        raise ValueError(f"branches must be 1 or 2, got {branches!r}")
    if streams == 2 and branches == 1:
        raise ValueError("streams=2 needs branches=2: branch B reads the second input")
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes!r}")
    if cam not in ATTENTION_CHOICES:
        raise ValueError(f"cam must be one of {ATTENTION_CHOICES}, got {cam!r}")
    if temporal not in TEMPORAL_BLOCKS:
        raise ValueError(f"temporal must be one of {TEMPORAL_BLOCKS}, got {temporal!r}")
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    if convolution not in CONVOLUTIONS:
        raise ValueError(f"convolution must be one of {CONVOLUTIONS}, got {convolution!r}")
    if causal_attention_heads < 0:
        raise ValueError(
            f"causal_attention_heads must be >= 0, got {causal_attention_heads!r}"
        )
    if causal_attention_heads and pooling == "none":
        raise ValueError("causal_attention_heads needs pooling 'msmh' or 'multi_head', got 'none'")
    for rate_name, rate in (("dropout", dropout), ("head_dropout", head_dropout)):
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"{rate_name} must be in [0, 1), got {rate!r}")
    regularizer = keras.regularizers.L2(l2) if l2 else None

    def leaky(name: str) -> keras.layers.Layer:
        return keras.layers.LeakyReLU(negative_slope, name=name)

    if convolution == "auto":
        convolution = "stacked" if stacked_is_faster() else "conv3d"
    branch_conv = StackedFrameConv3D if convolution == "stacked" else keras.layers.Conv3D

    def conv_block(tensor, filters: int, kernel: int, prefix: str, conv=keras.layers.Conv3D):
        """Conv3D -> LeakyReLU -> MaxPool3D, computed as conv -> pool -> LeakyReLU: the two
        orders give the same values (LeakyReLU is increasing, so it commutes with max), and
        the activation then runs on a tensor pool_size**3 times smaller, which saves a full
        read and write of the largest tensors of the network, forward and backward."""
        tensor = conv(
            filters, kernel, padding="same", kernel_initializer="he_normal", name=f"{prefix}_conv"
        )(tensor)
        tensor = keras.layers.MaxPooling3D(
            pool_size, strides=pool_size, padding="same", name=f"{prefix}_pool"
        )(tensor)
        return leaky(f"{prefix}_leaky")(tensor)

    # Stage 1: the shallow 3D-CNN.
    inputs = [keras.Input(tuple(input_shape), name="frames")]
    if streams == 2:
        inputs.append(keras.Input(tuple(input_shape), name="regions"))
    features = conv_block(inputs[0], branch_filters, 5, "branch5", branch_conv)
    if branches == 2:
        branch_b = conv_block(inputs[-1], branch_filters, 3, "branch3", branch_conv)
        features = keras.layers.Concatenate(name="branches")([features, branch_b])
    features = conv_block(features, merge_filters, 3, "merge")  # (batch, T, H, W, C)

    if cam != "none":
        channel_map = ChannelAttention(
            cam_reduction, cam, l2=l2, negative_slope=negative_slope, name="channel_attention"
        )(features)
        spatial_map = SpatialAttention(name="spatial_attention")(features)
        features = keras.layers.Multiply(name="attention")([features, channel_map, spatial_map])

    # Stage 2: per-frame features -> temporal block -> one vector per clip.
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
    if temporal != "none":
        recurrent = keras.layers.GRU if temporal == "gru" else keras.layers.LSTM
        sequence = recurrent(gru_units, return_sequences=pooling != "none", name=temporal)(
            sequence
        )  # (batch, T, gru_units), or (batch, gru_units) without pooling
    width = sequence.shape[-1]
    if pooling == "msmh":
        pooled = MultiScaleMultiHeadAttention(heads, name="msmh")(sequence)
    elif pooling == "multi_head":
        attended = keras.layers.MultiHeadAttention(
            heads, key_dim=width, name="multi_head_attention"
        )(sequence, sequence)
        pooled = keras.layers.GlobalMaxPooling1D(name="multi_head_pool")(attended)
    elif temporal == "none":
        pooled = keras.layers.Flatten(name="flatten_time")(sequence)  # (batch, T * features)
    else:
        pooled = sequence  # the recurrent layer's last output
    if causal_attention_heads:
        attended = keras.layers.MultiHeadAttention(
            causal_attention_heads, key_dim=width, name="causal_attention"
        )(sequence, sequence, use_causal_mask=True)
        causal = keras.layers.GlobalMaxPooling1D(name="causal_pool")(attended)
        pooled = keras.layers.Concatenate(name="pooled")([pooled, causal])

    for index, units in enumerate(head_units):
        pooled = keras.layers.Dense(
            units, kernel_initializer="he_normal", name=f"head_dense{index}"
        )(pooled)
        pooled = leaky(f"head_leaky{index}")(pooled)
        if head_dropout:
            pooled = keras.layers.Dropout(head_dropout, name=f"head_dropout{index}")(pooled)
    logits = keras.layers.Dense(num_classes, name="logits")(pooled)
    probabilities = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(
        logits
    )
    return keras.Model(inputs if streams == 2 else inputs[0], probabilities, name=name)

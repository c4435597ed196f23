"""The `mlsp` family: the MLSP 2024 network and the dual-branch AU network built on it.

Inputs: one clip input such as `[frames]` (both branches read it), or two such as
`[frames, au_regions]` (the 3x3x3 branch reads the second, the region crops). The defaults are
the published numbers; the other values build the papers' ablations and dataset variants (see
`mer.models.builders.build_mlsp_model`). Loss: the weighted categorical cross-entropy of the
published code (`train.class_weights`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

import keras

from mer.config import ConfigError, ExperimentConfig, FamilyConfig
from mer.models import ModelFamily
from mer.models.builders import build_mlsp_model
from mer.models.losses import WeightedCategoricalCrossentropy
from mer.specs import InputSpec


@dataclasses.dataclass
class MLSPConfig(FamilyConfig):
    """The MLSP 2024 network's settings; the defaults are the published numbers."""

    family: str = "mlsp"
    branches: int = 2  # first-stage 3D conv branches; 1: the 5x5x5 branch alone
    branch_filters: int = 32  # filters of each first-stage 3D conv branch
    merge_filters: int = 32  # filters of the conv after the branches are concatenated
    pool_size: int = 3  # MaxPool3D pool and stride
    # difference: enhanced CAM (EC-CBAM); cbam: the original; none: no attention block at all
    cam: Literal["difference", "sum", "cbam", "none"] = "difference"
    cam_reduction: int = 8  # hidden width of the channel-attention MLP is channels / this
    dense_units: list[int] = dataclasses.field(default_factory=lambda: [128, 64])
    dropout: float = 0.3
    temporal: Literal["gru", "lstm", "none"] = "gru"  # recurrent layer over the frame features
    gru_units: int = 512  # width of the GRU (or of the LSTM with temporal: lstm)
    # over time after the recurrent layer: msmh; multi_head (Keras MultiHeadAttention); none:
    # the recurrent layer's last output (without one: the flattened sequence)
    pooling: Literal["msmh", "multi_head", "none"] = "msmh"
    heads: int = 8  # MSMH heads (head s has width gru_units / 2**s), or multi_head's heads
    causal_attention_heads: int = 0  # >0: a causal attention concatenated with the pooling
    head_units: list[int] = dataclasses.field(default_factory=lambda: [128, 64])
    head_dropout: float = 0.0  # Dropout after each head Dense; 0: none
    l2: float = 0.01
    negative_slope: float = 0.2  # LeakyReLU
    # how the two branch convs are computed (same weights, same sums up to rounding): stacked
    # (one Conv2D over frames stacked in depth), conv3d (Keras Conv3D), or auto: stacked where
    # measured faster (CPUs, with TensorFlow without its oneDNN kernels or with JAX)
    convolution: Literal["auto", "stacked", "conv3d"] = "auto"


def build(model: MLSPConfig, specs: Sequence[InputSpec], classes: int) -> keras.Model:
    """The network for these inputs (the second, if any, feeds the 3x3x3 branch)."""
    settings = {key: value for key, value in dataclasses.asdict(model).items() if key != "family"}
    return build_mlsp_model(specs[0].shape, classes, streams=len(specs), **settings)


def loss(config: ExperimentConfig) -> keras.losses.Loss:
    return WeightedCategoricalCrossentropy(config.train.class_weights)


def check(config: ExperimentConfig) -> None:
    """The settings' values that the types cannot check.

    Raises:
        ConfigError: naming the key and the value.
    """
    model = config.model
    for key in ("heads", "gru_units"):
        if getattr(model, key) < 1:
            raise ConfigError(f"model.{key} must be at least 1, got {getattr(model, key)}")
    # MSMH reads the recurrent layer's output, or without one the last per-frame Dense's.
    key, width = "model.gru_units", model.gru_units
    if model.temporal == "none":
        key, width = "model.dense_units[-1]", (model.dense_units or [None])[-1]
    if model.pooling == "msmh" and width is not None and width % 2**model.heads:
        raise ConfigError(
            f"{key} ({width}) must be divisible by 2**model.heads ({2**model.heads}) for MSMH"
        )
    for key in ("dropout", "head_dropout"):
        if not 0.0 <= getattr(model, key) < 1.0:
            raise ConfigError(f"model.{key} must be in [0, 1), got {getattr(model, key)}")
    if model.branches not in (1, 2):
        raise ConfigError(f"model.branches must be 1 or 2, got {model.branches}")
    inputs = config.data.input_names()
    if len(inputs) not in (1, 2):  # their shapes are checked when the network is built
        raise ConfigError(
            f"model.family=mlsp reads one or two clip inputs (e.g. data.inputs [frames] or "
            f"[frames, au_regions]), got {inputs}"
        )
    if len(inputs) == 2 and model.branches == 1:
        raise ConfigError(
            f"data.inputs {inputs} needs model.branches=2: the 3x3x3 branch reads the second"
        )
    if model.causal_attention_heads < 0:
        raise ConfigError(
            f"model.causal_attention_heads must be >= 0, got {model.causal_attention_heads}"
        )
    if model.causal_attention_heads and model.pooling == "none":
        raise ConfigError("model.causal_attention_heads needs model.pooling msmh or multi_head")


FAMILY = ModelFamily(name="mlsp", config=MLSPConfig, build=build, loss=loss, check=check)

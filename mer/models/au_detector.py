"""The AU detector on its own (`model.family: au_detector`): FMER's P3D-63 (`mer.models.fmer.
au_detector`) on the AU frame stream, one sigmoid per AU of `model.aus`, trained on the
clips' annotated AUs alone, so that AUs can be predicted from pixels, with no annotation at
test time (issue 16, "AU detection for everyone").

Input: "au_frames" (16, height, width, channels), FMER's AU stream (`mer.data.inputs.
au_frames`; 16 x 144 x 144 x 3 as published). Output: "au_probabilities" (batch, AUs) float32,
in `model.aus` order. Loss: FMER's masked binary cross-entropy (`AUBinaryCrossentropy`) on
the probabilities; a clip with a blank AU cell is left out of it. Trained LOSO like any family;
the report is per-AU F1 and their mean, pooled over the folds (`mer.evaluation.metrics.
au_f1_scores`), the class metrics do not apply. The held-out clips' AU cells are read to score
their predictions and for nothing else.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import keras

from mer.config import ConfigError, ExperimentConfig, FamilyConfig
from mer.models import ModelFamily, fmer
from mer.models.fmer import (
    AU_CODES,
    FRAMES_INPUT,
    AUBinaryCrossentropy,
    au_detector,
    au_matrix,
)
from mer.specs import InputSpec

OUTPUT = "au_probabilities"


def build_au_detector_model(
    specs: Sequence[InputSpec],
    *,
    aus: Sequence[int] = AU_CODES,
    p3d_filters: int = 64,
    dropout: float = 0.5,
    momentum: float = 0.9,
    epsilon: float = 1e-5,
    name: str = "au_detector",
) -> keras.Model:
    """The AU detector (see the module docstring).

    Args:
        specs: the one input, "au_frames" (16, height, width, channels).
        aus: the AU numbers it predicts, in output order (FMER's nine by default).
        p3d_filters, dropout, momentum, epsilon: as `mer.models.fmer.au_detector` takes them.
        name: model name.

    Returns:
        An uncompiled Keras model, output "au_probabilities" (batch, len(aus)).

    Raises:
        ValueError: another input, repeated or non-positive AUs, or a bad shape or argument,
            quoting it.
    """
    names = [spec.name for spec in specs]
    if names != [FRAMES_INPUT]:
        raise ValueError(f"the AU detector reads one input, {FRAMES_INPUT!r}; got {names}")
    codes = list(aus)
    if (
        not codes
        or len(set(codes)) != len(codes)
        or any(isinstance(code, bool) or not isinstance(code, int) or code < 1 for code in codes)
    ):
        raise ValueError(f"aus must be distinct positive AU numbers, got {aus!r}")
    frames = keras.Input(tuple(specs[0].shape), name=FRAMES_INPUT)
    logits = au_detector(
        frames,
        aus=len(codes),
        p3d_filters=p3d_filters,
        dropout=dropout,
        momentum=momentum,
        epsilon=epsilon,
    )
    probabilities = keras.layers.Activation("sigmoid", dtype="float32", name=OUTPUT)(logits)
    return keras.Model(frames, probabilities, name=name)


@dataclasses.dataclass
class AUDetectorConfig(FamilyConfig):
    """The `model:` section of `family: au_detector`; the defaults are FMER's detector."""

    family: str = "au_detector"
    aus: list[int] = dataclasses.field(default_factory=lambda: list(AU_CODES))  # output order
    p3d_filters: int = 64  # the first width: 64 is P3D-63
    dropout: float = 0.5  # before the logits
    momentum: float = 0.9  # BatchNormalization (Keras's sense; PyTorch's 0.1)
    epsilon: float = 1e-5


def _build(model: AUDetectorConfig, specs: Sequence[InputSpec], classes: int) -> keras.Model:
    """The classes' count is not read: the outputs are the AUs."""
    settings = {key: value for key, value in dataclasses.asdict(model).items() if key != "family"}
    return build_au_detector_model(specs, **settings)


def _targets(aus: Sequence[frozenset[int] | None], config: ExperimentConfig):
    """Each clip's 0/1 row over `model.aus` (NaN: a blank AU cell, left out of the loss).

    Raises:
        ConfigError: no clip has an AU cell, so there is nothing to train on.
    """
    if all(numbers is None for numbers in aus):
        raise ConfigError(
            "model.family=au_detector trains on the sheet's AU cells, and no clip has one (the "
            "dataset's AU column is absent or blank)"
        )
    return au_matrix(aus, config.model.aus)


def _check(config: ExperimentConfig) -> None:
    """One input, no class weights, no epoch picked on the test subject, sane settings."""
    model = config.model
    inputs = config.data.input_names()
    if inputs != [FRAMES_INPUT]:
        raise ConfigError(
            f"model.family=au_detector reads one input, data.inputs: [{FRAMES_INPUT}], got {inputs}"
        )
    if config.train.class_weights is not None:
        raise ConfigError(
            f"model.family=au_detector trains on AUs, not classes: train.class_weights must be "
            f"null, got {config.train.class_weights}"
        )
    if config.eval.protocol == "paper":
        raise ConfigError(
            "eval.protocol=paper picks the epoch of the best class accuracy on the test "
            "subject; model.family=au_detector has no class accuracy: use eval.protocol=loso"
        )
    codes = model.aus
    if not codes or len(set(codes)) != len(codes) or min(codes) < 1:
        raise ConfigError(f"model.aus must be distinct positive AU numbers, got {codes}")
    if not 0.0 <= model.dropout < 1.0:
        raise ConfigError(f"model.dropout must be in [0, 1), got {model.dropout}")
    if model.p3d_filters < 1:
        raise ConfigError(f"model.p3d_filters must be positive, got {model.p3d_filters}")


FAMILY = ModelFamily(
    name="au_detector",
    config=AUDetectorConfig,
    build=_build,
    loss=lambda config: AUBinaryCrossentropy(from_logits=False),
    train_defaults=fmer.FAMILY.train_defaults,  # FMER's training, class_weights None
    check=_check,
    targets=_targets,
    predicts="aus",
)

"""FMER (Wang, Huang, Cai, Liu, "Micro-expression Recognition by Fusing AU Detection and
Spatio-temporal Features", ICASSP 2024): a landmark graph branch on flow patches, a P3D-63 AU
detector on the frames, an AU graph over its logits, and their fusion.

Written from the authors' public PyTorch code (ini17/Micro-expression-recognition-by-fusing-
Action-Unit-detection-and-spatio-temporal-features, `PythonCodes/models/`, `train.py`), the
layers in `mer.models.fmer_layers`. Checked once against their modules (PyTorch 2.13, CPU): the
same parameter counts, in total and per part, and the same forward FLOPs; with their weights
copied in, the same probabilities at 144 px (to 1e-6 in inference; to 1e-4 with batch
statistics and no dropout) and the same cross-entropy + AU loss.

Inputs, picked from the specs by name, in the order of the specs:
- "fmer_patches" (alphas, steps, directions, landmarks, window, window) = (10, 9, 2, 30, 7, 7):
  per magnification factor (the test factor first) and flow step, u and v in 7x7 windows
  around 30 dlib-68 points, brows (17-26) then mouth (48-67). Per factor this is the authors'
  layout (their `.pt` files); the network picks the factor (`MagnificationChoice`: drawn per
  clip in training, the first in inference) and moves landmarks last itself. Patches of one
  factor, (steps, directions, landmarks, window, window), are taken as they are.
- "au_frames" (16, height, width, channels) = (16, 144, 144, 3), channels-last (theirs: (3, 16,
  144, 144)). Time must be 16: after res4 it is 1, and res5 is 2-D. The frame size is free (a
  demo runs 64x64); the pooling before the AU logits is global, which is the authors'
  AvgPool2d(5) on the 5x5 map of 144 (or 160) px frames.

Outputs: [0] "probabilities", (batch, classes) softmax, float32, what `predict`, bundles and
reports read; [1] "au_logits", (batch, 9) float32, the AU detector's logits for `AU_CODES`.

Training: `fmer_loss()` is a dict of losses per output, so `model.fit(x, y)` takes y = (one-hot
classes (batch, classes), AU targets (batch, 9) of 0/1 in `AU_CODES` order, `au_targets`), and
metrics name the output (`{"probabilities": ["accuracy"]}`; Keras refuses a flat list for two
outputs, and `class_weight` for any such model). The family's `targets` makes them from each
clip's annotated AUs (`clip_targets`); a clip without an AU cell (SMIC, in the MEGC2019
composite) has a row of NaN, which the AU term leaves out. Without the AU term (`au_loss:
false`) the AU targets are not read. The published rate is
`learning_rate_schedule()`; the family's train defaults give the same as step decays (one at
each epoch from 42 on, to 100 epochs). The authors' unused Embedding(15, 40) is kept for the
count: Keras warns once in training that it has no gradient.

Differences from the PyTorch code that are not choices: Keras initialises kernels Glorot-uniform
and biases with zeros where the authors leave PyTorch's defaults (their own initialisations, of
P3D's Conv3d and of the graph convolutions, are kept); Keras's BatchNormalization updates the
moving variance with the biased batch variance; the categorical cross-entropy reads the
probabilities (clipped to [1e-7, 1 - 1e-7]) rather than the logits.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Sequence

import keras
import numpy as np
from keras import ops

from mer.config import ConfigError, ExperimentConfig, FamilyConfig
from mer.models import ModelFamily
from mer.models.fmer_layers import (
    AUFusion,
    AUGraph,
    FlowStepConvolution,
    LandmarkConvolution,
    MagnificationChoice,
    P3DBottleneck,
    TokenSplit,
    TransformerEncoder,
    p3d_initializer,
)
from mer.specs import InputSpec

logger = logging.getLogger(__name__)

PATCHES_INPUT = "fmer_patches"  # the graph branch's input type (mer/data/inputs/)
FRAMES_INPUT = "au_frames"  # the AU detector's
AU_CODES = (1, 2, 4, 10, 12, 14, 15, 17, 25)  # the AU detector's outputs, in this order
BROW_AUS = 3  # AUs 1, 2 and 4 meet the brow features; the other six the mouth's
REGION_LANDMARKS = (10, 20)  # brows (dlib 17-26), then mouth (48-67)
AU_FRAMES = 16  # time after res4 must be 1: 16 -> 8 (stem pool) -> 4 -> 2 -> 1
P3D_STAGES = (3, 4, 6, 3)  # bottlenecks of res2-res4 (3-D) and res5 (2-D): P3D-63
P3D_UNIT_CYCLE = ("A", "B", "C")  # over the global index of the 3-D blocks: res4 starts with B
ENCODERS = 6  # per region, and over the AU adjacency
FEED_FORWARD = 128  # the regions' encoders; the AU graph's have 40
REGION_WIDTHS = (320, 160)  # the Dense layers after each region's encoders


@dataclasses.dataclass(frozen=True)
class FMERDefaults:
    """The authors' training settings (`train.py`), for the family to declare; their optimiser
    is Adam, as every run's."""

    learning_rate: float = 1e-4
    epochs: int = 100  # fixed; the last epoch predicts (theirs: the best training accuracy)
    batch_size: int = 16
    class_weights: None = None  # Keras has none for a model with two outputs
    decay_factor: float = 0.987  # ExponentialLR(gamma=0.987), stepped after epochs 41, 42, ...
    constant_epochs: int = 42  # 0-based epochs 0-41 at the initial rate

    @property
    def decay_epochs(self) -> tuple[int, ...]:
        """0-based epochs at which one more `decay_factor` applies: 42, 43, ... below epochs,
        so that `step_decay` gives `learning_rate_schedule()` up to `epochs`."""
        return tuple(range(self.constant_epochs, self.epochs))


DEFAULTS = FMERDefaults()


def learning_rate_schedule(
    learning_rate: float = DEFAULTS.learning_rate,
    factor: float = DEFAULTS.decay_factor,
    constant_epochs: int = DEFAULTS.constant_epochs,
) -> Callable[[int], float]:
    """The published schedule: constant for `constant_epochs`, then times `factor` per epoch.

    The authors step ExponentialLR(0.987) after each 0-based epoch above 40, so epoch e
    (0-based, as Keras counts) trains at 1e-4 * 0.987**max(0, e - 41).

    Args:
        learning_rate: the initial rate.
        factor: multiplier per epoch after the constant ones, in (0, 1].
        constant_epochs: epochs at the initial rate, >= 1.

    Returns:
        A function epoch -> learning rate, for `keras.callbacks.LearningRateScheduler`.

    Raises:
        ValueError: an argument out of range, quoting it.
    """
    if learning_rate <= 0:
        raise ValueError(f"learning_rate must be positive, got {learning_rate!r}")
    if not 0 < factor <= 1:
        raise ValueError(f"factor must be in (0, 1], got {factor!r}")
    if isinstance(constant_epochs, bool) or not isinstance(constant_epochs, int) or (
        constant_epochs < 1
    ):
        raise ValueError(f"constant_epochs must be a positive integer, got {constant_epochs!r}")

    def schedule(epoch: int, current: float | None = None) -> float:
        return learning_rate * factor ** max(0, epoch - constant_epochs + 1)

    return schedule


def au_targets(numbers: Iterable[int], codes: Sequence[int] = AU_CODES) -> np.ndarray:
    """The AU detector's target for a clip: 1.0 for each of `codes` among `numbers` (e.g.
    `mer.data.aus.au_numbers` of its sheet cell; every AU of an alternative counts), else 0.0.

    Args:
        numbers: the clip's AU numbers.
        codes: the detector's AUs, in its output order (FMER's `AU_CODES` by default).

    Returns:
        (len(codes),) float32, in `codes` order.
    """
    present = set(numbers)
    return np.array([code in present for code in codes], dtype=np.float32)


def clip_targets(aus: Sequence[frozenset[int] | None], config: ExperimentConfig) -> np.ndarray:
    """The AU detector's targets of every clip: `au_targets` of its AU numbers, or NaN where
    its sheet has no AU cell (unknown, not absent: the AU term leaves the clip out). With the
    AU term on, says when some clips, or all (SMIC), have no AU codes.

    Args:
        aus: per clip, its annotated AU numbers (`mer.data.aus.au_numbers` of its cell), or
            None for a blank cell.
        config: the experiment config (model.au_loss).

    Returns:
        (clips, 9) float32, in `AU_CODES` order.
    """
    unknown = sum(numbers is None for numbers in aus)
    if config.model.au_loss and unknown == len(aus):
        logger.warning(
            "no clip has AU codes (the sheet's AU column is absent or blank): FMER trains "
            "without the AU term (its loss stays 0); set model.au_loss=false to say so"
        )
    elif config.model.au_loss and unknown:
        logger.warning(
            "%d of %d clips have no AU codes: the AU term leaves them out", unknown, len(aus)
        )
    return au_matrix(aus)


def au_matrix(
    aus: Sequence[frozenset[int] | None], codes: Sequence[int] = AU_CODES
) -> np.ndarray:
    """`au_targets` of every clip over `codes`, a row of NaN where its AU cell is blank.

    Returns:
        (clips, len(codes)) float32, in `codes` order.
    """
    rows = [
        np.full(len(codes), np.nan, np.float32) if numbers is None else au_targets(numbers, codes)
        for numbers in aus
    ]
    return np.array(rows, dtype=np.float32).reshape(len(aus), len(codes))


@keras.saving.register_keras_serializable(package="mer")
class AUBinaryCrossentropy(keras.losses.Loss):
    """`weight` times the binary cross-entropy of AU logits (or, with `from_logits=False`,
    sigmoid probabilities) against 0/1 targets, averaged over the AUs and the batch: PyTorch's
    BCEWithLogitsLoss, scaled. Clips whose targets are NaN (no AU annotation) count for
    nothing: the mean is over the batch's other clips (0 if none).
    """

    def __init__(
        self,
        weight: float = 1.0,
        from_logits: bool = True,
        name: str = "au_binary_crossentropy",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        if weight < 0:
            raise ValueError(f"weight must be non-negative, got {weight!r}")
        self.weight = weight
        self.from_logits = from_logits

    def call(self, y_true, y_pred):
        unknown = ops.isnan(y_true)
        values = keras.losses.binary_crossentropy(
            ops.where(unknown, 0.0, y_true), y_pred, from_logits=self.from_logits
        )  # (batch,)
        known = ops.cast(ops.logical_not(ops.any(unknown, axis=-1)), values.dtype)
        # the loss averages over the whole batch: scaled so that it averages the known clips
        share = ops.cast(ops.shape(known)[0], values.dtype) / ops.maximum(ops.sum(known), 1.0)
        return self.weight * values * known * share

    def get_config(self):
        return {**super().get_config(), "weight": self.weight, "from_logits": self.from_logits}


def fmer_loss(au_loss: bool = True, au_loss_weight: float = 1.0) -> dict[str, keras.losses.Loss]:
    """The authors' loss, per output: categorical cross-entropy of "probabilities" plus
    `au_loss_weight` x the binary cross-entropy of "au_logits" (their `lam * loss_me + loss_au`
    with lam = 1).

    Args:
        au_loss: False: the classes' term alone (no AU codes, e.g. SMIC); "au_logits" gets
            None, so its targets are not read.
        au_loss_weight: factor of the AU term, >= 0.

    Returns:
        {"probabilities": loss, "au_logits": loss or None}, for `model.compile(loss=...)`.

    Raises:
        ValueError: a negative weight, quoting it.
    """
    if not isinstance(au_loss, bool):
        raise ValueError(f"au_loss must be True or False, got {au_loss!r}")
    au_term = AUBinaryCrossentropy(au_loss_weight)  # checks the weight either way
    return {
        "probabilities": keras.losses.CategoricalCrossentropy(name="classes"),
        "au_logits": au_term if au_loss else None,
    }


def _spec_named(specs: Sequence[InputSpec], name: str) -> InputSpec:
    matches = [spec for spec in specs if spec.name == name]
    if len(matches) != 1:
        raise ValueError(
            f"FMER reads one input named {name!r}; the inputs are {[spec.name for spec in specs]}"
        )
    return matches[0]


def _graph_branch(patches, *, alpha_per_step, shared_step_convolution, encoder_dropout, dropout,
                  momentum, epsilon):
    """Patches -> the brow and the mouth features, (batch, 160) each."""
    if len(patches.shape) == 7:  # (batch, alphas, steps, directions, landmarks, rows, columns)
        patches = MagnificationChoice(alpha_per_step, name="graph_magnification")(patches)
    _, _, _, landmarks, height, width = patches.shape
    tensor = FlowStepConvolution(shared_step_convolution, momentum=momentum, epsilon=epsilon,
                                 name="graph_step_convolution")(patches)
    tensor = LandmarkConvolution(momentum=momentum, epsilon=epsilon,
                                 name="graph_landmark_convolution")(tensor)
    tensor = keras.layers.Reshape((height * width, landmarks), name="graph_flatten")(tensor)
    tokens = keras.layers.Permute((2, 1), name="graph_tokens")(tensor)  # (batch, 30, 49)
    regions = TokenSplit(REGION_LANDMARKS, name="graph_regions")(tokens)
    features = []
    for region, tensor in zip(("brow", "mouth"), regions, strict=True):
        for index in range(1, ENCODERS + 1):
            tensor = TransformerEncoder(FEED_FORWARD, dropout=encoder_dropout,
                                        name=f"graph_{region}_encoder{index}")(tensor)
        tensor = keras.layers.Flatten(name=f"graph_{region}_flatten")(tensor)
        tensor = keras.layers.Dense(REGION_WIDTHS[0], activation="relu",
                                    name=f"graph_{region}_dense1")(tensor)
        tensor = keras.layers.Dropout(dropout, name=f"graph_{region}_dropout")(tensor)
        features.append(keras.layers.Dense(REGION_WIDTHS[1], activation="relu",
                                           name=f"graph_{region}_dense2")(tensor))
    return features


def au_detector(
    frames,
    *,
    aus: int = len(AU_CODES),
    p3d_filters: int = 64,
    dropout: float = 0.5,
    momentum: float = 0.9,
    epsilon: float = 1e-5,
):
    """Frames -> AU logits (batch, aus): P3D-63, every conv without bias; FMER's AU detector,
    and `mer.models.au_detector`'s whole network.

    Args:
        frames: a Keras tensor (batch, 16, height, width, channels).
        aus: how many AUs it predicts (FMER's 9 `AU_CODES`); only the last Dense depends on it.
        p3d_filters: width of the stem and the first bottleneck (64: P3D-63, 24,944,073
            weights at 9 AUs); stage n is 2**(n - 2) times wider.
        dropout: before the logits (0.5 published).
        momentum, epsilon: of every BatchNormalization (Keras's momentum; PyTorch's 0.1).

    Returns:
        The logits, a Keras tensor (batch, aus).

    Raises:
        ValueError: frames that are not 16 in time, or an argument out of range, quoting it.
    """
    if len(frames.shape) != 5 or frames.shape[1] != AU_FRAMES:
        raise ValueError(
            f"the frames must be ({AU_FRAMES}, height, width, channels): res5 is 2-D after "
            f"time {AU_FRAMES} is pooled to 1; got {tuple(frames.shape[1:])}"
        )
    for key, value in (("aus", aus), ("p3d_filters", p3d_filters)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be a positive integer, got {value!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    norm = dict(momentum=momentum, epsilon=epsilon)
    tensor = keras.layers.ZeroPadding3D(((0, 0), (3, 3), (3, 3)), name="p3d_stem_padding")(frames)
    tensor = keras.layers.Conv3D(
        p3d_filters, (1, 7, 7), strides=(1, 2, 2), use_bias=False,
        kernel_initializer=p3d_initializer((1, 7, 7), p3d_filters), name="p3d_stem_convolution",
    )(tensor)
    tensor = keras.layers.BatchNormalization(**norm, name="p3d_stem_norm")(tensor)
    tensor = keras.layers.ReLU(name="p3d_stem_relu")(tensor)
    # zeros for PyTorch's -inf padding: after a ReLU no window's maximum is below 0
    tensor = keras.layers.ZeroPadding3D(((0, 0), (1, 1), (1, 1)),
                                        name="p3d_stem_pool_padding")(tensor)
    tensor = keras.layers.MaxPooling3D((2, 3, 3), strides=2, name="p3d_stem_pool")(tensor)
    block = 0
    for position, blocks in enumerate(P3D_STAGES):
        stage = position + 2  # res2 ... res5
        two_d = position == len(P3D_STAGES) - 1
        if two_d:
            tensor = keras.layers.Reshape(tensor.shape[2:], name="p3d_to_2d")(tensor)
        for index in range(blocks):
            tensor = P3DBottleneck(
                p3d_filters * 2**position,
                strides=2 if index == 0 and stage > 2 else 1,
                unit="2D" if two_d else P3D_UNIT_CYCLE[block % len(P3D_UNIT_CYCLE)],
                projection=index == 0,
                **norm,
                name=f"p3d_res{stage}_block{index + 1}",
            )(tensor)
            block += 1
        if not two_d:
            tensor = keras.layers.MaxPooling3D((2, 1, 1), strides=(2, 1, 1),
                                               name=f"p3d_res{stage}_pool")(tensor)
    tensor = keras.layers.GlobalAveragePooling2D(name="p3d_pool")(tensor)
    tensor = keras.layers.Dropout(dropout, name="p3d_dropout")(tensor)
    return keras.layers.Dense(aus, name="p3d_logits")(tensor)


def build_fmer_model(
    specs: Sequence[InputSpec],
    num_classes: int,
    *,
    alpha_per_step: bool = False,
    shared_step_convolution: bool = True,
    p3d_filters: int = 64,
    encoder_dropout: float = 0.1,
    dropout: float = 0.5,
    momentum: float = 0.9,
    epsilon: float = 1e-5,
    name: str = "fmer",
) -> keras.Model:
    """The FMER network (see the module docstring for its inputs and outputs).

    Args:
        specs: "fmer_patches" and "au_frames"; their order is the model's input order.
        num_classes: width of the "probabilities" output.
        alpha_per_step: training draws a magnification factor per flow step (the published
            loader), not per clip.
        shared_step_convolution: one conv module over the flow steps (published), or one each.
        p3d_filters: width of the AU detector's stem and first bottleneck (64: P3D-63, about
            24.9 M weights; stage n is 2**(n - 2) times wider). Smaller for demos and tests.
        encoder_dropout: of every transformer encoder (0.1 published).
        dropout: of the region heads and before the AU logits (0.5 published).
        momentum, epsilon: of every BatchNormalization (Keras's momentum; PyTorch's 0.1).
        name: model name.

    Returns:
        An uncompiled Keras model, outputs ["probabilities", "au_logits"]; compile it with
        `fmer_loss()`.

    Raises:
        ValueError: a missing input, a bad shape or an argument out of range, quoting it.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer of at least 2, got {num_classes!r}")
    if len(specs) != 2:
        raise ValueError(f"FMER reads two inputs, got {[spec.name for spec in specs]}")
    patches_spec = _spec_named(specs, PATCHES_INPUT)
    _spec_named(specs, FRAMES_INPUT)  # there, once; the AU detector checks its shape
    if len(patches_spec.shape) not in (5, 6) or patches_spec.shape[-3] != sum(REGION_LANDMARKS):
        raise ValueError(
            f"the patches must be ([alphas,] steps, directions, {sum(REGION_LANDMARKS)} "
            f"landmarks, window, window), got {patches_spec.shape}"
        )
    if not 0.0 <= dropout < 1.0:  # the graph branch's too (the AU detector checks its own)
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")

    inputs = {spec.name: keras.Input(tuple(spec.shape), name=spec.name) for spec in specs}
    brows, mouth = _graph_branch(
        inputs[PATCHES_INPUT], alpha_per_step=alpha_per_step,
        shared_step_convolution=shared_step_convolution, encoder_dropout=encoder_dropout,
        dropout=dropout, momentum=momentum, epsilon=epsilon,
    )
    logits_of_aus = au_detector(inputs[FRAMES_INPUT], p3d_filters=p3d_filters, dropout=dropout,
                                momentum=momentum, epsilon=epsilon)
    embeddings = AUGraph(ENCODERS, dropout=encoder_dropout, name="au_graph")(logits_of_aus)
    scores = AUFusion(BROW_AUS, name="fusion")([brows, mouth, embeddings])  # (batch, 9)
    scores = keras.layers.LayerNormalization(epsilon=1e-6, name="fusion_norm")(scores)
    logits = keras.layers.Dense(num_classes, name="logits")(scores)
    probabilities = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(
        logits
    )
    au_logits = keras.layers.Activation("linear", dtype="float32", name="au_logits")(
        logits_of_aus
    )
    return keras.Model([inputs[spec.name] for spec in specs], [probabilities, au_logits],
                       name=name)


@dataclasses.dataclass
class FMERConfig(FamilyConfig):
    """The `model:` section of `family: fmer`; the defaults are the authors' numbers."""

    family: str = "fmer"
    # training draws the magnification factor per clip; True: per flow step, as the published
    # loader does (its author calls that unintended)
    alpha_per_step: bool = False
    shared_step_convolution: bool = True  # one conv over the 9 flow steps (published); or 9
    p3d_filters: int = 64  # the AU detector's first width: 64 is P3D-63
    encoder_dropout: float = 0.1  # every transformer encoder's
    dropout: float = 0.5  # the region heads' and the AU detector's
    au_loss: bool = True  # False: the classes alone (datasets without AU codes, e.g. SMIC)
    au_loss_weight: float = 1.0  # of the AU term (published: the two terms added)
    momentum: float = 0.9  # BatchNormalization (Keras's sense; PyTorch's 0.1)
    epsilon: float = 1e-5


def _build(model: FMERConfig, specs: Sequence[InputSpec], classes: int) -> keras.Model:
    settings = {
        key: value
        for key, value in dataclasses.asdict(model).items()
        if key not in ("family", "au_loss", "au_loss_weight")
    }
    return build_fmer_model(specs, classes, **settings)


def _check(config: ExperimentConfig) -> None:
    """FMER reads its two inputs and trains without class weights."""
    model = config.model
    inputs = config.data.input_names()
    if sorted(inputs) != sorted([PATCHES_INPUT, FRAMES_INPUT]):
        raise ConfigError(
            f"model.family=fmer reads two inputs, data.inputs: [{PATCHES_INPUT}, {FRAMES_INPUT}]"
            f", got {inputs}"
        )
    if config.train.class_weights is not None:
        raise ConfigError(
            f"model.family=fmer has two outputs, for which Keras applies no class weights: "
            f"train.class_weights must be null, got {config.train.class_weights}"
        )
    for key in ("encoder_dropout", "dropout"):
        if not 0.0 <= getattr(model, key) < 1.0:
            raise ConfigError(f"model.{key} must be in [0, 1), got {getattr(model, key)}")
    if model.au_loss_weight < 0:
        raise ConfigError(f"model.au_loss_weight must be non-negative, got {model.au_loss_weight}")
    if model.p3d_filters < 1:
        raise ConfigError(f"model.p3d_filters must be positive, got {model.p3d_filters}")


FAMILY = ModelFamily(
    name="fmer",
    config=FMERConfig,
    build=_build,
    loss=lambda config: fmer_loss(config.model.au_loss, config.model.au_loss_weight),
    train_defaults={
        "epochs": DEFAULTS.epochs,
        "batch_size": DEFAULTS.batch_size,
        "learning_rate": DEFAULTS.learning_rate,
        "decay_epochs": list(DEFAULTS.decay_epochs),
        "decay_factor": DEFAULTS.decay_factor,
        "class_weights": DEFAULTS.class_weights,
    },
    check=_check,
    targets=clip_targets,
)

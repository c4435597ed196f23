"""Leave-one-subject-out training: one fresh, seeded model per held-out subject.

The held-out subject is used for nothing but the final prediction: the model trains a fixed
number of epochs on the other subjects (optionally monitoring a validation split drawn from
those training subjects), normalisation statistics come from the training clips only, and the
final weights predict the held-out clips. A family's targets besides the classes (FMER's AUs)
are read for the training and validation clips alone; a family that predicts AUs alone
(`ModelFamily.predicts == "aus"`) trains on those and predicts per-AU probabilities. With
data.regions.aus=predicted, each fold first trains an AU detector on its training clips, whose
predictions for the held-out clips choose their au_regions crop (`choose_regions`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from mer.config import ConfigError, ExperimentConfig
from mer.data.batches import ClipBatches, Normalizer, feed, fit_normalizers
from mer.data.export_flow import FLOW_INPUTS, flow_image_path
from mer.data.inputs import input_specs
from mer.data.regions import detected_aus, region_for_aus
from mer.data.sheets import DataError
from mer.io import natural_sort_key, write_atomically, write_json
from mer.models import model_family
from mer.specs import InputSpec
from mer.training.distribution import distribution_scope, even_batches
from mer.training.schedules import step_decay

logger = logging.getLogger(__name__)


# How a run's seed becomes each model's seed; summary.json records it. Runs before it seeded fold
# i with seed + i, so that fold k of seed 2 repeated fold k + 1 of seed 1.
SEED_SCHEME = "SeedSequence(seed, spawn_key=(0, sha256(held-out name))); final model: (1,)"


def _stream_seed(seed: int, spawn_key: tuple[int, ...]) -> int:
    """A 31-bit seed from `numpy.random.SeedSequence`: independent for every (seed, key)."""
    sequence = np.random.SeedSequence(seed, spawn_key=spawn_key)
    return int(sequence.generate_state(1)[0] >> 1)  # keras/TensorFlow take a signed int32


def fold_seed(seed: int, held_out: str) -> int:
    """The seed of the fold that holds out `held_out` (a subject, or a k-fold's name).

    Derived from the run's seed and the held-out name, not from the fold's position, so
    that no two (seed, fold) pairs share a random stream and adding a subject reseeds no
    other fold.
    """
    digest = int.from_bytes(hashlib.sha256(held_out.encode()).digest()[:8], "little")
    return _stream_seed(seed, (0, digest))


def final_model_seed(seed: int) -> int:
    """The seed of the final model trained on every subject: a spawn of its own."""
    return _stream_seed(seed, (1,))


OLD_SEED_SCHEME = "seed + fold index"


def seed_scheme(results: Sequence[FoldResult]) -> str:
    """How the folds of `results` were seeded, as summary.json records it."""
    schemes = {OLD_SEED_SCHEME if result.seed is None else SEED_SCHEME for result in results}
    return schemes.pop() if len(schemes) == 1 else "mixed: " + "; ".join(sorted(schemes))


@dataclasses.dataclass(frozen=True)
class Fold:
    """Row indices of one LOSO fold."""

    subject: str  # the held-out subject
    index: int  # position in the sorted subject list
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


def loso_folds(subjects: Sequence[str], validation_subjects: int = 0, seed: int = 0) -> list[Fold]:
    """One fold per subject, in natural order; every clip is in exactly one test set.

    Args:
        subjects: the subject of each clip.
        validation_subjects: how many of the training subjects to hold out for validation
            (drawn per fold from the training subjects alone, never the test subject).
        seed: draws the validation subjects.
    """
    subjects = np.asarray(subjects, dtype=object)
    names = sorted(set(subjects), key=natural_sort_key)
    if len(names) < 2:
        raise ValueError(f"LOSO needs at least 2 subjects, got {names}")
    if not 0 <= validation_subjects <= len(names) - 2:  # a fold keeps 1 to train on
        raise ConfigError(
            f"train.validation_subjects must be in [0, {len(names) - 2}] for {len(names)} "
            f"subjects, got {validation_subjects}"
        )
    folds = []
    for index, name in enumerate(names):
        others = [other for other in names if other != name]
        random = np.random.default_rng([seed, index])
        held = set(random.choice(others, validation_subjects, replace=False).tolist())
        folds.append(
            Fold(
                subject=name,
                index=index,
                train=np.flatnonzero(
                    [subject != name and subject not in held for subject in subjects]
                ),
                validation=np.flatnonzero([subject in held for subject in subjects]),
                test=np.flatnonzero(subjects == name),
            )
        )
    return folds


def stratified_folds(labels: Sequence[int], folds: int, seed: int = 0) -> list[Fold]:
    """Stratified k-fold, for datasets without subject ids (not subject-independent)."""
    from sklearn.model_selection import StratifiedKFold

    labels = np.asarray(labels)
    smallest = np.bincount(labels).min() if len(labels) else 0
    if not 2 <= folds <= smallest:
        raise ValueError(
            f"stratified k-fold needs 2 <= k <= the smallest class ({smallest}), got k={folds}"
        )
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [
        Fold(f"fold{index + 1:02d}", index, train, np.array([], dtype=int), test)
        for index, (train, test) in enumerate(splitter.split(np.zeros(len(labels)), labels))
    ]


DBTYPES = {"casme2": 0, "samm": 1, "smic": 2}  # the RCN and Dual-ATME loaders' part codes


def write_split_lists(
    folds: Sequence[Fold],
    manifest: pd.DataFrame,
    labels: np.ndarray,
    directory: Path,
    inputs: Sequence[str] = (),
) -> None:
    """The folds as the MEGC2019 tooling writes them, so a split can be read and reused.

    `subName.txt` lists the held-out subjects in fold order; `<subject>_train.txt` and
    `<subject>_test.txt` list "<clip path> <label index>" per line. A composite run (the
    manifest's `part` column; parts casme2 0, samm 1, smic 2) also writes
    `<subject>_train_dbtype.txt` and `<subject>_test_dbtype.txt`, "<path> <label> <dbtype>" per
    line, as the RCN and Dual-ATME loaders read them. The path is the clip's; with a flow input
    among `inputs` (the first, if several), that of the clip's image written by
    `python -m mer export-flow`, relative to its output folder (`flow/<sample>_flow.png`).
    """
    directory.mkdir(parents=True, exist_ok=True)
    write_atomically(directory / "subName.txt", "".join(f"{fold.subject}\n" for fold in folds))
    paths = manifest["path"].to_numpy()
    lists = {"": [f"{path} {label}" for path, label in zip(paths, labels, strict=True)]}
    unknown = sorted(set(manifest.get("part", [])) - set(DBTYPES))
    if unknown:
        logger.warning("no *_dbtype.txt lists: the loaders have no code for the parts %s", unknown)
    elif "part" in manifest:
        flow = next((name for name in inputs if name in FLOW_INPUTS), None)
        if flow is not None:
            paths = [flow_image_path(str(sample), flow) for sample in manifest["sample"]]
        lists["_dbtype"] = [
            f"{path} {label} {DBTYPES[part]}"
            for path, label, part in zip(paths, labels, manifest["part"], strict=True)
        ]
    for fold in folds:
        for kind, rows in (("train", fold.train), ("test", fold.test)):
            for suffix, lines in lists.items():
                text = "".join(f"{lines[row]}\n" for row in rows)
                write_atomically(directory / f"{fold.subject}_{kind}{suffix}.txt", text)


def build_model(config: ExperimentConfig, specs: Sequence[InputSpec] | None = None):
    """The configured family's network for `specs` (by default the configured inputs'),
    compiled with the family's loss and the configured optimiser, precision and XLA setting
    (the dtype policy is set only while the layers are made, then restored)."""
    if config.train.precision == "mixed_float16" and _tensorflow_on_cpu():
        raise ConfigError(
            "train.precision=mixed_float16: TensorFlow has no float16 MaxPool3D kernel on CPU; "
            "use mixed_bfloat16 on a CPU (float16 is for GPUs)"
        )
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(config.train.precision)
    family = model_family(config.model.family)
    specs = input_specs(config.data) if specs is None else specs
    try:
        model = family.build(config.model, specs, len(config.data.classes))
    finally:
        keras.config.set_dtype_policy(previous)
    micro_batches = config.train.micro_batches
    # the classes' output by name: Keras refuses a flat list for two outputs; AUs: no accuracy
    metrics = {model.output_names[0]: ["accuracy"]} if family.predicts == "classes" else None
    model.compile(
        optimizer=keras.optimizers.Adam(
            config.train.learning_rate,
            gradient_accumulation_steps=micro_batches if micro_batches > 1 else None,
        ),
        loss=family.loss(config),
        metrics=metrics,
        jit_compile=config.train.jit_compile,
    )
    return model


def build_training_state(model: keras.Model, batches: keras.utils.PyDataset) -> None:
    """Creates the optimiser's variables and the compiled losses' and metrics' before `fit`,
    from the shapes of the first batch. On TensorFlow, Keras otherwise creates them inside the
    first traced training step, and a step that creates variables is traced twice (once
    creating them, once without). A fresh demo MLSP at 32 px took 3.7-3.8 s instead of
    6.8-7.0 s to its first step's end (3 interleaved rounds, 2-core Xeon, oneDNN limited to
    AVX2). It is the call Keras makes itself under a distribution strategy
    (`Trainer._symbolic_build`); the values are the same zeros, so results do not change
    (the demo's fold probabilities came out bit-identical). For a model already trained (the
    folds after the first reuse it) Keras creates nothing; the one batch read for its shapes
    is the only cost."""
    model._symbolic_build(data_batch=batches[0])


def accuracy_key(model: keras.Model) -> str:
    """The classes' accuracy in the model's logs: "accuracy" for one output, else prefixed by
    the output's name (FMER: "probabilities_accuracy")."""
    return "accuracy" if len(model.outputs) == 1 else f"{model.output_names[0]}_accuracy"


def class_probabilities(predicted) -> np.ndarray:
    """The probabilities of `model.predict`'s result: its first output (FMER's second is its
    AU logits), as float64; of the classes, or of an "aus" family's AUs."""
    return np.asarray(predicted[0] if isinstance(predicted, list) else predicted, np.float64)


def step_batch_size(config: ExperimentConfig) -> int:
    """Clips per training step: the batch, or one of its `train.micro_batches` parts."""
    return config.train.batch_size // config.train.micro_batches


def _tensorflow_on_cpu() -> bool:
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return not tf.config.list_physical_devices("GPU")


@dataclasses.dataclass
class FoldResult:
    """What one fold produced."""

    subject: str
    test: np.ndarray  # row indices of the held-out clips
    probabilities: np.ndarray  # (clips, classes); (clips, AUs) for a family predicting AUs
    history: dict[str, list[float]]
    seconds: float
    seed: int | None = None  # None: a fold of a run made before SEED_SCHEME (seed + index)
    # data.regions.aus=predicted: per held-out clip, the AUs its fold's detector found and the
    # region they chose; None otherwise
    aus: list[list[int]] | None = None
    regions: list[str] | None = None


@dataclasses.dataclass
class PredictedRegions:
    """What the folds of a data.regions.aus=predicted run need to choose their held-out clips'
    regions (`choose_regions`): the AU detector's config (`mer.config.region_detector_config`),
    its input and targets for every clip (a fold reads its training clips' targets alone),
    every clip's au_regions input for each region the rule can choose, and which of the run's
    streams is au_regions."""

    detector: ExperimentConfig
    frames: list[np.ndarray]  # au_frames per clip
    targets: np.ndarray  # (clips, AUs of detector.model.aus); NaN: a blank AU cell
    crops: dict[str, list[np.ndarray]]  # region name -> au_regions input per clip
    stream: int


def choose_regions(
    fold: Fold,
    streams: Sequence[Sequence[np.ndarray]],
    labels: np.ndarray,
    regions: PredictedRegions,
    fold_dir: Path,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    models: FoldModels | None = None,
) -> tuple[list[Sequence[np.ndarray]], list[list[int]], list[str]]:
    """Trains the fold's AU detector on its training clips (their AU cells are its targets;
    weights and curves in `fold_dir/au_detector/`), predicts the held-out clips' AUs, and gives
    each held-out clip the au_regions crop of the region its predicted AUs choose; the
    training clips keep their own (annotated) regions. Returns the streams, and per held-out
    clip its predicted AUs and region."""
    detector = regions.detector
    found = train_fold(
        fold, [regions.frames], labels, detector, fold_dir / "au_detector", callbacks, models,
        regions.targets,
    )
    aus = [detected_aus(detector.model.aus, row) for row in found.probabilities]
    names = [region_for_aus(clip, detector.model.aus).name for clip in aus]
    crops = list(streams[regions.stream])
    for row, name in zip(fold.test, names, strict=True):
        crops[row] = regions.crops[name][row]
    chosen = list(streams)
    chosen[regions.stream] = crops
    return chosen, aus, names


class FoldModels:
    """One compiled network for the folds of a run, so that only the first fold traces its
    training and prediction steps (seconds to a quarter of a minute per fold).

    Each fold gets the model back with the state a freshly built one would have: a new model
    is built after the fold's seed is set (the same initial weights, BatchNormalization
    statistics and dropout seed states), its variables are copied into the compiled one, and
    the optimiser's variables are set to those of a newly built optimiser (step count,
    moments, learning rate). The predictions are those of a new model per fold, bit for bit
    (`tests/training/test_loso.py`). Not used with `train.distribution`, whose scope is made
    anew for every fold.
    """

    def __init__(self) -> None:
        self.model: keras.Model | None = None

    def for_fold(self, config: ExperimentConfig) -> keras.Model:
        """The fold's model; call it after seeding the fold."""
        fresh = build_model(config)
        if self.model is None:
            self.model = fresh
            return fresh
        for target, source in zip(self.model.variables, fresh.variables, strict=True):
            target.assign(source)
        fresh.optimizer.build(fresh.trainable_variables)
        optimizer = self.model.optimizer
        if not optimizer.built:  # a family with its own fit never ran Keras's
            optimizer.build(self.model.trainable_variables)
        for target, source in zip(optimizer.variables, fresh.optimizer.variables, strict=True):
            target.assign(source)
        return self.model


def train_fold(
    fold: Fold,
    streams: Sequence[Sequence[np.ndarray]],
    labels: np.ndarray,
    config: ExperimentConfig,
    fold_dir: Path,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    models: FoldModels | None = None,
    targets: np.ndarray | None = None,
    regions: PredictedRegions | None = None,
    detectors: FoldModels | None = None,
) -> FoldResult:
    """Trains a model, fresh or reset (`models`), on the fold's training clips and predicts its
    held-out clips.

    `callbacks` are added to fit and predict (the run's interrupt guard). `targets`: the
    family's per-clip targets besides the labels (`ModelFamily.targets`), of which the rows
    of the training and validation clips are read. The model is built, trained and run
    inside the `train.distribution` scope (see `mer.training.distribution`). `regions`
    (data.regions.aus=predicted): the held-out clips' au_regions crops are chosen first by the
    fold's AU detector (`choose_regions`, its network reset from `detectors`), and the result
    records their predicted AUs and regions.
    """
    if regions is not None:
        started = time.perf_counter()
        streams, aus, names = choose_regions(
            fold, streams, labels, regions, fold_dir, callbacks, detectors
        )
        result = train_fold(fold, streams, labels, config, fold_dir, callbacks, models, targets)
        seconds = time.perf_counter() - started  # the detector's time too
        return dataclasses.replace(result, seconds=seconds, aus=aus, regions=names)
    if config.train.distribution != "none":
        models = None  # its scope and devices are set up anew for each fold
    if models is None or models.model is None:
        keras.backend.clear_session()  # before the scope: it forgets the current distribution
    keras.utils.set_random_seed(fold_seed(config.seed, fold.subject))
    with distribution_scope(config) as replicas:  # devices each batch is split over
        return _fit_and_predict(
            fold, streams, labels, config, fold_dir, callbacks, replicas, models, targets
        )


def _fit_and_predict(
    fold: Fold,
    streams: Sequence[Sequence[np.ndarray]],
    labels: np.ndarray,
    config: ExperimentConfig,
    fold_dir: Path,
    callbacks: Sequence[keras.callbacks.Callback],
    replicas: int = 1,
    models: FoldModels | None = None,
    targets: np.ndarray | None = None,
) -> FoldResult:
    started = time.perf_counter()
    fold_dir.mkdir(parents=True, exist_ok=True)
    classes = len(config.data.classes)

    def pick(rows: np.ndarray) -> list[list[np.ndarray]]:
        return [[stream[row] for row in rows] for stream in streams]

    def targets_of(rows: np.ndarray) -> np.ndarray | None:
        return None if targets is None else targets[rows]

    train_streams = pick(fold.train)
    # dataset_global is the published normalisation over every clip, the held-out ones too
    measured = streams if config.data.normalization == "dataset_global" else train_streams
    normalizers = fit_normalizers(config.data, measured)
    seed = fold_seed(config.seed, fold.subject)
    batches = ClipBatches(
        train_streams,
        labels[fold.train],
        classes,
        step_batch_size(config),
        normalizers,
        shuffle=True,
        seed=seed,
        targets=targets_of(fold.train),
    )
    validation = None
    test_streams = pick(fold.test)
    if config.eval.protocol == "paper":  # the published protocol: optimistic, comparison only
        unknown = None  # even here the held-out targets stay unread: NaN, left out of the loss
        if targets is not None:
            unknown = np.full((len(fold.test), targets.shape[1]), np.nan, np.float32)
        validation = ClipBatches(
            test_streams,
            labels[fold.test],
            classes,
            config.train.batch_size,
            normalizers,
            targets=unknown,
        )
    elif len(fold.validation):
        validation = ClipBatches(
            pick(fold.validation),
            labels[fold.validation],
            classes,
            config.train.batch_size,
            normalizers,
            targets=targets_of(fold.validation),
        )
    batches = even_batches(batches, replicas, training=True)  # each device gets a share
    if validation is not None:
        validation = even_batches(validation, replicas)
    family = model_family(config.model.family)
    if family.predicts == "aus":  # its one output trains on the targets alone
        batches = TargetBatches(batches)
        validation = None if validation is None else TargetBatches(validation)
    model = build_model(config) if models is None else models.for_fold(config)
    if family.fit is not None:
        curves = fit_family(model, train_streams, labels[fold.train], normalizers, config, seed)
    else:
        curves = _fit_keras(model, batches, validation, config, fold, fold_dir, callbacks)
    test_batches = ClipBatches(
        test_streams,
        None,
        classes,
        config.train.batch_size,
        normalizers,
    )
    test_batches = even_batches(test_batches, replicas)  # may repeat clips at the end: cut
    test_input = feed(test_batches, config.data.workers)
    probabilities = class_probabilities(
        model.predict(test_input, verbose=0, callbacks=list(callbacks))
    )[: len(fold.test)]
    if config.run.save_weights:
        partial = fold_dir / ".partial.weights.h5"  # renamed once complete, as every result
        model.save_weights(partial)
        partial.replace(fold_dir / "model.weights.h5")
    write_json(fold_dir / "history.json", curves)
    write_json(
        fold_dir / "normalization.json", [normalizer.to_dict() for normalizer in normalizers]
    )
    seconds = time.perf_counter() - started
    return FoldResult(fold.subject, fold.test, probabilities, curves, seconds, seed)


class TargetBatches(keras.utils.PyDataset):
    """Batches of (clips, targets) from batches of (clips, (one-hot classes, targets)): for a
    family whose only output trains on its targets (`ModelFamily.predicts == "aus"`)."""

    def __init__(self, batches: keras.utils.PyDataset):
        super().__init__()
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int):
        inputs, (_, targets) = self.batches[index]
        return inputs, targets

    def on_epoch_end(self) -> None:
        self.batches.on_epoch_end()


def _fit_keras(
    model: keras.Model,
    batches: ClipBatches,
    validation: ClipBatches | None,
    config: ExperimentConfig,
    fold: Fold,
    fold_dir: Path,
    callbacks: Sequence[keras.callbacks.Callback],
) -> dict[str, list[float]]:
    """Keras's fit for the configured epochs and schedule; the fold's curves. Under
    eval.protocol=paper the weights of the best epoch on the test subject are loaded after."""
    fit_callbacks = [
        *callbacks,
        FiniteLossGuard(fold.subject),
        keras.callbacks.LearningRateScheduler(
            step_decay(
                config.train.learning_rate, config.train.decay_epochs, config.train.decay_factor
            )
        )
    ]
    if config.run.tensorboard:
        fit_callbacks.extend(_tensorboard(fold_dir / "tensorboard"))
    best = fold_dir / "best_on_test_subject.weights.h5"
    if config.eval.protocol == "paper":
        fit_callbacks.append(
            keras.callbacks.ModelCheckpoint(
                str(best),
                monitor=f"val_{accuracy_key(model)}",
                mode="max",
                save_best_only=True,
                save_weights_only=True,
            )
        )
    build_training_state(model, batches)
    workers = config.data.workers
    history = model.fit(
        feed(batches, workers, shuffle=True),
        epochs=config.train.epochs,
        validation_data=None if validation is None else feed(validation, workers),
        shuffle=False,  # the feed shuffles the batch order, as fit would
        callbacks=fit_callbacks,
        verbose=_fit_verbosity(config.train.verbose),
    )
    if config.eval.protocol == "paper":
        model.load_weights(best)
    return {key: [float(value) for value in values] for key, values in history.history.items()}


def fit_family(
    model: keras.Model,
    streams: Sequence[Sequence[np.ndarray]],
    labels: np.ndarray,
    normalizers: Sequence[Normalizer],
    config: ExperimentConfig,
    seed: int,
) -> dict[str, list[float]]:
    """The family's own fit (scikit-learn's, say) on the normalised clips, stacked."""
    inputs = [
        np.stack([normalizer(clip) for clip in stream])
        for normalizer, stream in zip(normalizers, streams, strict=True)
    ]
    return model_family(config.model.family).fit(model, inputs, labels, config, seed)


def _fit_verbosity(setting: str | int) -> int:
    """Progress bars on a terminal, one line per epoch in a log file."""
    if setting != "auto":
        return setting
    return 1 if sys.stdout.isatty() else 2


def _tensorboard(log_dir: Path) -> list[keras.callbacks.Callback]:
    """A TensorBoard callback where the backend can write one (it needs TensorFlow)."""
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        logger.warning("TensorFlow is not installed: no TensorBoard logs (run.tensorboard=false)")
        return []
    return [keras.callbacks.TensorBoard(str(log_dir), write_graph=False, profile_batch=0)]


RESULT_FILE = "fold_result.json"  # written last and atomically: its presence marks a done fold


def save_fold_result(result: FoldResult, fold_dir: Path) -> None:
    """The fold's predictions and curves, so that a resumed run reuses them exactly."""
    write_json(
        fold_dir / RESULT_FILE,
        {
            "subject": result.subject,
            "test": result.test.tolist(),
            "probabilities": result.probabilities.tolist(),  # floats round-trip exactly
            "history": result.history,
            "seconds": result.seconds,
            "seed": result.seed,
            "seed_scheme": None if result.seed is None else SEED_SCHEME,
            **({} if result.regions is None else {"aus": result.aus, "regions": result.regions}),
        },
    )


def load_fold_result(fold: Fold, fold_dir: Path) -> FoldResult | None:
    """A completed fold's result, or None if the fold has not finished.

    Raises:
        DataError: the stored fold held other clips (the data changed since).
    """
    path = fold_dir / RESULT_FILE
    if not path.is_file():
        return None
    stored = json.loads(path.read_text())
    if stored["test"] != fold.test.tolist():
        raise DataError(f"{path}: the fold's clips differ from the current data; start a new run")
    return FoldResult(
        fold.subject,
        fold.test,
        np.asarray(stored["probabilities"], dtype=np.float64),
        stored["history"],
        stored["seconds"],
        stored.get("seed"),
        stored.get("aus"),
        stored.get("regions"),
    )


class TrainingError(RuntimeError):
    """Training went wrong in a way that retrying with the same settings would repeat."""


class FiniteLossGuard(keras.callbacks.Callback):
    """Stops a fold whose loss becomes NaN or infinite, naming where, instead of letting NaN
    probabilities turn into silent argmax-0 predictions. (Inputs cannot be the cause: clips
    are uint8 and every normalisation divides by a std plus an epsilon.)"""

    def __init__(self, fold: str):
        super().__init__()
        self.fold = fold
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(float(loss)):
            raise TrainingError(
                f"fold {self.fold}: the loss became {float(loss)} at epoch {self.epoch + 1}, "
                f"batch {batch + 1}; lower train.learning_rate"
            )


class InterruptGuard(keras.callbacks.Callback):
    """Turns Ctrl-C (SIGINT) or SIGTERM into a KeyboardInterrupt at the next batch boundary.

    Python raises KeyboardInterrupt wherever the signal lands, including inside a weakref
    callback or finaliser that swallows it ("Exception ignored in ..."), so a Ctrl-C could be
    lost and the run go on. While the guard is active the signal only sets a flag, which this
    callback checks after every batch; a second Ctrl-C interrupts at once.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        super().__init__()
        self.requested = False
        self.previous: dict[int, object] = {}

    def __enter__(self) -> InterruptGuard:
        if threading.current_thread() is threading.main_thread():  # signals need the main thread
            for number in self.SIGNALS:
                self.previous[number] = signal.signal(number, self._request)
        return self

    def __exit__(self, *exception) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)
        self.previous.clear()

    def _request(self, number: int, frame) -> None:
        if self.requested:  # asked twice: stop now
            raise KeyboardInterrupt
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def check(self) -> None:
        """Raises KeyboardInterrupt if an interrupt was requested."""
        if self.requested:
            raise KeyboardInterrupt

    def on_train_batch_end(self, batch, logs=None) -> None:
        self.check()

    def on_test_batch_end(self, batch, logs=None) -> None:
        self.check()

    def on_predict_batch_end(self, batch, logs=None) -> None:
        self.check()


def make_deterministic() -> None:
    """Deterministic kernels where the backend offers a switch (TensorFlow), so that the same
    seed gives the same predictions on CPU, and a resumed run equals an uninterrupted one."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()

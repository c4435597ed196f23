"""The final model: after the LOSO folds, one model trained on every subject, for later use.

It is trained exactly as a fold (same epochs, schedule and batch size; its own seed), with the
normalisation statistics measured on all clips, and saved with what `predict` needs. It is never
evaluated here: the LOSO folds are the estimate of how it does on new subjects. A run with
data.regions.aus=predicted trains its AU detector on every subject the same way, saved beside it
(`final_au_detector.keras`), so that `predict` chooses a new clip's region as the folds did.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np

from mer.bundle import MODEL_FILE, save_bundle
from mer.config import ExperimentConfig
from mer.data.batches import ClipBatches, Normalizer, feed, fit_normalizers
from mer.models import model_family
from mer.training.distribution import distribution_scope, even_batches
from mer.training.loso import (
    FiniteLossGuard,
    InterruptGuard,
    TargetBatches,
    _fit_verbosity,
    build_model,
    build_training_state,
    final_model_seed,
    fit_family,
    step_batch_size,
)
from mer.training.schedules import step_decay


def train_final_model(
    streams: Sequence[Sequence[np.ndarray]],
    labels: np.ndarray,
    config: ExperimentConfig,
    run_dir: Path,
    *,
    subjects: int,
    targets: np.ndarray | None = None,
    file: str = MODEL_FILE,
) -> Path:
    """Trains one model on every clip and saves it as `<run_dir>/<file>` (+ .json).

    Args:
        streams: the uint8 clips, one list per model input.
        labels: class index per clip.
        config: the run's config (data.classes resolved).
        run_dir: the run folder.
        subjects: number of subjects trained on, recorded beside the model.
        targets: the family's per-clip targets besides the labels (`ModelFamily.targets`).
        file: the model's file name (the AU detector's: `mer.bundle.DETECTOR_FILE`).

    Returns:
        The saved model's path. A run resumed after the final model was saved reuses it.
    """
    path = run_dir / file
    name = "Final model" if file == MODEL_FILE else f"Final model's {path.stem}"
    if path.is_file() and path.with_suffix(".json").is_file():
        print(f"\n{name}: saved earlier, reused ({path})", flush=True)
        return path
    print(f"\n{name}: training on all {len(labels)} clips of {subjects} subjects", flush=True)
    started = time.perf_counter()
    keras.backend.clear_session()  # before the scope: it forgets the current distribution
    seed = final_model_seed(config.seed)  # a stream of its own, shared with no fold
    keras.utils.set_random_seed(seed)
    try:
        with InterruptGuard() as guard, distribution_scope(config) as replicas:
            model, normalizers, curves = _fit(
                streams, labels, targets, config, seed, guard, replicas
            )
    except KeyboardInterrupt:
        print(
            f"\nInterrupted while training the final model; the LOSO results in {run_dir} are "
            f"complete. To train it, run the script again with --resume {run_dir}",
            file=sys.stderr,
        )
        raise
    training = {
        "clips": len(labels),
        "subjects": subjects,
        "epochs": config.train.epochs,
        "seed": seed,
        "seconds": round(time.perf_counter() - started, 2),
        "history": curves,
    }
    save_bundle(path, model, config, normalizers, training)
    print(f"{name}: {path}", flush=True)
    return path


def _fit(
    streams: Sequence[Sequence[np.ndarray]],
    labels: np.ndarray,
    targets: np.ndarray | None,
    config: ExperimentConfig,
    seed: int,
    guard: InterruptGuard,
    replicas: int,
) -> tuple[keras.Model, list[Normalizer], dict[str, list[float]]]:
    """The model trained on every clip, its normalisers and its curves; each batch split over
    `replicas` devices as a fold's are."""
    normalizers = fit_normalizers(config.data, streams)
    batches = ClipBatches(
        streams,
        labels,
        len(config.data.classes),
        step_batch_size(config),
        normalizers,
        shuffle=True,
        seed=seed,
        targets=targets,
    )
    batches = even_batches(batches, replicas, training=True)  # each device gets a share
    if model_family(config.model.family).predicts == "aus":  # trains on the targets alone
        batches = TargetBatches(batches)
    model = build_model(config)
    if model_family(config.model.family).fit is not None:
        return model, normalizers, fit_family(model, streams, labels, normalizers, config, seed)
    schedule = step_decay(
        config.train.learning_rate, config.train.decay_epochs, config.train.decay_factor
    )
    build_training_state(model, batches)
    history = model.fit(
        feed(batches, config.data.workers, shuffle=True),
        epochs=config.train.epochs,
        shuffle=False,  # the feed shuffles the batch order, as fit would
        callbacks=[
            guard,
            FiniteLossGuard("final"),
            keras.callbacks.LearningRateScheduler(schedule),
        ],
        verbose=_fit_verbosity(config.train.verbose),
    )
    curves = {key: [float(value) for value in values] for key, values in history.history.items()}
    return model, normalizers, curves

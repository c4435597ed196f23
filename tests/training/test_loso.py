"""LOSO folds: no subject on both sides, every clip predicted exactly once."""

import os
import signal
from pathlib import Path

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mer.config import ConfigError, load_config
from mer.training import final, loso
from mer.training.loso import (
    SEED_SCHEME,
    FiniteLossGuard,
    InterruptGuard,
    TrainingError,
    build_model,
    build_training_state,
    final_model_seed,
    fold_seed,
    loso_folds,
    seed_scheme,
    step_batch_size,
    train_fold,
)
from tests.test_end_to_end import FLAT


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.sampled_from(["sub1", "sub2", "sub10", "s3", "7"]), min_size=3, max_size=40),
    st.integers(0, 2),
)
def test_folds_partition_the_clips(subjects, validation):
    names = set(subjects)
    if len(names) < 2:
        with pytest.raises(ValueError):
            loso_folds(subjects)
        return
    validation = min(validation, len(names) - 2)
    folds = loso_folds(subjects, validation, seed=3)
    order = [fold.subject for fold in folds]
    assert sorted(order) == sorted(names) and len(order) == len(names)
    if {"sub2", "sub10"} <= names:
        assert order.index("sub2") < order.index("sub10")  # natural, not lexical, order
    tested = np.concatenate([fold.test for fold in folds])
    assert sorted(tested) == list(range(len(subjects)))  # every clip exactly once
    for fold in folds:
        test_subjects = {subjects[i] for i in fold.test}
        train_subjects = {subjects[i] for i in fold.train}
        validation_subjects = {subjects[i] for i in fold.validation}
        assert test_subjects == {fold.subject}
        assert fold.subject not in train_subjects | validation_subjects
        assert not train_subjects & validation_subjects
        assert len(validation_subjects) == validation
        assert len(fold.train) + len(fold.validation) + len(fold.test) == len(subjects)


def test_validation_subjects_bounds():
    with pytest.raises(ValueError, match="validation_subjects"):
        loso_folds(["a", "b", "c"], validation_subjects=2)


def test_a_nan_loss_stops_the_fold_with_where():
    guard = FiniteLossGuard("sub07")
    guard.on_epoch_begin(2)
    guard.on_train_batch_end(0, {"loss": 0.5})
    with pytest.raises(TrainingError, match=r"fold sub07: the loss became nan at epoch 3, batch 5"):
        guard.on_train_batch_end(4, {"loss": float("nan")})
    with pytest.raises(TrainingError, match="inf"):
        guard.on_train_batch_end(0, {"loss": np.float32("inf")})


def test_ctrl_c_is_honoured_at_the_next_batch_not_lost():
    previous = signal.getsignal(signal.SIGINT)
    with InterruptGuard() as guard:
        os.kill(os.getpid(), signal.SIGINT)  # lands anywhere: only a flag is set
        assert guard.requested
        with pytest.raises(KeyboardInterrupt):
            guard.on_train_batch_end(0)
        with pytest.raises(KeyboardInterrupt):  # a second Ctrl-C stops at once
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is previous


@pytest.mark.slow
def test_micro_batches_give_the_same_update_as_the_whole_batch():
    overrides = ["data.frames=4", "data.size=16", "model.branch_filters=2",
                 "model.merge_filters=2", "model.dense_units=[4]", "model.head_units=[4]",
                 *FLAT,  # the optimiser's accumulation is under test, not the layers
                 "model.dropout=0", "train.batch_size=8"]  # no dropout: no random draws
    clips = np.random.default_rng(0).standard_normal((8, 4, 16, 16, 3)).astype("float32")
    targets = np.eye(3, dtype="float32")[[0, 1, 2, 0, 1, 2, 0, 1]]
    weights = []
    for micro_batches in (1, 2):
        config = load_config(None, [*overrides, f"train.micro_batches={micro_batches}"])
        keras.utils.set_random_seed(0)
        model = build_model(config)
        model.fit(clips, targets, batch_size=step_batch_size(config), epochs=2, shuffle=False,
                  verbose=0)
        weights.append(model.get_weights())
    for whole, parts in zip(*weights, strict=True):
        np.testing.assert_allclose(whole, parts, rtol=1e-4, atol=1e-5)
    with pytest.raises(ConfigError, match="multiple of train.micro_batches"):
        load_config(None, ["train.batch_size=8", "train.micro_batches=3"])


class _TracedDense(keras.layers.Dense):
    """Counts the Python runs of its call: in graph mode, one per trace of a step."""

    runs = 0

    def call(self, inputs):
        _TracedDense.runs += 1
        return super().call(inputs)


class _OneBatch(keras.utils.PyDataset):
    def __init__(self):
        super().__init__()
        random = np.random.default_rng(0)
        self.batch = (random.standard_normal((6, 5)).astype("float32"),
                      np.eye(3, dtype="float32")[[0, 1, 2, 0, 1, 2]])

    def __len__(self):
        return 1

    def __getitem__(self, index):
        return self.batch


def test_the_training_step_is_traced_once_and_trains_the_same():
    """Without build_training_state, Keras creates the optimiser's and metrics' variables in
    the first traced step, which TensorFlow then traces a second time."""
    weights, traces = [], []
    for prepare in (True, False):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((5,)), _TracedDense(4), keras.layers.Dense(3)])
        model.compile(optimizer="adam", loss=keras.losses.CategoricalCrossentropy(True),
                      metrics=["accuracy"])
        batches = _OneBatch()
        if prepare:
            build_training_state(model, batches)
        _TracedDense.runs = 0
        model.fit(batches, epochs=3, verbose=0)
        traces.append(_TracedDense.runs)
        weights.append(model.get_weights())
    assert traces == [1, 2]
    for prepared, lazy in zip(*weights, strict=True):
        np.testing.assert_array_equal(prepared, lazy)


def test_no_two_seeds_or_folds_share_a_random_stream():
    """Fold i used to be seeded seed + i: fold k of seed 2 was fold k + 1 of seed 1."""
    subjects = [f"sub{index:02d}" for index in range(1, 27)]
    drawn = [fold_seed(seed, subject) for seed in (1, 2, 3) for subject in subjects]
    drawn += [final_model_seed(seed) for seed in (1, 2, 3)]
    assert len(set(drawn)) == len(drawn)
    assert all(0 <= value < 2**31 for value in drawn)  # what keras and TensorFlow accept
    assert fold_seed(2, "sub03") == fold_seed(2, "sub03")  # a function of (seed, subject)


class _Seeded(Exception):
    """Stops a fold once it has been seeded."""


def _record_seeds(monkeypatch) -> list[int]:
    seeds = []

    def record(seed):
        seeds.append(seed)
        raise _Seeded

    monkeypatch.setattr(loso.keras.utils, "set_random_seed", record)
    return seeds


@pytest.mark.slow
def test_folds_and_the_final_model_are_seeded_by_the_scheme(monkeypatch):
    seeds = _record_seeds(monkeypatch)
    config = load_config(None, ["seed=7"])
    for fold in loso_folds(["a", "b", "b"]):
        with pytest.raises(_Seeded):
            train_fold(fold, [[]], np.array([]), config, None)
    assert seeds == [fold_seed(7, "a"), fold_seed(7, "b")]
    with pytest.raises(_Seeded):
        final.train_final_model([[]], np.array([0]), config, Path("/nonexistent"), subjects=1)
    assert seeds[-1] == final_model_seed(7)


def test_the_seed_scheme_of_old_and_new_fold_results():
    def result(seed):
        return loso.FoldResult("a", np.array([0]), np.ones((1, 2)) / 2, {}, 0.0, seed)

    assert seed_scheme([result(5), result(6)]) == SEED_SCHEME
    assert seed_scheme([result(None)]) == "seed + fold index"
    assert seed_scheme([result(None), result(5)]).startswith("mixed: ")


@pytest.mark.slow
def test_a_reused_model_predicts_as_a_new_model_per_fold(tmp_path):
    """FoldModels traces once per run; every fold still starts from a new model's state."""
    config = load_config(None, ["data.frames=4", "data.size=16", "train.epochs=2",
                                "train.batch_size=2", "model.branch_filters=2",
                                "model.merge_filters=2", "model.gru_units=16", "model.heads=3",
                                "model.dense_units=[4]", "model.head_units=[4]",
                                "run.tensorboard=false", "run.save_weights=false"])
    random = np.random.default_rng(3)
    clips = [random.integers(0, 255, (4, 16, 16, 3), dtype=np.uint8) for _ in range(6)]
    labels = np.array([0, 1, 2] * 2)
    first, second = loso_folds(["a"] * 3 + ["b"] * 3)
    models = loso.FoldModels()
    train_fold(first, [clips], labels, config, tmp_path / "a", models=models)  # builds it
    compiled = models.model
    reused = train_fold(second, [clips], labels, config, tmp_path / "b", models=models)
    assert models.model is compiled  # one network, traced once
    new = train_fold(second, [clips], labels, config, tmp_path / "new")  # a model of its own
    np.testing.assert_array_equal(new.probabilities, reused.probabilities)
    assert new.history == reused.history

"""Leakage audit: the held-out subject reaches nothing but the final prediction."""

import numpy as np
import pytest

import mer.training.loso as loso
from mer.config import load_config
from mer.data.batches import Normalizer
from mer.training.loso import loso_folds, train_fold
from tests.test_end_to_end import FLAT

# a flat one-branch network (no attention, recurrence or pooling): the data path is under test
TINY = ["data.frames=4", "data.size=16", "train.epochs=2", "train.batch_size=2",
        "model.branch_filters=2", "model.merge_filters=2", "model.dense_units=[4, 4]",
        "model.head_units=[4, 4]", *FLAT, "run.tensorboard=false",
        "data.normalization=train_fold", "train.validation_subjects=1"]


@pytest.mark.slow
def test_held_out_clips_reach_only_the_final_prediction(tmp_path, monkeypatch):
    subjects = ["a"] * 4 + ["b"] * 4 + ["c"] * 4
    random = np.random.default_rng(0)
    clips = [random.integers(0, 200, (4, 16, 16, 3), dtype=np.uint8) for _ in subjects]
    labels = np.array([0, 1, 2, 0] * 3)
    fold = loso_folds(subjects, validation_subjects=1, seed=0)[1]  # subject "b" held out
    held_out = {id(clips[row]) for row in fold.test}
    assert len(held_out) == 4

    seen = {"fit_statistics": [], "labelled_batches": [], "prediction_batches": []}
    real_fit, real_batches = Normalizer.fit, loso.ClipBatches

    def recording_fit(mode, stream):
        seen["fit_statistics"].extend(id(clip) for clip in stream)
        return real_fit(mode, stream)

    def recording_batches(streams, batch_labels, *arguments, **keywords):
        kind = "prediction_batches" if batch_labels is None else "labelled_batches"
        seen[kind].extend(id(clip) for stream in streams for clip in stream)
        return real_batches(streams, batch_labels, *arguments, **keywords)

    monkeypatch.setattr(Normalizer, "fit", staticmethod(recording_fit))
    monkeypatch.setattr(loso, "ClipBatches", recording_batches)
    fitted_callbacks = []
    real_fit_method = loso.keras.Model.fit

    def recording_model_fit(model, *arguments, **keywords):
        fitted_callbacks.extend(type(c).__name__ for c in keywords.get("callbacks", []))
        return real_fit_method(model, *arguments, **keywords)

    monkeypatch.setattr(loso.keras.Model, "fit", recording_model_fit)

    config = load_config(None, TINY)
    result = train_fold(fold, [clips], labels, config, tmp_path / "fold")

    # Normalisation statistics, training and validation batches: never a held-out clip.
    assert seen["fit_statistics"] and not held_out & set(seen["fit_statistics"])
    assert seen["labelled_batches"] and not held_out & set(seen["labelled_batches"])
    # The held-out clips are predicted, exactly once each, with no labels attached.
    assert sorted(seen["prediction_batches"]) == sorted(held_out)
    # No callback could choose an epoch or a checkpoint: only the learning-rate schedule and the
    # NaN-loss guard run (both see training batches alone),
    # and the weights used are those after the last epoch (one history entry per epoch).
    assert fitted_callbacks == ["FiniteLossGuard", "LearningRateScheduler"]
    assert len(result.history["loss"]) == config.train.epochs
    assert result.probabilities.shape == (4, 3)


@pytest.mark.slow
def test_the_audit_sees_the_paper_protocol_leak(tmp_path, monkeypatch):
    """The published protocol validates on, and picks its epoch with, the held-out subject."""
    subjects = ["a"] * 3 + ["b"] * 3
    random = np.random.default_rng(1)
    clips = [random.integers(0, 200, (4, 16, 16, 3), dtype=np.uint8) for _ in subjects]
    labels = np.array([0, 1, 2] * 2)
    fold = loso_folds(subjects)[0]
    held_out = {id(clips[row]) for row in fold.test}
    labelled = []
    real_batches = loso.ClipBatches

    def recording_batches(streams, batch_labels, *arguments, **keywords):
        if batch_labels is not None:
            labelled.extend(id(clip) for stream in streams for clip in stream)
        return real_batches(streams, batch_labels, *arguments, **keywords)

    monkeypatch.setattr(loso, "ClipBatches", recording_batches)
    overrides = [item for item in TINY if "validation_subjects" not in item]
    config = load_config(None, overrides + ["eval.protocol=paper"])
    result = train_fold(fold, [clips], labels, config, tmp_path / "fold")
    assert held_out <= set(labelled)  # the leak the default protocol never has
    assert (tmp_path / "fold" / "best_on_test_subject.weights.h5").is_file()
    assert "val_accuracy" in result.history


@pytest.mark.slow
def test_the_audit_sees_the_dataset_global_leak(tmp_path, monkeypatch):
    """The published normalisation measures its statistics on every clip, held-out ones too."""
    subjects = ["a"] * 3 + ["b"] * 3
    random = np.random.default_rng(2)
    clips = [random.integers(0, 200, (4, 16, 16, 3), dtype=np.uint8) for _ in subjects]
    fold = loso_folds(subjects)[0]
    measured = []
    real_fit = Normalizer.fit

    class Measured(Exception):
        """Stops the fold once its statistics are taken: the rest is the default's."""

    def recording_fit(mode, stream):
        measured.extend(id(clip) for clip in stream)
        real_fit(mode, stream)
        raise Measured

    monkeypatch.setattr(Normalizer, "fit", staticmethod(recording_fit))
    overrides = [item for item in TINY if "normalization" not in item and "validation" not in item]
    config = load_config(None, overrides + ["data.normalization=dataset_global"])
    with pytest.raises(Measured):
        train_fold(fold, [clips], np.array([0, 1, 2] * 2), config, tmp_path / "fold")
    assert {id(clips[row]) for row in fold.test} <= set(measured)

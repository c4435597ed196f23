"""The Ray executor's bookkeeping (retries, failures, resume) with a stand-in for Ray, so it
runs without Ray and without training; tests/test_scale_out.py runs the real thing."""

import sys

import numpy as np
import pytest

from mer.config import ConfigError, load_config
from mer.training import executors
from mer.training.executors import FoldsFailed, RayExecutor, select_folds
from mer.training.loso import Fold, FoldResult, TrainingError


class FakeRay:
    """Runs each submitted fold at `get`, with the next scripted outcome for its subject: "ok"
    or an exception to raise (as `ray.get` raises a task's error)."""

    class exceptions:  # as `ray.exceptions`
        class RayError(Exception):
            pass

    def __init__(self, outcomes: dict[str, list]):
        self.outcomes = outcomes
        self.submitted: list[str] = []
        self.options: dict = {}
        self.pending: dict[object, Fold] = {}

    def is_initialized(self) -> bool:
        return True

    def remote(self, function):
        fake = self

        class Task:
            def options(self, **options):
                fake.options = options
                return self

            def remote(self, fold, streams, labels, config):
                reference = object()
                fake.pending[reference] = fold
                fake.submitted.append(fold.subject)
                return reference

        return Task()

    def put(self, value):
        return value

    def wait(self, references, num_returns, timeout):
        return references[:num_returns], references[num_returns:]

    def get(self, reference):
        fold = self.pending.pop(reference)
        outcome = self.outcomes[fold.subject].pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        result = FoldResult(
            fold.subject, fold.test, np.full((1, 2), 0.5), {"loss": [1.0]}, 0.1, seed=1
        )
        return result, {"history.json": b'{"loss": [1.0]}'}

    def cancel(self, reference, force=False):
        pass


class TaskTrainingError(FakeRay.exceptions.RayError, TrainingError):
    """What `ray.get` raises for a task that raised a TrainingError: an instance of both."""


def _folds():
    return [
        Fold(name, index, np.array([]), np.array([]), np.array([index]))
        for index, name in enumerate(["s1", "s2", "s3", "s4"])
    ]


def test_failed_folds_are_retried_then_reported_and_the_others_kept(tmp_path, monkeypatch):
    ray = FakeRay(
        {
            "s1": ["ok"],
            "s2": [FakeRay.exceptions.RayError("worker died"), "ok"],  # once: retried
            "s3": [FakeRay.exceptions.RayError("x"), FakeRay.exceptions.RayError("boom\ntrace")],
            "s4": [TaskTrainingError("the loss became nan")],  # the seed would repeat it
        }
    )
    monkeypatch.setattr(executors, "import_ray", lambda: ray)
    config = load_config(None, ["run.executor=ray", "run.fold_retries=1", "run.ray_num_gpus=0.5"])
    with pytest.raises(FoldsFailed) as failed:
        RayExecutor().run(_folds(), [[]], np.array([]), config, tmp_path)
    assert ray.submitted == ["s1", "s2", "s3", "s4", "s2", "s3"]
    assert ray.options["num_gpus"] == 0.5 and ray.options["max_retries"] == 0
    assert list(failed.value.failures) == ["s3", "s4"]
    failed.value.resume = "python ME_model.py --resume RUN"
    message = str(failed.value)
    assert "\n" not in message
    assert message == (
        "folds s3, s4 failed (s3 after 2 attempts: RayError: boom; s4 after 1 attempt: "
        "TaskTrainingError: the loss became nan); the finished folds are saved; "
        "rerun the failed folds with: python ME_model.py --resume RUN"
    )
    for subject, done in (("s1", True), ("s2", True), ("s3", False), ("s4", False)):
        assert (tmp_path / "folds" / subject / "fold_result.json").is_file() == done
    assert (tmp_path / "folds" / "s1" / "history.json").read_text() == '{"loss": [1.0]}'

    ray.outcomes = {"s3": ["ok"], "s4": ["ok"]}  # resumed: only the failed folds run again
    ray.submitted = []
    results = RayExecutor().run(_folds(), [[]], np.array([]), config, tmp_path)
    assert ray.submitted == ["s3", "s4"]
    assert [result.subject for result in results] == ["s1", "s2", "s3", "s4"]


def test_ray_missing_is_a_config_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(ConfigError, match="pip install -r requirements-ray.txt"):
        executors.import_ray()


def test_select_folds_keeps_fold_order_and_names_unknown_subjects():
    folds = _folds()
    assert [fold.subject for fold in select_folds(folds, ["s3", "s1"])] == ["s1", "s3"]
    assert select_folds(folds, None) == folds
    with pytest.raises(ConfigError, match="no fold holds out s9; the folds are s1, s2, s3, s4"):
        select_folds(folds, ["s1", "s9"])


def test_scale_out_settings_are_checked():
    with pytest.raises(ConfigError, match="run.fold_retries must be >= 0, got -1"):
        load_config(None, ["run.fold_retries=-1"])
    with pytest.raises(ConfigError, match="run.executor"):
        load_config(None, ["run.executor=slurm"])
    with pytest.raises(ConfigError, match="train.distribution"):
        load_config(None, ["train.distribution=model_parallel"])

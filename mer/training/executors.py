"""Where the folds run (`run.executor`): one after another in this process, or as Ray tasks.

Both executors receive the clips, their labels and, for a family that trains on more than the
classes (`ModelFamily.targets`), every clip's targets, of which a fold reads its training
clips' rows; with data.regions.aus=predicted, what a fold's AU detector needs
(`mer.training.loso.PredictedRegions`). Both fill the same run folder: `folds/<subject>/` holds
what `train_fold` writes (history, normalisation, weights, TensorBoard logs) and, written last,
`fold_result.json`, whose presence marks a finished fold. A folder resumed with either executor
reuses its finished folds, so a run can be started locally and finished on a cluster, or the
other way round.

- `local` (default): today's loop; Ctrl-C stops at the next batch.
- `ray`: each fold is a Ray task with `run.ray_num_cpus` / `run.ray_num_gpus`. The clips are
  put into Ray's object store once and shared by every task; a task trains in a scratch folder
  on its worker and returns its result and files to this process, which writes them into the
  run folder (no shared file system needed). A failed task is run again up to
  `run.fold_retries` times (a `TrainingError`, such as a NaN loss, is not: the seed would
  repeat it); folds that still fail are named in one `FoldsFailed` error after every other
  fold has finished and been saved. Each task sets up determinism and seeds its fold exactly as
  the local loop does, so on CPU both executors give the same `predictions.csv`.

Ray is an optional dependency (`pip install -r requirements-ray.txt`), imported only here.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import keras
import numpy as np

from mer.config import ConfigError, ExperimentConfig
from mer.io import write_atomically
from mer.training.loso import (
    OLD_SEED_SCHEME,
    Fold,
    FoldModels,
    FoldResult,
    InterruptGuard,
    PredictedRegions,
    TrainingError,
    load_fold_result,
    make_deterministic,
    save_fold_result,
    train_fold,
)

POLL_SECONDS = 0.5  # how often the Ray driver looks for finished folds and for Ctrl-C


class Executor(Protocol):
    """Runs folds and returns their results in fold order, saving each as it finishes."""

    def run(
        self,
        folds: Sequence[Fold],
        streams: Sequence[Sequence[np.ndarray]],
        labels: np.ndarray,
        config: ExperimentConfig,
        run_dir: Path,
        targets: np.ndarray | None = None,
        regions: PredictedRegions | None = None,
    ) -> list[FoldResult]: ...


def run_loso(
    folds: Sequence[Fold],
    streams: Sequence[Sequence[np.ndarray]],
    labels: np.ndarray,
    config: ExperimentConfig,
    run_dir: Path,
    targets: np.ndarray | None = None,
    regions: PredictedRegions | None = None,
) -> list[FoldResult]:
    """Trains and predicts every fold, reusing folds a previous attempt completed: one after
    another in this process, or as Ray tasks, as `run.executor` says (see the module
    docstring); `targets` and `regions` as `train_fold` takes them. Returns the results in
    fold order."""
    return make_executor(config).run(folds, streams, labels, config, run_dir, targets, regions)


def make_executor(config: ExperimentConfig) -> Executor:
    """The executor that `run.executor` names."""
    return RayExecutor() if config.run.executor == "ray" else LocalExecutor()


class FoldsFailed(TrainingError):
    """Folds that failed on every attempt; the finished folds' results are saved.

    Args:
        failures: held-out subject -> (attempts made, the last error in one line).
    """

    def __init__(self, failures: dict[str, tuple[int, str]]):
        self.failures = failures
        self.resume = ""  # the command that reruns them, set by the caller that knows it
        super().__init__()

    def __str__(self) -> str:
        reasons = "; ".join(
            f"{subject} after {attempts} attempt{'s' if attempts > 1 else ''}: {reason}"
            for subject, (attempts, reason) in self.failures.items()
        )
        text = (
            f"fold{'s' if len(self.failures) > 1 else ''} {', '.join(self.failures)} failed "
            f"({reasons}); the finished folds are saved"
        )
        return f"{text}; rerun the failed folds with: {self.resume}" if self.resume else text


def fold_header(position: int, folds: Sequence[Fold], fold: Fold) -> str:
    return f"Fold {position + 1}/{len(folds)}: held-out subject {fold.subject}"


def reuse_finished(
    folds: Sequence[Fold], run_dir: Path
) -> tuple[dict[str, FoldResult], list[Fold]]:
    """The folds a previous attempt finished (announced) and the folds still to train.

    Raises:
        ConfigError: the finished folds were seeded by the scheme of older versions, which
            new folds would not follow.
    """
    finished, remaining = finished_folds(folds, run_dir)
    old = sorted(subject for subject, result in finished.items() if result.seed is None)
    if old and remaining:
        raise ConfigError(
            f"{run_dir}: its folds {', '.join(old)} were seeded as '{OLD_SEED_SCHEME}' (an older "
            "version), new folds would not be; start a new run (python -m mer merge still reads "
            "this folder)"
        )
    for position, fold in enumerate(folds):
        if fold.subject in finished:
            print(f"\n{fold_header(position, folds, fold)}: completed earlier, result reused")
    return finished, remaining


def _training_line(fold: Fold) -> str:
    return f"({len(fold.test)} clips), training on {len(fold.train)} clips" + (
        f", validating on {len(fold.validation)}" if len(fold.validation) else ""
    )


class LocalExecutor:
    """Every fold in turn, in this process."""

    def run(
        self,
        folds: Sequence[Fold],
        streams: Sequence[Sequence[np.ndarray]],
        labels: np.ndarray,
        config: ExperimentConfig,
        run_dir: Path,
        targets: np.ndarray | None = None,
        regions: PredictedRegions | None = None,
    ) -> list[FoldResult]:
        make_deterministic()
        results, remaining = reuse_finished(folds, run_dir)
        positions = {fold.subject: position for position, fold in enumerate(folds)}
        models = FoldModels()  # one compiled network for every fold trained here
        detectors = FoldModels()  # and one AU detector (data.regions.aus=predicted)
        with InterruptGuard() as guard:
            for fold in remaining:
                guard.check()
                header = fold_header(positions[fold.subject], folds, fold)
                print(f"\n{header} {_training_line(fold)}", flush=True)
                fold_dir = run_dir / "folds" / fold.subject
                result = train_fold(
                    fold,
                    streams,
                    labels,
                    config,
                    fold_dir,
                    callbacks=[guard],
                    models=models,
                    targets=targets,
                    regions=regions,
                    detectors=detectors,
                )
                save_fold_result(result, fold_dir)
                results[fold.subject] = result
        return [results[fold.subject] for fold in folds]


def import_ray() -> Any:
    """The `ray` module, or a config error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "run.executor=ray needs Ray: pip install -r requirements-ray.txt "
            "(or use the default run.executor=local)"
        ) from None
    return ray


def _ray_fold_task(
    fold: Fold,
    streams: Sequence[Sequence[np.ndarray]],
    supervision: tuple[np.ndarray, np.ndarray | None, PredictedRegions | None],
    config: ExperimentConfig,
) -> tuple[FoldResult, dict[str, bytes]]:
    """One fold on a Ray worker: the local loop's determinism and seeding, a scratch fold
    folder, and the folder's files returned with the result (the driver writes them).
    `supervision`: the labels, the family's targets and the predicted regions' inputs (or
    None each, as `train_fold` takes them), one object in the store."""
    make_deterministic()
    labels, targets, regions = supervision
    with tempfile.TemporaryDirectory(prefix=f"mer-fold-{fold.subject}-") as scratch:
        result = train_fold(
            fold, streams, labels, config, Path(scratch), targets=targets, regions=regions
        )
        files = {
            path.relative_to(scratch).as_posix(): path.read_bytes()
            for path in sorted(Path(scratch).rglob("*"))
            if path.is_file()
        }
    return result, files


def _one_line(error: BaseException) -> str:
    """The first line of an error's message, with its type; for a task's own error, the
    original one (a Ray task error's text is the worker's whole traceback)."""
    cause = getattr(error, "cause", None) or error
    lines = [line.strip() for line in str(cause).strip().splitlines() if line.strip()]
    text = lines[0] if lines else ""
    name = type(cause).__name__
    return text if text.startswith(name) else f"{name}: {text}"


class RayExecutor:
    """Every fold as a Ray task; results written into the run folder by this process."""

    def run(
        self,
        folds: Sequence[Fold],
        streams: Sequence[Sequence[np.ndarray]],
        labels: np.ndarray,
        config: ExperimentConfig,
        run_dir: Path,
        targets: np.ndarray | None = None,
        regions: PredictedRegions | None = None,
    ) -> list[FoldResult]:
        ray = import_ray()
        results, remaining = reuse_finished(folds, run_dir)
        if not remaining:
            return [results[fold.subject] for fold in folds]
        started_here = self._connect(ray, config)
        try:
            self._run_remaining(
                ray, folds, remaining, streams, labels, targets, config, run_dir, results, regions
            )
        finally:
            if started_here:
                ray.shutdown()
        return [results[fold.subject] for fold in folds]

    @staticmethod
    def _connect(ray: Any, config: ExperimentConfig) -> bool:
        """Joins `run.ray_address`, or starts Ray here; True if this call started it (and
        stops it at the end). A Ray already initialised in this process is used as it is."""
        if ray.is_initialized():
            return False
        address = config.run.ray_address
        runtime_env = {}
        if address is not None:  # other machines may not have this checkout: ship the package
            runtime_env["py_modules"] = [str(Path(__file__).resolve().parents[1])]
        print(f"Ray: {'joining ' + address if address else 'starting a local instance'}")
        ray.init(address=address or "local", runtime_env=runtime_env or None)
        return True

    def _run_remaining(
        self,
        ray: Any,
        folds: Sequence[Fold],
        remaining: Sequence[Fold],
        streams: Sequence[Sequence[np.ndarray]],
        labels: np.ndarray,
        targets: np.ndarray | None,
        config: ExperimentConfig,
        run_dir: Path,
        results: dict[str, FoldResult],
        regions: PredictedRegions | None = None,
    ) -> None:
        # workers use this process's Keras backend, whatever their environment says
        env_vars = {"KERAS_BACKEND": keras.backend.backend()}
        if 0 < config.run.ray_num_gpus < 1:  # tasks share a GPU: take memory as needed
            env_vars.update(TF_FORCE_GPU_ALLOW_GROWTH="true", XLA_PYTHON_CLIENT_PREALLOCATE="false")
        task = ray.remote(_ray_fold_task).options(
            num_cpus=config.run.ray_num_cpus,
            num_gpus=config.run.ray_num_gpus,
            max_retries=0,  # retried here, where failures are counted and reported
            runtime_env={"env_vars": env_vars},
        )
        shared_streams = ray.put(streams)  # once, read by every task without a copy
        shared_supervision = ray.put((labels, targets, regions))
        positions = {fold.subject: position for position, fold in enumerate(folds)}
        attempts = 1 + config.run.fold_retries
        running: dict[Any, tuple[Fold, int]] = {}  # task -> its fold, which attempt

        def submit(fold: Fold, attempt: int) -> None:
            reference = task.remote(fold, shared_streams, shared_supervision, config)
            running[reference] = (fold, attempt)

        for fold in remaining:
            print(f"\n{fold_header(positions[fold.subject], folds, fold)} {_training_line(fold)}")
            submit(fold, 1)
        print(
            f"Ray: {len(remaining)} fold task{'s' if len(remaining) > 1 else ''} submitted "
            f"({config.run.ray_num_cpus:g} CPU, {config.run.ray_num_gpus:g} GPU each)",
            flush=True,
        )
        failures: dict[str, tuple[int, str]] = {}
        try:
            with InterruptGuard() as guard:
                while running:
                    ready, _ = ray.wait(list(running), num_returns=1, timeout=POLL_SECONDS)
                    guard.check()
                    for reference in ready:
                        fold, attempt = running.pop(reference)
                        try:
                            result, files = ray.get(reference)
                        except ray.exceptions.RayError as error:
                            reason = _one_line(error)
                            retry = attempt < attempts and not isinstance(error, TrainingError)
                            print(
                                f"Fold {fold.subject} failed (attempt {attempt} of {attempts}): "
                                f"{reason}" + ("; trying again" if retry else ""),
                                file=sys.stderr,
                                flush=True,
                            )
                            if retry:
                                submit(fold, attempt + 1)
                            else:
                                failures[fold.subject] = (attempt, reason)
                            continue
                        fold_dir = run_dir / "folds" / fold.subject
                        for name, content in files.items():
                            write_atomically(fold_dir / name, content)
                        save_fold_result(result, fold_dir)  # last: it marks the fold done
                        results[fold.subject] = result
                        print(
                            f"Fold {fold.subject} done in {result.seconds:.1f} s "
                            f"({len(results)}/{len(folds)} folds)",
                            flush=True,
                        )
        except KeyboardInterrupt:
            for reference in running:
                ray.cancel(reference, force=True)
            raise
        if failures:
            ordered = sorted(failures, key=positions.__getitem__)
            raise FoldsFailed({subject: failures[subject] for subject in ordered})


def select_folds(folds: Sequence[Fold], names: Sequence[str] | None) -> list[Fold]:
    """The folds whose held-out subjects are named (all folds for None), in fold order.

    Raises:
        ConfigError: a name that is not a fold's subject, with the fold names.
    """
    if names is None:
        return list(folds)
    known = [fold.subject for fold in folds]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ConfigError(
            f"--folds: no fold holds out {', '.join(unknown)}; the folds are {', '.join(known)}"
        )
    return [fold for fold in folds if fold.subject in set(names)]


def finished_folds(
    folds: Sequence[Fold], run_dir: Path
) -> tuple[dict[str, FoldResult], list[Fold]]:
    """The saved results of the finished folds (by held-out subject), and the other folds."""
    finished, missing = {}, []
    for fold in folds:
        done = load_fold_result(fold, run_dir / "folds" / fold.subject)
        if done is None:
            missing.append(fold)
        else:
            finished[fold.subject] = done
    return finished, missing

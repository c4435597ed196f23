"""`python -m mer merge RUN_DIR...`: one report from the fold results of one or more run folders.

A LOSO run split with `--folds` (a Slurm job array, several machines) leaves each part's folds in
its own run folder. Merging checks that the folders hold one experiment (the same config apart
from settings that change no prediction, the same clips in the same order, fold results whose
test clips are the folds' clips), takes each fold's result from the first folder that has it,
and writes the report a full run writes (`predictions.csv`, `per_subject.csv`, `summary.json`,
figures) with the same code. No data and no training are needed: only the run folders.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mer.config import (
    ConfigError,
    ExperimentConfig,
    config_differences,
    load_config,
    resolve_path,
)
from mer.data.datasets import load_dataset_spec
from mer.experiment import (
    fold_names,
    make_folds,
    make_run_dir,
    versions,
    write_report,
)
from mer.training.loso import FoldResult, build_model, load_fold_result, seed_scheme

# settings that change no prediction: where and how a run writes, what fit prints, and the
# extra model trained after the folds (merge writes the report only)
IGNORED = ("run", "train.verbose", "train.final_model")
# copied from the first run folder into a new report folder, where present
RUN_FILES = ("config.yaml", "manifest.csv", "problems.csv", "skipped.csv", "class_distribution.png")


def merge_runs(run_dirs: Sequence[Path], out: Path | None = None) -> Path:
    """Writes the report of the folds found in `run_dirs`.

    Args:
        run_dirs: run folders of one experiment (e.g. one per `--folds` part).
        out: the report folder; by default the run folder when there is one, else a new
            `merge-<dataset>-<timestamp>` folder beside the first. Folds from other folders
            are linked (or copied) into it, so that it is a complete run folder.

    Returns:
        The report folder.

    Raises:
        ConfigError: the folders hold different experiments, or some fold is in none.
    """
    first = run_dirs[0]
    config = _read_config(first)
    manifest = read_manifest(first)
    for other in run_dirs[1:]:
        _check_same_experiment(first, config, other)
        if not read_manifest(other).equals(manifest):
            raise ConfigError(f"{other}: manifest.csv differs from {first}'s: other clips")
    labels = np.array([config.data.classes.index(label) for label in manifest["label"]])
    folds, protocol = make_folds(config, manifest, labels)
    if manifest["subject"].isna().all():  # as a run names stratified folds
        manifest = manifest.assign(subject=fold_names(folds, len(manifest)))
    sources: dict[str, Path] = {}
    results: list[FoldResult] = []
    for fold in folds:
        for run_dir in run_dirs:
            try:
                result = load_fold_result(fold, run_dir / "folds" / fold.subject)
            except ValueError as error:  # the test clips of the stored fold disagree
                raise ConfigError(str(error)) from None
            if result is not None and fold.subject not in sources:
                sources[fold.subject] = run_dir
                results.append(result)
    missing = [fold.subject for fold in folds if fold.subject not in sources]
    if missing:
        raise ConfigError(
            f"no fold result for {', '.join(missing)} in {', '.join(map(str, run_dirs))}; "
            f"train them with --folds {','.join(missing)}"
        )

    if out is None and len(run_dirs) == 1:
        out = first
    elif out is None:
        beside_first = dataclasses.replace(config.run, output_dir=str(first.parent))
        out = make_run_dir(
            dataclasses.replace(config, run=beside_first), "merge", dataset_name(config)
        )
    out.mkdir(parents=True, exist_ok=True)
    print(f"Merging {len(folds)} folds from {len(set(sources.values()))} run folders into {out}")
    if out.resolve() != first.resolve():
        for name in RUN_FILES:
            if (first / name).is_file() and not (out / name).exists():
                shutil.copy2(first / name, out / name)
        if (first / "splits").is_dir():
            shutil.copytree(first / "splits", out / "splits", dirs_exist_ok=True)
    for subject, source in sources.items():
        if source.resolve() != out.resolve():
            shutil.copytree(
                source / "folds" / subject,
                out / "folds" / subject,
                copy_function=_link_or_copy,
                dirs_exist_ok=True,
            )
    skipped = first / "skipped.csv"
    write_report(
        out,
        config,
        manifest,
        folds,
        results,
        protocol=protocol,
        dataset=dataset_name(config),
        family=config.model.family,
        inputs=config.data.input_names(),
        parameters=build_model(config).count_params(),
        skipped=len(pd.read_csv(skipped)) if skipped.is_file() else 0,
        seed=config.seed,
        seed_scheme=seed_scheme(results),
        versions=versions(),
        timings={"folds_s": {result.subject: round(result.seconds, 2) for result in results}},
        merged_from=[str(run_dir) for run_dir in run_dirs],
    )
    print(f"Results: {out}")
    return out


def _read_config(run_dir: Path) -> ExperimentConfig:
    for name in ("config.yaml", "manifest.csv"):
        if not (run_dir / name).is_file():
            raise ConfigError(f"{run_dir}: no {name}; is it a run folder?")
    return load_config(run_dir / "config.yaml")


def read_manifest(run_dir: Path) -> pd.DataFrame:
    """A run folder's manifest.csv, every value read as the text it was written as (so that
    subject `01` stays `01`); only an empty subject is missing (a dataset without ids)."""
    return pd.read_csv(
        run_dir / "manifest.csv", dtype=str, keep_default_na=False, na_values={"subject": [""]}
    )


def _check_same_experiment(first: Path, config: ExperimentConfig, other: Path) -> None:
    differences = config_differences(config, _read_config(other), IGNORED)
    differences.sort(key=lambda difference: difference[0] != "model.family")  # the family first
    if differences:
        key, mine, theirs = differences[0]
        raise ConfigError(
            f"{other} is another experiment than {first}: {key} is {theirs!r} there, "
            f"{mine!r} here"
        )


def dataset_name(config: ExperimentConfig) -> str:
    """The dataset's name as a run names it (see `mer.data.sources.resolve_source`), without
    reading the data."""
    data = config.data
    if data.name:
        return data.name
    if data.layout != "class_folders":
        return load_dataset_spec(data.layout).name
    return "demo" if data.root is None else resolve_path(data.root).name


def _link_or_copy(source: str, destination: str) -> None:
    """A hard link where the file system allows one (weights are large), else a copy."""
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)

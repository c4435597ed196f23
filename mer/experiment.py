"""One experiment, end to end: data -> LOSO training -> pooled evaluation -> run folder.

Both entry scripts call `run_experiment`; they differ only by their config.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import platform
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import cv2
import keras
import numpy as np
import pandas as pd
import yaml

from mer.caveats import (
    ANNOTATED_AUS,
    PAPER_PROTOCOL,
    annotation_only_reference,
    folder_suffix,
    run_caveats,
    summary_entries,
)
from mer.config import ExperimentConfig, check_config, region_detector_config, resolve_path
from mer.data.aus import au_numbers
from mer.data.inputs import input_specs
from mer.data.sheets import DataError
from mer.data.sources import (
    DatasetSource,
    load_manifest,
    preprocess,
    preprocess_region_inputs,
    resolve_source,
    usable_samples,
)
from mer.evaluation import plots
from mer.evaluation.compare import format_seed_summary, seed_summary
from mer.evaluation.report import (
    au_scores,
    format_au_report,
    format_caveats,
    format_report,
    per_subject_table,
    summarize,
)
from mer.io import write_atomically, write_csv, write_json
from mer.models import model_family
from mer.training.executors import FoldsFailed, finished_folds, run_loso, select_folds
from mer.training.loso import (
    Fold,
    FoldResult,
    PredictedRegions,
    build_model,
    loso_folds,
    seed_scheme,
    stratified_folds,
    write_split_lists,
)


def make_run_dir(config: ExperimentConfig, script: str, dataset: str) -> Path:
    """A new `runs/<script>-<dataset><caveats>-<timestamp>/` folder (suffixed if the name is
    taken); `<caveats>` names the run's caveats (`mer.caveats.folder_suffix`), if any."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    label = folder_suffix(run_caveats(config))
    base = resolve_path(config.run.output_dir) / f"{script}-{dataset}{label}-{stamp}"
    run_dir, suffix = base, 1
    while True:  # runs started in the same second (a job array) each get their own folder
        try:
            run_dir.mkdir(parents=True)
            return run_dir
        except FileExistsError:
            suffix += 1
            run_dir = base.with_name(f"{base.name}-{suffix}")


def versions() -> dict[str, str]:
    """Versions of what a result depends on, for summary.json."""
    found = {
        "python": platform.python_version(),
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "pandas": pd.__version__,
    }
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        found["tensorflow"] = tf.__version__
    return found


def describe_inputs(specs) -> str:
    """The inputs as a run prints them: `frames (10, 128, 128, 3) + au_regions (...)`."""
    return " + ".join(f"{spec.name} {tuple(spec.shape)}" for spec in specs)


def print_plan(config: ExperimentConfig, source: DatasetSource, manifest: pd.DataFrame) -> int:
    """What the run will do: dataset, counts, folds, caveats, model size, schedule; returns the
    model's parameter count."""
    counts = manifest["label"].value_counts()
    subjects = manifest["subject"].nunique()
    model = build_model(config)
    where = source.root if source.root is not None else "parts " + ", ".join(source.spec.parts)
    print(f"Dataset {source.name}{' (built-in demo)' if source.demo else ''}: {where}")
    if source.sheet is not None:
        print(f"  sheet {source.sheet}")
    print(
        f"  {len(manifest)} clips, {subjects} subjects; classes "
        + ", ".join(f"{name} {counts.get(name, 0)}" for name in config.data.classes)
    )
    caveats = run_caveats(config)
    family = model_family(config.model.family)
    each = f"{config.train.epochs} epochs each" if family.fit is None else "fitted once each"
    if subjects:
        use = "see below" if caveats else "it is used for nothing else"
        print(
            f"Protocol: LOSO, {subjects} folds, {each}, final weights "
            f"predict the held-out subject ({use})"
        )
    else:
        print(
            f"Protocol: no subject ids: stratified {config.train.kfold}-fold, "
            f"{each} (not subject-independent)"
        )
    for line in format_caveats(summary_entries(caveats)["caveats"]):
        print(line)
    training = f"batch {config.train.batch_size}, learning rate {config.train.learning_rate}"
    print(
        f"Model: {config.model.family}, inputs {describe_inputs(input_specs(config.data))}, "
        f"{model.count_params():,} parameters; "
        + family.not_applicable.get("train", training)
    )
    if family.predicts == "aus":
        print(
            f"Predicts: AUs {', '.join(map(str, config.model.aus))} (per-AU F1 pooled over the "
            "folds; the class labels are not trained on)"
        )
    if predicted_regions(config):
        detector = region_detector_config(config)
        print(
            f"Regions: from predicted AUs: in each fold an AU detector "
            f"({config.data.regions.detector}: {detector.model.family}, AUs "
            f"{', '.join(map(str, detector.model.aus))}, {detector.train.epochs} epochs) trained "
            "on the training subjects' AU cells predicts the held-out clips' AUs (p >= 0.5), "
            "which choose their au_regions crop; the training clips keep their annotated regions"
        )
    return model.count_params()


def predicted_regions(config: ExperimentConfig) -> bool:
    """Whether the held-out clips' au_regions crops are chosen by an AU detector."""
    return "au_regions" in config.data.input_names() and config.data.regions.aus == "predicted"


def run_experiment(
    config: ExperimentConfig,
    script: str,
    *,
    dry_run: bool = False,
    resume: Path | None = None,
    run_dir: Path | None = None,
    only_folds: Sequence[str] | None = None,
    command: str | None = None,
) -> Path | None:
    """Runs LOSO training and evaluation, writing everything into a new run folder.

    Args:
        config: the resolved experiment config.
        script: the entry script's name, used in the run folder's name.
        dry_run: resolve config and data, print the plan, write nothing, train nothing.
        resume: an interrupted run's folder: its completed folds are reused, the rest trained.
        run_dir: write into this folder (made if absent) instead of a new timestamped one.
        only_folds: train only the folds holding out these subjects (`--folds`); the report
            is written once every fold of the run folder is done (or by `python -m mer merge`).
        command: how the resume hints rerun the run (default `python <script>.py`).

    Returns:
        The run folder, or None for a dry run.
    """
    started = time.perf_counter()
    if config.train.final_model:
        model_family(config.model.family).check_applies("final_model")
    source = resolve_source(config.data)
    config = dataclasses.replace(config, data=source.resolved(config.data))
    check_config(config, classes_known=True)  # class weights against the protocol's classes
    found = load_manifest(config.data, source)
    manifest = usable_samples(config.data, found)
    parameters = print_plan(config, source, manifest)

    preprocess_started = time.perf_counter()
    prepared = preprocess(config.data, manifest)  # a dry run too: it finds every broken clip
    region_inputs = None
    if predicted_regions(config):  # the AU detector's input and every region's crops
        detector = region_detector_config(config)
        prepared, region_inputs = preprocess_region_inputs(
            config.data, detector.data, manifest, prepared
        )
    preprocess_seconds = time.perf_counter() - preprocess_started
    manifest = manifest.iloc[prepared.rows].reset_index(drop=True)
    problems = pd.concat([found.problems, prepared.failures], ignore_index=True)
    skipped = problems[problems["excluded"].astype(bool)]
    labels = np.array([config.data.classes.index(label) for label in manifest["label"]])
    if dry_run:
        print(
            f"Preprocessing: {len(manifest)} clips ready ({prepared.hits} from the cache), "
            f"{len(skipped)} skipped"
        )
        make_folds(config, manifest, labels)  # folds the data cannot give show up here too
        return None

    targets = family_targets(config, manifest)  # each fold reads its training clips' rows
    regions = None
    if region_inputs is not None:  # the detector's targets: the training clips' rows are read
        regions = PredictedRegions(
            detector,
            region_inputs.frames,
            family_targets(detector, manifest),
            region_inputs.crops,
            config.data.input_names().index("au_regions"),
        )
    folds, protocol = make_folds(config, manifest, labels)
    selected = select_folds(folds, only_folds)  # before the run folder: a typo writes nothing
    fingerprint = data_fingerprint(manifest, prepared.keys)
    if resume is not None:
        check_same_data(resume, fingerprint)
        run_dir = resume
    elif run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
    else:
        run_dir = make_run_dir(config, script, source.name)
    print(f"Run folder: {run_dir}")
    write_atomically(run_dir / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
    write_csv(run_dir / "manifest.csv", manifest)
    write_json(run_dir / FINGERPRINT_FILE, fingerprint)
    if len(problems):
        write_csv(run_dir / "problems.csv", problems)
        write_csv(run_dir / "skipped.csv", skipped)
    plots.plot_class_distribution(
        manifest["label"].value_counts().reindex(config.data.classes, fill_value=0).to_dict(),
        run_dir / "class_distribution.png",
    )
    streams = prepared.streams

    if manifest["subject"].isna().all():
        manifest = manifest.assign(subject=fold_names(folds, len(manifest)))
    for directory in (run_dir / "splits", resolve_path(config.run.split_lists_dir) / source.name):
        write_split_lists(folds, manifest, labels, directory, config.data.input_names())
    resume_command = f"{command or f'python {script}.py'} --resume {run_dir}" + (
        f" --folds {','.join(fold.subject for fold in selected)}" if only_folds else ""
    )
    try:
        results = run_loso(selected, streams, labels, config, run_dir, targets, regions)
    except KeyboardInterrupt:
        print(
            f"\nInterrupted. Completed folds are kept in {run_dir / 'folds'}; resume with:\n"
            f"  {resume_command}",
            file=sys.stderr,
        )
        raise
    except FoldsFailed as error:
        error.resume = resume_command
        raise
    if len(selected) < len(folds):  # --folds: the report waits until every fold is done
        finished, missing = finished_folds(folds, run_dir)
        if missing:
            names = ", ".join(fold.subject for fold in missing)
            print(
                f"\nFolds done: {len(finished)} of {len(folds)}; missing: {names}. "
                "Run them with --folds (into this folder with --resume, or into others), "
                f"then write the report with:\n  python -m mer merge {run_dir} [RUN_DIR...]"
            )
            print(f"Fold results: {run_dir}")
            return run_dir
        results = [finished[fold.subject] for fold in folds]

    write_report(
        run_dir,
        config,
        manifest,
        folds,
        results,
        protocol=protocol,
        dataset=source.name,
        family=config.model.family,
        inputs=config.data.input_names(),
        parameters=parameters,
        skipped=len(skipped),
        seed=config.seed,
        seed_scheme=seed_scheme(results),
        versions=versions(),
        timings={
            "preprocess_s": round(preprocess_seconds, 2),
            "folds_s": {result.subject: round(result.seconds, 2) for result in results},
            "total_s": round(time.perf_counter() - started, 2),
        },
    )
    if config.train.final_model:  # one more model, on every subject, for predict / explain
        from mer.training.final import train_final_model

        subjects = manifest["subject"].nunique()
        train_final_model(streams, labels, config, run_dir, subjects=subjects, targets=targets)
        if regions is not None:  # and its AU detector, which chooses a new clip's region
            from mer.bundle import DETECTOR_FILE

            train_final_model(
                [regions.frames],
                labels,
                regions.detector,
                run_dir,
                subjects=subjects,
                targets=regions.targets,
                file=DETECTOR_FILE,
            )
    print(f"Results: {run_dir}")
    return run_dir


def family_targets(config: ExperimentConfig, manifest: pd.DataFrame) -> np.ndarray | None:
    """The configured family's targets besides the classes (`ModelFamily.targets`), made from
    each clip's AU cell (a blank one, or no AU column, is None: unknown); None for a family
    that has none. Every clip gets its row; the folds read their training clips' rows alone."""
    make = model_family(config.model.family).targets
    if make is None:
        return None
    cells = manifest["aus"] if "aus" in manifest else [None] * len(manifest)
    aus = [
        None if pd.isna(cell) or not str(cell).strip() else au_numbers(cell, where=str(sample))
        for cell, sample in zip(cells, manifest["sample"], strict=True)
    ]
    return make(aus, config)


FINGERPRINT_FILE = "data_fingerprint.json"  # what each clip was, for --resume to compare


def data_fingerprint(manifest: pd.DataFrame, keys: Sequence[str]) -> dict[str, list[str]]:
    """Per sample: its subject, label and preprocessing key (media, row fields, settings)."""
    return {
        str(row.sample): [str(row.subject), str(row.label), key]
        for row, key in zip(manifest.itertuples(), keys, strict=True)
    }


def check_same_data(run_dir: Path, fingerprint: dict[str, list[str]]) -> None:
    """A resumed run must see the clips its finished folds saw.

    Raises:
        DataError: naming how many samples were added, removed or changed, and some of them.
    """
    path = run_dir / FINGERPRINT_FILE
    if not path.is_file():  # a run folder of an older version: the folds' clips are checked
        return
    stored = json.loads(path.read_text())
    changed = sorted(
        sample
        for sample in set(stored) | set(fingerprint)
        if stored.get(sample) != fingerprint.get(sample)
    )
    if changed:
        raise DataError(
            f"--resume {run_dir}: the data changed since the run started: {len(changed)} "
            f"sample(s) added, removed or changed (subject, label, media or settings), e.g. "
            f"{', '.join(changed[:3])}; start a new run"
        )


SEEDS_FILE = "seeds.json"  # marks a parent folder of one run per seed


def run_seeds(
    config: ExperimentConfig,
    script: str,
    seeds: list[int],
    *,
    resume: Path | None = None,
    command: str | None = None,
) -> Path:
    """One run per seed (`<parent>/seed<N>/`, a normal run folder each) and the mean ± standard
    deviation of the pooled metrics over the seeds (`<parent>/summary.json`, `seeds.csv`).

    Resuming a parent reuses finished seeds, resumes an interrupted one, and starts the rest.
    """
    if resume is None:
        # resolved as each seed's run resolves it: the dataset's default sampler can read the
        # held-out clips' onset and offset, and the folder's name must say so
        source = resolve_source(config.data)
        resolved = dataclasses.replace(config, data=source.resolved(config.data))
        parent = make_run_dir(resolved, script, f"{source.name}-seeds")
        write_atomically(
            parent / "config.yaml", yaml.safe_dump(resolved.to_dict(), sort_keys=False)
        )
        write_json(parent / SEEDS_FILE, {"seeds": seeds})
    else:
        parent = resume
        seeds = json.loads((parent / SEEDS_FILE).read_text())["seeds"]
    print(f"Seeds {', '.join(map(str, seeds))}: one run each in {parent}")
    summaries = {}
    try:
        for position, seed in enumerate(seeds):
            child = parent / f"seed{seed}"
            print(f"\n=== Seed {seed} ({position + 1}/{len(seeds)}) ===", flush=True)
            if not (child / "summary.json").is_file():
                seeded = dataclasses.replace(config, seed=seed)
                started = (child / "config.yaml").is_file()
                run_experiment(
                    seeded,
                    script,
                    resume=child if started else None,
                    run_dir=child,
                    command=command,
                )
            else:
                print(f"completed earlier: {child}")
            summaries[seed] = json.loads((child / "summary.json").read_text())
    except KeyboardInterrupt:
        again = command or f"python {script}.py"
        print(f"Every seed resumes with:\n  {again} --resume {parent}", file=sys.stderr)
        raise
    table, summary = seed_summary(summaries)
    write_csv(parent / "seeds.csv", table)
    write_json(parent / "summary.json", summary)
    print()
    print(format_seed_summary(summary))
    print(f"Results: {parent}")
    return parent


def make_folds(
    config: ExperimentConfig, manifest: pd.DataFrame, labels: np.ndarray
) -> tuple[list, str]:
    """LOSO folds, or stratified k-fold when the dataset has no subject ids; and which."""
    training = "fixed epochs, final weights"
    family = model_family(config.model.family)
    if family.fit is not None:
        training = "fitted once on the training clips"
    if manifest["subject"].isna().all():
        folds = stratified_folds(labels, config.train.kfold, config.seed)
        protocol = (
            f"stratified {config.train.kfold}-fold: the dataset has no subject ids, so folds are "
            f"not subject-independent; {training}"
        )
    else:
        folds = loso_folds(
            manifest["subject"].tolist(), config.train.validation_subjects, config.seed
        )
        protocol = f"loso: {training}; the held-out subject is only predicted"
        if config.eval.protocol == "paper":
            protocol = f"paper ({PAPER_PROTOCOL.text}); loso folds"
        elif run_caveats(config):
            protocol = f"loso: {training}; see the caveats for what else of the "
            protocol += "held-out subject is used"
        if family.predicts == "aus":
            protocol += "; its AU cells are read only to score its predictions"
    print(f"Folds: {protocol}")
    return folds, protocol


def fold_names(folds: list, count: int) -> list[str]:
    """The name of the fold that tests each row (stands in for a subject)."""
    names = [""] * count
    for fold in folds:
        for row in fold.test:
            names[row] = fold.subject
    return names


def predictions_table(
    manifest: pd.DataFrame, class_names: list[str], results: list[FoldResult]
) -> pd.DataFrame:
    """One row per clip: subject, sample, y_true, y_pred, then prob_<class> per class; with
    data.regions.aus=predicted, then predicted_aus (e.g. "4+12", "" for none) and region."""
    frames = []
    for result in results:
        rows = manifest.iloc[result.test]
        frame = pd.DataFrame(
            {
                "subject": rows["subject"].to_numpy(),
                "sample": rows["sample"].to_numpy(),
                "y_true": rows["label"].to_numpy(),
                "y_pred": [class_names[index] for index in result.probabilities.argmax(axis=1)],
            }
        )
        if "part" in rows and manifest["part"].nunique() > 1:
            frame["part"] = rows["part"].to_numpy()
        for index, name in enumerate(class_names):
            frame[f"prob_{name}"] = np.round(result.probabilities[:, index], 6)
        if result.regions is not None:
            frame["predicted_aus"] = ["+".join(map(str, aus)) for aus in result.aus]
            frame["region"] = result.regions
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def write_report(
    run_dir: Path,
    config: ExperimentConfig,
    manifest: pd.DataFrame,
    folds: list[Fold],
    results: list[FoldResult],
    **details,
) -> dict:
    """The report of a run whose folds are all done (a full run, or `python -m mer merge`):
    predictions.csv, per_subject.csv, summary.json (the pooled metrics, the run's caveats, the
    annotation-only reference of a run with regions, then `details`), the figures, and the
    table printed; for a family that predicts AUs, `write_au_report`'s. Returns the summary."""
    if model_family(config.model.family).predicts == "aus":
        return write_au_report(run_dir, config, manifest, results, **details)
    predictions = predictions_table(manifest, config.data.classes, results)
    table = per_subject_table(predictions, config.data.classes)
    caveats = run_caveats(config)
    if caveats:  # every row of a run that is not a clean LOSO estimate says why
        predictions["caveats"] = table["caveats"] = "; ".join(caveat.label for caveat in caveats)
    summary = summarize(predictions, config.data.classes)
    summary.update(summary_entries(caveats))
    predicted = predicted_regions(config)
    if ANNOTATED_AUS in caveats or predicted:  # what the regions alone would score
        summary["annotation_only_reference"] = annotation_only_reference(
            manifest,
            config.data.classes,
            [(fold.train, fold.test) for fold in folds],
            config.data.regions.au_codes,
            fold_regions(results, len(manifest)) if predicted else None,
        )
    if predicted:
        summary["regions"] = {
            "aus": "predicted",
            "detector": config.data.regions.detector,
            "held_out": dict(Counter(predictions["region"]).most_common()),
        }
    summary.update(details)
    write_csv(run_dir / "predictions.csv", predictions)
    write_csv(run_dir / "per_subject.csv", table)
    write_json(run_dir / "summary.json", summary)
    write_plots(run_dir, summary, table, results, config.data.classes)

    print()
    if predicted:
        print(format_predicted_regions(predictions))
    print(format_report(table, summary, color=sys.stdout.isatty()))
    return summary


def fold_regions(results: list[FoldResult], count: int) -> list[str]:
    """The region each clip was tested with (data.regions.aus=predicted), in manifest order."""
    regions = [""] * count
    for result in results:
        for row, region in zip(result.test, result.regions, strict=True):
            regions[row] = region
    return regions


def format_predicted_regions(predictions: pd.DataFrame) -> str:
    """Per held-out subject, one line: each clip's predicted AUs and the region they chose."""
    lines = ["Held-out regions from predicted AUs (clip: AUs -> region):"]
    for subject, rows in predictions.groupby("subject", sort=False):
        clips = ", ".join(
            f"{row.sample}: {row.predicted_aus or 'none'} -> {row.region}"
            for row in rows.itertuples()
        )
        lines.append(f"  {subject}: {clips}")
    return "\n".join(lines)


def write_au_report(
    run_dir: Path,
    config: ExperimentConfig,
    manifest: pd.DataFrame,
    results: list[FoldResult],
    **details,
) -> dict:
    """The report of an AU detector's run: predictions.csv (per clip: subject, sample, its AU
    cell, then target_AU<n> and prob_AU<n> per AU), au_scores.csv (per-AU F1 and the mean, as
    `mer.evaluation.report.au_scores`), summary.json (those scores, the caveats, `details`),
    the training curves, and the table printed. Only here are the held-out clips' AU cells
    read: to score their predictions. Returns the summary."""
    rows = np.concatenate([result.test for result in results])
    probabilities = np.concatenate([result.probabilities for result in results])
    targets = family_targets(config, manifest)[rows]  # every fold's held-out clips
    codes = list(config.model.aus)
    clips = manifest.iloc[rows]
    predictions = pd.DataFrame(
        {
            "subject": clips["subject"].to_numpy(),
            "sample": clips["sample"].to_numpy(),
            "aus": clips["aus"].to_numpy() if "aus" in clips else "",
        }
    )
    for index, code in enumerate(codes):
        predictions[f"target_AU{code}"] = targets[:, index]
        predictions[f"prob_AU{code}"] = np.round(probabilities[:, index], 6)
    table, summary = au_scores(targets, probabilities, codes)
    summary["subjects"] = int(clips["subject"].nunique())
    summary.update(summary_entries(run_caveats(config)))
    summary.update(details)
    write_csv(run_dir / "predictions.csv", predictions)
    write_csv(run_dir / "au_scores.csv", table)
    write_json(run_dir / "summary.json", summary)
    plots.plot_training_curves(
        {result.subject: result.history for result in results}, run_dir / "training_curves.png"
    )
    print()
    print(format_au_report(table, summary, color=sys.stdout.isatty()))
    return summary


def write_plots(
    run_dir: Path,
    summary: dict,
    table: pd.DataFrame,
    results: list[FoldResult],
    class_names: list[str],
) -> None:
    """The run's figures: confusion matrices, per-subject scores, training curves."""
    matrix = np.asarray(summary["confusion_matrix"])
    plots.plot_confusion_matrix(
        matrix,
        class_names,
        run_dir / "confusion_matrix.png",
        title="Pooled LOSO predictions (counts)",
    )
    plots.plot_confusion_matrix(
        matrix,
        class_names,
        run_dir / "confusion_matrix_normalized.png",
        normalize=True,
        title="Pooled LOSO predictions (row-normalised)",
    )
    plots.plot_subject_scores(table, run_dir / "per_subject_uf1.png")
    plots.plot_training_curves(
        {result.subject: result.history for result in results}, run_dir / "training_curves.png"
    )

"""Command lines of the entry scripts: config file, overrides, summary, dry run."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mer.config import (
    CONFIG_DIR,
    ConfigError,
    ExperimentConfig,
    config_differences,
    family_named,
    load_config,
    resolve_path,
)
from mer.data.export_flow import export_flow_command
from mer.data.sheets import DataError
from mer.inference.commands import add_commands as add_model_commands
from mer.presets import presets_command

if TYPE_CHECKING:  # type hints only: the commands import what they need when they run
    import pandas as pd

    from mer.data.datasets import DatasetSpec

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # as a shell reports a process ended by Ctrl-C


def add_overrides(parser: argparse.ArgumentParser) -> None:
    """The repeatable `--set KEY=VALUE` option."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set train.epochs=5 (repeatable)",
    )


def experiment_parser(script: str, description: str) -> argparse.ArgumentParser:
    """The options shared by the experiment scripts."""
    parser = argparse.ArgumentParser(prog=script, description=description)
    parser.add_argument("--config", help="experiment YAML (default: the script's own)")
    add_overrides(parser)
    parser.add_argument(
        "--summary",
        action="store_true",
        help="print the model summary and parameter count, then exit",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="resolve the config and the data, print the plan, then exit",
    )
    parser.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue an interrupted run after its last completed fold",
    )
    parser.add_argument(
        "--seeds",
        type=_seed_list,
        metavar="1,2,3",
        help="one run per seed in one parent folder, reporting mean ± standard deviation",
    )
    parser.add_argument(
        "--on-bad",
        choices=["error", "skip"],
        help="a bad sample stops the run (error) or is skipped and listed",
    )
    parser.add_argument(
        "--folds",
        type=_name_list,
        metavar="SUB1,SUB2",
        help="train only the folds holding out these subjects (combine with python -m mer merge)",
    )
    return parser


def _name_list(text: str) -> list[str]:
    """`--folds sub01,sub02` as names."""
    names = [item.strip() for item in text.split(",") if item.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected subject names like sub01,sub02, got {text!r}")
    return names


def _seed_list(text: str) -> list[int]:
    """`--seeds 1,2,3` as distinct integers."""
    try:
        seeds = [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"seeds must be integers like 1,2,3, got {text!r}"
        ) from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"seeds must be distinct integers, got {text!r}")
    return seeds


# where a run writes, what fit prints and how many threads feed it: none changes a result
RESUME_MAY_CHANGE = ("run", "train.verbose", "data.workers")


def check_resumable(stored: ExperimentConfig, config: ExperimentConfig) -> None:
    """A resumed run must train its remaining folds as it trained the others.

    Raises:
        ConfigError: naming every setting the overrides change outside `RESUME_MAY_CHANGE`,
            with the stored and the new value.
    """
    differences = config_differences(stored, config, RESUME_MAY_CHANGE)
    if differences:
        changes = "; ".join(f"{key} {old!r} -> {new!r}" for key, old, new in differences)
        raise ConfigError(
            f"--resume continues the run as it was configured, but the overrides change {changes}; "
            "drop them, or start a new run (only run.*, train.verbose and data.workers may change)"
        )


def resolve_config(
    config_path: str | None, default_config: str, overrides: Sequence[str], demo: bool = True
) -> tuple[ExperimentConfig, Path]:
    """Loads the config; without a dataset (and with `demo`) it switches to the config's demo
    preset, and says which of the preset's model settings the demo's replace.

    `python ME_model.py` with nothing configured thus runs the built-in demo in minutes,
    while `--set data.root=... --set data.sheet=...` keeps the published settings.
    """
    path = resolve_path(config_path) if config_path else CONFIG_DIR / default_config
    config = load_config(path, overrides)
    demo_path = (path.parent / config.run.demo_config).resolve()
    no_dataset = config.data.root is None and not config.data.roots  # roots: a composite's
    if demo and no_dataset and demo_path != path.resolve():
        demo_config = load_config(demo_path, overrides)
        replaced = [
            f"{key.removeprefix('model.')} {preset} -> {demo_value}"
            for key, preset, demo_value in config_differences(config, demo_config)
            if key.startswith("model.")
        ]
        model = (
            f"model settings, preset -> demo: {', '.join(replaced)}"
            if replaced
            else "the same model settings"
        )
        print(
            f"No dataset configured (data.root): running the built-in demo preset "
            f"{demo_path.name} instead of {path.name}; the preset's own network and "
            f"training settings are replaced by the demo's ({model}); set data.root to train "
            "the preset itself"
        )
        return demo_config, demo_path
    return config, path


def run_script(
    script: str,
    default_config: str | None,
    description: str,
    argv: Sequence[str] | None = None,
    *,
    command: str | None = None,
) -> int:
    """Main function of an experiment script; returns the process exit code.

    Args:
        script: the run folders' name prefix and the messages' ("ME_model").
        default_config: the YAML without --config (in config/); None: --config is needed.
        description: the --help text.
        argv: the arguments (default: the process's).
        command: how the resume hints rerun it (default `python <script>.py`).
    """
    arguments = experiment_parser(command or script, description).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    overrides = list(arguments.overrides)
    if arguments.on_bad:
        overrides.append(f"data.on_bad={arguments.on_bad}")
    resume = resolve_path(arguments.resume) if arguments.resume else None
    try:
        if resume is None and arguments.config is None and default_config is None:
            raise ConfigError(f"{command or script} needs --config FILE (or --resume RUN_DIR)")
        if resume is not None:
            if arguments.config:
                raise ConfigError("--resume takes the run's own config.yaml; drop --config")
            path = resume / "config.yaml"
            config = load_config(path, overrides)
            check_resumable(load_config(path), config)
        else:
            # --summary shows the configured network itself, dataset or not
            config, path = resolve_config(
                arguments.config, default_config, overrides, demo=not arguments.summary
            )
    except ConfigError as error:
        print(f"{script}: config error: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(f"Config: {path}" + "".join(f" --set {item}" for item in overrides))

    from mer.experiment import SEEDS_FILE, run_experiment, run_seeds
    from mer.training.loso import TrainingError, build_model

    try:
        if arguments.summary:
            model = build_model(config)
            model.summary(line_length=110)
            print(f"Total parameters: {model.count_params():,}")
            return 0
        seeds_parent = resume is not None and (resume / SEEDS_FILE).is_file()
        if arguments.seeds or seeds_parent:
            family_named(config.model.family).check_applies("seeds")
            if arguments.dry_run:
                raise ConfigError("--dry-run checks one run: drop --seeds")
            if arguments.folds:
                raise ConfigError("--folds splits one run: drop --seeds")
            run_seeds(
                config,
                script,
                arguments.seeds,
                resume=resume if seeds_parent else None,
                command=command,
            )
        else:
            run_experiment(
                config,
                script,
                dry_run=arguments.dry_run,
                resume=resume,
                only_folds=arguments.folds,
                command=command,
            )
    except ConfigError as error:
        print(f"{script}: config error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except DataError as error:
        print(f"{script}: data error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except TrainingError as error:
        print(f"{script}: training failed: {error}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except OSError as error:  # a full disk, a read-only or missing folder: say which, no trace
        print(
            f"{script}: cannot write {error.filename or ''}: {error.strerror or error}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return 0


def _named_paths(values: Sequence[str], option: str) -> tuple[str | None, dict[str, str]]:
    """`--root DIR` (one dataset) or repeatable `--root name=DIR` (a composite's parts)."""
    plain = [value for value in values if "=" not in value]
    named = dict(value.split("=", 1) for value in values if "=" in value)
    if len(plain) > 1:
        raise ConfigError(f"{option} given twice without a name: {plain}")
    return (plain[0] if plain else None), named


def manifest_command(arguments: argparse.Namespace) -> int:
    """`python -m mer manifest`: a dataset's samples and problems, without training."""
    from mer.data.datasets import (
        build_composite_manifest,
        build_dataset_manifest,
        load_dataset_spec,
        sheet_path,
    )
    from mer.io import natural_sort_key, write_csv

    spec = load_dataset_spec(arguments.dataset)
    root, roots = _named_paths(arguments.root, "--root")
    sheet, sheets = _named_paths(arguments.sheet, "--sheet")
    if spec.parts:
        manifest = build_composite_manifest(
            spec, roots, sheets, arguments.gt, sheets_only=arguments.sheets_only
        )
    else:
        root_path = resolve_path(root) if root else None
        manifest = build_dataset_manifest(
            spec,
            root_path,
            sheet_path(spec, root_path, sheet),
            arguments.protocol,
            sheets_only=arguments.sheets_only,
        )
    samples = manifest.samples
    classes = spec.classes(arguments.protocol)
    print(f"{spec.name}: {len(samples)} samples, {samples['subject'].nunique()} subjects")
    counts = samples["label"].value_counts()
    print("  per class: " + ", ".join(f"{name} {counts.get(name, 0)}" for name in classes))
    if "part" in samples and samples["part"].notna().any():
        for part, rows in samples.groupby("part"):
            print(f"  {part}: {len(rows)} samples, {rows['subject'].nunique()} subjects")
    per_subject = samples.groupby("subject")["label"].value_counts().unstack(fill_value=0)
    per_subject = per_subject.reindex(columns=classes, fill_value=0)
    per_subject = per_subject.loc[sorted(per_subject.index, key=natural_sort_key)]
    print("  per subject:")
    print("    " + per_subject.to_string().replace("\n", "\n    "))
    if manifest.excluded_emotions:
        print(
            "  outside the class table: "
            + ", ".join(f"{key} {count}" for key, count in manifest.excluded_emotions.items())
        )
    for part, rows in _annotated_parts(spec, samples):
        _print_annotation_reference(part, rows, classes)
    problems = manifest.problems
    excluded = int(problems["excluded"].astype(bool).sum())
    print(f"Problems: {len(problems)} ({excluded} excluded a sample)")
    for row in problems.itertuples():
        status = "EXCLUDED" if row.excluded else "note"
        print(f"  [{status}] {row.where}: {row.sample + ': ' if row.sample else ''}{row.problem}")
    write_csv(arguments.out, samples)
    print(f"Manifest: {Path(arguments.out).resolve()}")
    return 0


def _annotated_parts(spec: DatasetSpec, samples: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(name, samples) of the dataset, or of each part of a composite, whose sheet has an AU
    column."""
    from mer.data.datasets import load_dataset_spec

    if not spec.parts:
        return [(spec.name, samples)] if spec.columns.action_units is not None else []
    return [
        (part, samples[samples["part"] == part])
        for part in spec.parts
        if load_dataset_spec(part).columns.action_units is not None
    ]


def _print_annotation_reference(name: str, samples: pd.DataFrame, classes: list[str]) -> None:
    """The annotation-only reference of a dataset's samples, LOSO over its subjects, with the
    default `data.regions.au_codes` (see `mer.caveats.annotation_only_reference`)."""
    from mer.caveats import annotation_only_reference
    from mer.config import RegionConfig
    from mer.evaluation.annotation_only import subject_folds
    from mer.evaluation.report import format_annotation_reference

    if samples["subject"].nunique() < 2:
        print(f"  {name}: fewer than 2 subjects, no annotation-only reference")
        return
    samples = samples.reset_index(drop=True)
    reference = annotation_only_reference(
        samples, classes, subject_folds(samples["subject"]), RegionConfig().au_codes
    )
    blank = int((samples["aus"].fillna("") == "").sum())
    print(f"  {name}: {format_annotation_reference(reference)}")
    print(
        f"    LOSO over its {samples['subject'].nunique()} subjects, default "
        f"data.regions.au_codes; {blank} clips without AUs (blank, '?' or a cell that does not "
        "parse, noted under Problems) count as region face, the crop a run takes for them"
    )


def regions_command(arguments: argparse.Namespace) -> int:
    """`python -m mer regions`: the AU region of one face image, as JSON, and its crop."""
    import json

    import cv2

    from mer.data.aus import au_numbers
    from mer.data.faces import shared_landmarker
    from mer.data.regions import crop_regions

    image = cv2.imread(arguments.image, cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(f"cannot read image {arguments.image}")
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    result = crop_regions(
        rgb[None],
        au_numbers(arguments.aus, where="--aus"),
        shared_landmarker(),
        size=arguments.size,
        margin=arguments.margin,
    )
    if result.faces_found == 0:
        raise DataError(f"no face found in {arguments.image}")
    box = [int(value) for value in result.boxes[0]]
    print(json.dumps({"region": result.region, "box": box, "landmarks": 68}))
    if arguments.out:
        cv2.imwrite(arguments.out, cv2.cvtColor(result.crops[0], cv2.COLOR_RGB2BGR))
    return 0


def compare_command(arguments: argparse.Namespace) -> int:
    """`python -m mer compare`: run folders side by side, and a bar plot."""
    from mer.evaluation.compare import compare_runs, format_comparison
    from mer.evaluation.plots import plot_run_comparison

    runs = [resolve_path(path) for path in arguments.runs]
    for run in runs:
        run_family(run).check_applies("compare")
    table = compare_runs(runs)
    print(format_comparison(table))
    plot_run_comparison(table, arguments.out)
    print(f"Plot: {Path(arguments.out).resolve()}")
    return 0


def bench_command(arguments: argparse.Namespace) -> int:
    """`python -m mer bench`: speed and memory on synthetic clips of the configured shape."""
    import json

    import keras

    from mer.benchmark import run_benchmark

    path = resolve_path(arguments.config) if arguments.config else CONFIG_DIR / "me_model.yaml"
    config = load_config(path, arguments.overrides)
    family_named(config.model.family).check_applies("bench")
    if arguments.profile and keras.backend.backend() != "tensorflow":
        raise ConfigError(
            "bench --profile reads TensorFlow's profiler: run it with KERAS_BACKEND=tensorflow, "
            f"not {keras.backend.backend()}"
        )
    result = run_benchmark(
        config, quick=arguments.quick, clips=arguments.clips, profile=arguments.profile
    )
    print(json.dumps(result))
    if arguments.save:
        from mer.io import write_json

        write_json(arguments.save, result)
    return 0


def bench_plot_command(arguments: argparse.Namespace) -> int:
    """`python -m mer bench-plot`: saved benchmark results as one bar plot."""
    import json

    from mer.evaluation.plots import plot_benchmarks

    results = [json.loads(Path(path).read_text()) for path in arguments.results]
    labels = [Path(path).stem for path in arguments.results]
    plot_benchmarks(results, labels, arguments.out)
    print(f"Plot: {Path(arguments.out).resolve()}")
    return 0


def merge_command(arguments: argparse.Namespace) -> int:
    """`python -m mer merge`: one report from the fold results of run folders."""
    from mer.merge import merge_runs

    out = resolve_path(arguments.out) if arguments.out else None
    merge_runs([resolve_path(path) for path in arguments.runs], out)
    return 0


def run_family(path: Path):
    """The `ModelFamily` of a run folder (or of the run folder holding a saved model), from its
    config.yaml; the default family where there is none to read (an older or foreign folder:
    the command's own checks speak then)."""
    import yaml

    from mer.models import DEFAULT_FAMILY

    folder = path if path.is_dir() else path.parent
    try:
        values = yaml.safe_load((folder / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        values = {}
    model = values.get("model") if isinstance(values, dict) else None
    family = model.get("family", DEFAULT_FAMILY) if isinstance(model, dict) else DEFAULT_FAMILY
    return family_named(family)


def _refusing(name: str, command):
    """`command` (predict, explain, export), refused first for a model of a family to which it
    does not apply (`ModelFamily.not_applicable`), named by the run folder's config."""

    def run(arguments: argparse.Namespace) -> int:
        run_family(resolve_path(arguments.model)).check_applies(name)
        return command(arguments)

    return run


TRAIN_COMMAND = "python -m mer train"


def train_command(argv: Sequence[str]) -> int:
    """`python -m mer train --config FILE [options]`: the experiment of any preset, with the
    options of the entry scripts; run folders are named after the preset."""
    known, _ = experiment_parser(TRAIN_COMMAND, "").parse_known_args(argv)
    prefix = Path(known.config).stem if known.config else "train"
    description = "Train and evaluate any preset, leave-one-subject-out."
    return run_script(prefix, None, description, argv, command=TRAIN_COMMAND)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m mer <command>`."""
    parser = argparse.ArgumentParser(prog="python -m mer", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    manifest = commands.add_parser("manifest", help="inspect a dataset: samples and problems")
    manifest.add_argument("--dataset", required=True, help="a name in config/datasets/")
    manifest.add_argument(
        "--root",
        action="append",
        default=[],
        metavar="[NAME=]DIR",
        help="dataset folder; NAME=DIR per part of a composite (repeatable)",
    )
    manifest.add_argument(
        "--sheet",
        action="append",
        default=[],
        metavar="[NAME=]FILE",
        help="annotation sheet; NAME=FILE per part (default: the dataset's)",
    )
    manifest.add_argument("--protocol", help="class table (default: the dataset's)")
    manifest.add_argument("--gt", help="composite: the official list (default: the project's copy)")
    manifest.add_argument(
        "--sheets-only", action="store_true", help="check the sheets without the media"
    )
    manifest.add_argument("--out", default="manifest.csv", help="where to write the manifest")
    regions = commands.add_parser("regions", help="the AU region of a face image (JSON)")
    regions.add_argument("--image", required=True, help="a face image")
    regions.add_argument("--aus", required=True, help='action units, e.g. "12" or "4+L10"')
    regions.add_argument("--out", help="write the crop (size x size) here")
    regions.add_argument("--size", type=int, default=128, help="crop size (default 128)")
    regions.add_argument("--margin", type=float, default=0.0, help="box margin, fraction")
    presets = commands.add_parser(
        "presets", help="every preset's parameter count beside the papers' figures"
    )
    presets.add_argument("presets", nargs="*", metavar="PRESET", help="YAMLs (default: all)")
    compare = commands.add_parser("compare", help="run folders side by side, with a bar plot")
    compare.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders (or seed parents)")
    compare.add_argument("--out", default="compare.png", help="bar plot (default compare.png)")
    bench = commands.add_parser("bench", help="training, inference and preprocessing speed (JSON)")
    bench.add_argument("--quick", action="store_true", help="a rough figure in under a minute")
    bench.add_argument("--config", help="experiment YAML (default: config/me_model.yaml)")
    add_overrides(bench)
    bench.add_argument("--clips", type=int, help="clips in the pipeline epoch (memory check)")
    bench.add_argument("--save", metavar="FILE.json", help="also write the result here")
    bench.add_argument(
        "--profile", action="store_true", help="also time each layer's ops (TensorFlow's profiler)"
    )
    bench_plot = commands.add_parser("bench-plot", help="saved bench results as a bar plot")
    bench_plot.add_argument("out", help="the PNG to write")
    bench_plot.add_argument("results", nargs="+", help="JSON files written by bench --save")
    commands.add_parser(  # its options are the entry scripts' (train_command)
        "train",
        add_help=False,
        help="train and evaluate any preset: --config FILE and the entry scripts' options",
    )
    merge = commands.add_parser(
        "merge", help="one report from the fold results of run folders (--folds, job arrays)"
    )
    merge.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders of one experiment")
    merge.add_argument(
        "--out", help="report folder (default: the run folder if one, else a new merge-* folder)"
    )
    export_flow = commands.add_parser(
        "export-flow", help="each clip's flow inputs as PNG images (for the RCN, Dual-ATME code)"
    )
    export_flow.add_argument("--config", required=True, help="experiment YAML with flow inputs")
    add_overrides(export_flow)
    export_flow.add_argument(
        "--out", required=True, help="folder for <input>/<sample>_<input>.png (made if absent)"
    )
    model_commands = add_model_commands(commands)  # predict, explain, export, architecture
    arguments, rest = parser.parse_known_args(argv)
    if arguments.command == "train":  # an experiment script's options, for any preset
        return train_command(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    command = {
        "manifest": manifest_command,
        "regions": regions_command,
        "presets": presets_command,
        "bench": bench_command,
        "compare": compare_command,
        "merge": merge_command,
        "bench-plot": bench_plot_command,
        "export-flow": export_flow_command,
        **{
            name: _refusing(name, command) if name in ("predict", "explain", "export") else command
            for name, command in model_commands.items()
        },
    }[arguments.command]
    try:
        return command(arguments)
    except (ConfigError, DataError, ValueError) as error:
        print(f"mer {arguments.command}: {error}", file=sys.stderr)
        return EXIT_USAGE

"""Command lines of the entry scripts: config file, overrides, summary, dry run."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from mer.config import CONFIG_DIR, ConfigError, ExperimentConfig, load_config, resolve_path
from mer.data.sheets import DataError

EXIT_USAGE = 2


def experiment_parser(script: str, description: str) -> argparse.ArgumentParser:
    """The options shared by the experiment scripts."""
    parser = argparse.ArgumentParser(prog=script, description=description)
    parser.add_argument("--config", help="experiment YAML (default: the script's own)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set train.epochs=5 (repeatable)",
    )
    parser.add_argument("--summary", action="store_true",
                        help="print the model summary and parameter count, then exit")
    parser.add_argument("--dry-run", action="store_true",
                        help="resolve the config and the data, print the plan, then exit")
    return parser


def resolve_config(
    config_path: str | None, default_config: str, overrides: Sequence[str]
) -> tuple[ExperimentConfig, Path]:
    """Loads the config; without a dataset it switches to the config's demo preset.

    `python ME_model.py` with nothing configured thus runs the built-in demo in minutes,
    while `--set data.root=... --set data.sheet=...` keeps the published settings.
    """
    path = resolve_path(config_path) if config_path else CONFIG_DIR / default_config
    config = load_config(path, overrides)
    demo_path = path.parent / config.run.demo_config
    if config.data.root is None and demo_path.resolve() != path.resolve():
        print(f"No dataset configured (data.root): running the built-in demo preset {demo_path}")
        path = demo_path
        config = load_config(path, overrides)
    return config, path


def run_script(script: str, default_config: str, description: str,
               argv: Sequence[str] | None = None) -> int:
    """Main function of an experiment script; returns the process exit code."""
    arguments = experiment_parser(script, description).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        config, path = resolve_config(arguments.config, default_config, arguments.overrides)
    except ConfigError as error:
        print(f"{script}: config error: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(f"Config: {path}" + "".join(f" --set {item}" for item in arguments.overrides))

    from mer.experiment import input_shape, run_experiment
    from mer.training.loso import build_model

    if arguments.summary:
        model = build_model(config, input_shape(config))
        model.summary(line_length=110)
        print(f"Total parameters: {model.count_params():,}")
        return 0
    try:
        run_experiment(config, script, dry_run=arguments.dry_run)
    except DataError as error:
        print(f"{script}: data error: {error}", file=sys.stderr)
        return EXIT_USAGE
    return 0

"""The subcommands that use or show a model: predict, explain, export, architecture.

`add_commands` adds their options to `python -m mer`; each command's module is imported only
when that command runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable


def _clip_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", required=True, help="final_model.keras, or the run folder holding it"
    )
    parser.add_argument(
        "--onset",
        type=int,
        help="onset frame number (onset_offset and max_motion samplers, optical-flow inputs); "
        "without --onset and --offset a model trained with onset_offset or on flow spots the "
        "window of largest change",
    )
    parser.add_argument("--offset", type=int, help="offset frame number (with --onset)")
    parser.add_argument(
        "--apex",
        type=int,
        help="apex frame number, within --onset..--offset (optical-flow inputs: the flow runs "
        "onset -> apex); default: the model's data.flow.apex rule (the middle frame, or the "
        "one that differs most from the onset)",
    )
    parser.add_argument("--aus", help='the clip\'s action units, e.g. "4+12" (two-stream models)')


def _one_line_os_errors(command: Callable[[argparse.Namespace], int]):
    """A file that cannot be read or written becomes the one-line DataError `mer` prints."""

    def run(arguments: argparse.Namespace) -> int:
        from mer.data.sheets import DataError

        try:
            return command(arguments)
        except OSError as error:
            where = error.filename or ""
            raise DataError(f"cannot access {where}: {error.strerror or error}") from error

    return run


@_one_line_os_errors
def predict(arguments: argparse.Namespace) -> int:
    from mer.inference.predict import predict_command

    return predict_command(arguments)


@_one_line_os_errors
def explain(arguments: argparse.Namespace) -> int:
    from mer.inference.explain import explain_command

    return explain_command(arguments)


@_one_line_os_errors
def export(arguments: argparse.Namespace) -> int:
    from mer.inference.export import export_command

    return export_command(arguments)


@_one_line_os_errors
def architecture(arguments: argparse.Namespace) -> int:
    from mer.figures import architecture_command

    return architecture_command(arguments)


def add_commands(commands: argparse._SubParsersAction) -> dict[str, Callable]:
    """Adds predict, explain, export and architecture; returns name -> function."""
    parser = commands.add_parser("predict", help="class probabilities of new clips")
    _clip_options(parser)
    parser.add_argument("clips", nargs="+", metavar="CLIP", help="a video or a folder of frames")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")

    parser = commands.add_parser("explain", help="Grad-CAM of a clip: PNG strip and GIF")
    _clip_options(parser)
    parser.add_argument("clip", metavar="CLIP", help="a video or a folder of frames")
    parser.add_argument("--out", required=True, help="folder for <clip>_gradcam.png and .gif")
    parser.add_argument(
        "--class",
        dest="class_name",
        help="class to explain (default: the predicted one); an AU detector's AU, e.g. AU4 "
        "(default: the likeliest)",
    )
    parser.add_argument(
        "--layer",
        action="append",
        default=[],
        help="conv layer to explain (repeatable; default: per model input, the last conv "
        "layer or conv block that reads that input alone: merge_conv of a one-input MLSP, "
        "branch5_conv and branch3_conv of the two-stream one, aars_inception2 and "
        "hars_inception2 of Dual-ATME, p3d_res4_block1 of the AU detector)",
    )

    parser = commands.add_parser("export", help="a saved model as SavedModel and/or ONNX")
    parser.add_argument(
        "--model", required=True, help="final_model.keras, or the run folder holding it"
    )
    parser.add_argument("--out", required=True, help="folder for the exported files")
    parser.add_argument(
        "--format",
        nargs="+",
        choices=["savedmodel", "onnx"],
        default=["savedmodel"],
        help="savedmodel (TensorFlow) and/or onnx (needs requirements-onnx.txt)",
    )

    parser = commands.add_parser(
        "architecture", help="figures of the configured networks, from the model code"
    )
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        help="experiment YAML (repeatable; default: me_model.yaml and dual_branch_au.yaml)",
    )
    parser.add_argument("--out", default="img", help="folder for architecture_<config>.png")
    return {
        "predict": predict,
        "explain": explain,
        "export": export,
        "architecture": architecture,
    }

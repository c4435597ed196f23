"""`python -m mer presets`: every preset's parameter count beside the papers' figures.

The presets are the experiment YAMLs of `config/` (the published systems and their demos),
`config/ablations/` and `config/variants/`. Each is built (not trained) at its own input shape:
`data.frames` x `data.size` x `data.size` x 3 (1 if grayscale), two streams when
`data.regions.enabled`.

The papers' figures are kept here, keyed by preset, rather than in the YAMLs: the typed config
holds what a run needs, and a preset that inherits from another (`base:`) must not inherit the
other's reported results.
"""

from __future__ import annotations

import argparse
import dataclasses
import textwrap
from collections.abc import Sequence
from pathlib import Path

import keras

from mer.bundle import class_model
from mer.config import CONFIG_DIR, ExperimentConfig, load_config, resolve_path
from mer.data.datasets import load_dataset_spec
from mer.data.inputs import input_specs
from mer.models import model_family
from mer.training.loso import build_model

PRESET_FOLDERS = ("", "ablations", "variants")  # under config/; datasets/ holds no presets
MLSP = "MLSP 2024"
DUAL_BRANCH = "dual-branch AU"


@dataclasses.dataclass(frozen=True)
class PaperFigures:
    """What a paper reports for one configuration."""

    paper: str  # MLSP or DUAL_BRANCH
    results: str = ""  # scores as printed: UF1/UAR per dataset, or ACC
    params: float | None = None  # millions, as printed (2.8); None where not reported
    differs: str = ""  # why our count does not round to `params`, where it does not


PAPER_FIGURES: dict[str, PaperFigures] = {
    "me_model.yaml": PaperFigures(
        MLSP, "UF1/UAR SMIC .732/.751, SAMM .720/.744, CASME II .818/.827", 2.8
    ),
    "dual_branch_au.yaml": PaperFigures(
        DUAL_BRANCH, "UF1/UAR SAMM .860/.885, CASME II .944/.956", 3.8
    ),
    "ablations/single_branch_cce.yaml": PaperFigures(
        MLSP,
        params=1.8,
        differs="the Dense(128) on the flattened 2x15x15x32 maps alone has 1.84M; per-frame "
        "Dense layers instead give 0.99M; no structure tried rounds to 1.8M",
    ),
    "ablations/single_branch_wcce.yaml": PaperFigures(
        MLSP,
        params=1.8,
        differs="same network as single_branch_cce.yaml (only the loss differs)",
    ),
    "ablations/single_branch_lstm.yaml": PaperFigures(
        MLSP,
        params=2.6,
        differs="an LSTM(512) on the 64-wide frame features has 0.29M more than the GRU (4 "
        "gates, not 3); the paper's +0.7M over its GRU row fits no LSTM of the GRU's width",
    ),
    "ablations/single_branch_gru.yaml": PaperFigures(MLSP, params=1.9),
    "ablations/single_branch_gru_cbam.yaml": PaperFigures(
        MLSP,
        params=2.0,
        differs="CBAM adds 2,052 parameters to the single-branch GRU row (1.93M); 2.0M is the "
        "dual-branch CBAM row's count (1.96M)",
    ),
    "ablations/dual_branch_cbam.yaml": PaperFigures(MLSP, params=2.0),
    "ablations/dual_branch_ec_cbam.yaml": PaperFigures(MLSP, params=2.0),
    "ablations/dual_branch_ec_cbam_multi_head.yaml": PaperFigures(
        MLSP,
        params=10.5,
        differs="Keras MultiHeadAttention with 8 heads of key size 512 (the GRU width) has "
        "8.40M; 10.5M needs ~0.13M more, which no natural head or key size gives",
    ),
    "ablations/dual_branch_ec_cbam_msmh.yaml": PaperFigures(MLSP, params=2.8),
    "ablations/samm_with_au.yaml": PaperFigures(DUAL_BRANCH, "UF1/UAR SAMM .860/.885", 3.8),
    "ablations/casme2_with_au.yaml": PaperFigures(
        DUAL_BRANCH, "UF1/UAR CASME II .944/.956", 3.8
    ),
    "variants/smic.yaml": PaperFigures(
        DUAL_BRANCH,
        "UF1/UAR SMIC .745/.751",
        3.8,
        differs="the published SMIC script runs the one-input, 10-frame MLSP network (2.8M); "
        "3.8M is the two-input, 30-frame SAMM / CASME II model",
    ),
    "variants/casme3.yaml": PaperFigures(DUAL_BRANCH, "UF1/UAR CAS(ME)^3 .8036/.8161"),
    "variants/deception.yaml": PaperFigures(DUAL_BRANCH, "ACC deception .836"),
}


@dataclasses.dataclass(frozen=True)
class PresetSummary:
    """One preset, built at its input shape."""

    name: str  # path under config/
    input_shape: tuple[int, int, int, int]  # (frames, height, width, channels) per stream
    streams: int
    classes: int  # the width of the output: classes, or the AUs of a family predicting AUs
    params: int
    paper: PaperFigures | None
    predicts: str = "classes"  # `ModelFamily.predicts`

    @property
    def matches_paper(self) -> bool | None:
        """Whether the count rounds to the paper's (in millions); None: nothing to compare."""
        if self.paper is None or self.paper.params is None:
            return None
        return round(self.params / 1e6, 1) == self.paper.params


def preset_paths(config_dir: Path = CONFIG_DIR) -> list[Path]:
    """Every preset YAML: config/*.yaml, then config/ablations/, then config/variants/."""
    paths = []
    for folder in PRESET_FOLDERS:
        paths.extend(sorted((config_dir / folder).glob("*.yaml")))
    return paths


def class_names(config: ExperimentConfig) -> list[str]:
    """The label order a run would use: data.classes, or the dataset protocol's classes."""
    if config.data.layout == "class_folders":
        return list(config.data.classes)
    return load_dataset_spec(config.data.layout).classes(config.data.protocol)


def build_preset(path: str | Path) -> tuple[ExperimentConfig, keras.Model]:
    """A preset's config (with its classes resolved) and its untrained model: compiled, or, for
    a model with outputs besides the classes (FMER's AU logits, a training target), the same
    layers to the class probabilities alone, as `predict` reads them.

    Args:
        path: the preset YAML (relative paths start at the project root).

    Raises:
        ConfigError: the preset does not load.
    """
    config = load_config(resolve_path(path))
    classes = class_names(config)
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, classes=classes))
    model = build_model(config)
    if len(model.outputs) > 1:
        model = class_model(model)
    return config, model


def summarize_preset(
    path: str | Path,
    built: tuple[ExperimentConfig, keras.Model] | None = None,
    config_dir: Path = CONFIG_DIR,
) -> PresetSummary:
    """The preset's parameter count beside the paper's figures.

    Args:
        path: the preset YAML (relative paths start at the project root).
        built: what `build_preset(path)` returned, when the caller has it already.
        config_dir: presets under it are named by their path relative to it.
    """
    config, model = built or build_preset(path)
    resolved = resolve_path(path).resolve()
    try:
        name = resolved.relative_to(config_dir.resolve()).as_posix()
    except ValueError:  # a preset outside config/
        name = str(path)
    return PresetSummary(
        name,
        input_specs(config.data)[0].shape,
        len(config.data.input_names()),
        model.outputs[0].shape[-1],
        model.count_params(),
        PAPER_FIGURES.get(name),
        model_family(config.model.family).predicts,
    )


def format_summaries(summaries: Sequence[PresetSummary]) -> str:
    """The listing: one line per preset, then its reported results and why a count differs;
    last, how many match (`count_line`)."""
    width = max([len(summary.name) for summary in summaries] + [6])
    lines = [
        "Parameters of each preset (config/...) built at its input shape (streams x frames x",
        "height x width x channels), beside the papers' figures (counts in millions, as printed).",
        "",
        f"{'preset':<{width}}  {'input':<17}  {'classes':>7}  {'parameters':>10}  paper",
    ]

    def indented(text: str) -> list[str]:
        return textwrap.wrap(text, 100, initial_indent="    ", subsequent_indent="      ")

    for summary in summaries:
        shape = "x".join(str(size) for size in summary.input_shape)
        shape = f"{summary.streams} x {shape}"
        paper = summary.paper
        if paper is None or paper.params is None:
            verdict = "-"
        else:
            verdict = f"{paper.params}M " + ("matches" if summary.matches_paper else "differs")
        outputs = f"{summary.classes} AUs" if summary.predicts == "aus" else summary.classes
        lines.append(
            f"{summary.name:<{width}}  {shape:<17}  {outputs:>7}  "
            f"{summary.params:>10,}  {verdict}"
        )
        if paper is not None and paper.results:
            lines.extend(indented(f"{paper.paper}: {paper.results}"))
        if summary.matches_paper is False:
            lines.extend(indented(f"why: {paper.differs}"))
    lines += ["", count_line(summaries)]
    return "\n".join(lines)


def count_line(summaries: Sequence[PresetSummary]) -> str:
    """How many of the listed presets match the paper's parameter count, differ, or have
    nothing to compare: the one place the README's figures come from."""
    verdicts = [summary.matches_paper for summary in summaries]
    return (
        f"Presets listed: {len(verdicts)}; {verdicts.count(True)} match the paper's parameter "
        f"count, {verdicts.count(False)} differ (reasons above), "
        f"{verdicts.count(None)} have no published count."
    )


def presets_command(arguments: argparse.Namespace) -> int:
    """`python -m mer presets [PRESET ...]`: the listing, for all presets or the named ones."""
    paths = [Path(path) for path in arguments.presets] or preset_paths()
    print(format_summaries([summarize_preset(path) for path in paths]))
    return 0

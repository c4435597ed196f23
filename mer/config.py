"""Typed experiment configuration, read from YAML, locked against unknown keys.

A config file may name a `base:` file (relative to itself) whose values it overrides, so presets
state only what differs from the published settings. Command-line overrides use dotted keys
(`--set train.epochs=5`) whose values are parsed as YAML (`null`, numbers, lists).
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = PROJECT_ROOT / "config"


class ConfigError(ValueError):
    """A configuration problem, reported as one line (unknown key, wrong type, missing file)."""


class _Loader(yaml.SafeLoader):
    """YAML 1.1 as PyYAML reads it, plus YAML 1.2's floats: `1e-4`, `1E+4` and `1.0e4` are
    numbers (1.1 wants a dot and a signed exponent, so PyYAML reads them as text)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def parse_yaml(text: str) -> Any:
    """A YAML document as config values (see `_Loader`)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)


@dataclasses.dataclass
class SheetColumns:
    """Names of the annotation sheet's columns; `None` where the sheet lacks the column."""

    subject: str = "Subject"
    filename: str = "Filename"
    onset: str | None = "OnsetFrame"
    apex: str | None = "ApexFrame"
    offset: str | None = "OffsetFrame"
    action_units: str | None = "Action Units"
    emotion: str | None = "Estimated Emotion"


@dataclasses.dataclass
class DemoConfig:
    """The built-in synthetic dataset, generated under `data/demo/` when no dataset is set."""

    subjects: int = 6
    clips_per_class: int = 4  # standard: per subject and class
    frames: int = 24  # frames per generated clip
    size: int = 128  # generated frame size (pixels)
    amplitude: float = 3.0  # standard: apex displacement of the expression, in pixels
    seed: int = 0
    # standard: one fixed movement per class; realistic: CASME II rows' AUs, timing and labels
    style: Literal["standard", "realistic"] = "standard"
    clips_per_subject: int = 12  # realistic: sheet rows drawn per subject
    amplitude_min: float = 0.5  # realistic: apex displacement range, pixels at 128 px
    amplitude_max: float = 1.5


@dataclasses.dataclass
class RegionConfig:
    """The second input of the dual-branch AU model: crops of the region the clip's AUs name."""

    enabled: bool = False
    au_codes: list[int] = dataclasses.field(
        default_factory=lambda: [1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 43]
    )  # AUs the region rule looks at (the published AU_CODE); others are ignored
    box: Literal["per_frame", "onset", "union"] = "onset"  # per_frame: the published, jittery
    margin: float = 0.0  # fraction of the box's width/height added on each side
    # a clip with no face in any selected frame: a bad clip (stops the run, or skipped with
    # data.on_bad=skip), or cropped at the region's fixed fraction of the frame
    no_face: Literal["error", "proportional"] = "error"
    # which AUs choose the held-out clips' region: annotated (their sheet cells: the published
    # rule, labelled annotated-aus) or predicted (in each fold, an AU detector trained on the
    # training subjects predicts them; training clips keep their annotated regions)
    aus: Literal["annotated", "predicted"] = "annotated"
    # predicted: the AU detector's preset (in config/, or a path); its model, train, data.fmer
    # and data.flow settings, trained on au_codes (see `region_detector_config`)
    detector: str = "au_detector.yaml"


@dataclasses.dataclass
class FlowConfig:
    """The optical-flow inputs (`flow`, `flow_puzzle`, `flow_grid`): onset -> apex flow on the
    face, cropped and aligned once per clip from the onset frame's dlib landmarks."""

    algorithm: Literal["tvl1", "farneback"] = "tvl1"  # OpenCV's TV-L1 (contrib) or Farneback
    # the end frame when the sheet gives no apex (SMIC): the middle of onset..offset, or the
    # frame that differs most from the onset
    apex: Literal["middle", "max_difference"] = "middle"
    face_size: int = 128  # the aligned face the flow is computed on
    margin: float = 0.1  # added on each side of the landmarks' box when aligning
    size: int = 28  # output height and width (Dual-ATME: 28)
    channels: list[str] = dataclasses.field(default_factory=lambda: ["u", "v", "magnitude"])
    # min_max: each channel scaled to [-1, 1] per image (Dual-ATME's flow images); none: the
    # flow in pixels of the face_size face (u, v; magnitude; strain is unitless)
    scaling: Literal["min_max", "none"] = "min_max"
    grid: int = 8  # flow_grid: cells per side of the grid the flow is averaged over


@dataclasses.dataclass
class FMERDataConfig:
    """The FMER inputs (`fmer_patches`, `au_frames`); their face crop, flow algorithm and
    alignment margin are data.flow's (face_size: the 128 px crop the repository leaves unsaid)."""

    # the magnification factors cached per clip (training draws one per clip)
    alphas: list[float] = dataclasses.field(
        default_factory=lambda: [1.2, 1.4, 1.6, 1.8, 2.0, 2.2, 2.4, 2.6, 2.8, 3.0]
    )
    test_alpha: float = 2.0  # one of alphas, stored first: the factor held-out clips use
    # frames at fractional times: warped_blend (a TV-L1-warped blend of the two frames around
    # it; replaces RIFE, whose weights are not public) or cross_fade (their linear mix)
    interpolation: Literal["warped_blend", "cross_fade"] = "warped_blend"
    # the published EVM output: the first frame dropped and the raw last frame appended
    published_frame_order: bool = False
    au_size: int = 144  # side of the AU stream's frames
    # rgb: RGB scaled to [0, 1]; bgr_raw: the published BGR 0-255
    au_colour: Literal["rgb", "bgr_raw"] = "rgb"

    def __post_init__(self) -> None:
        """Checks what types cannot: distinct positive alphas holding test_alpha, au_size."""
        if not self.alphas or len(set(self.alphas)) != len(self.alphas) or min(self.alphas) <= 0:
            raise ConfigError(f"data.fmer.alphas must be distinct and positive, got {self.alphas}")
        if self.test_alpha not in self.alphas:
            raise ConfigError(
                f"data.fmer.test_alpha {self.test_alpha} is not one of alphas {self.alphas}"
            )
        if self.au_size < 8:
            raise ConfigError(f"data.fmer.au_size must be at least 8, got {self.au_size}")


@dataclasses.dataclass
class DataConfig:
    """Where the clips are, how they are labelled, and how frames become model input."""

    root: str | None = None  # dataset folder; None runs the built-in demo
    sheet: str | None = None  # annotation sheet (.xlsx/.csv) mapping Filename -> Subject
    sheet_name: str | None = None  # worksheet; None takes the first
    name: str | None = None  # dataset name in the run folder; None: the root folder's name
    # "class_folders" (the published layout) or a dataset of config/datasets/<name>.yaml
    layout: str = "class_folders"
    protocol: str | None = None  # class table of a dataset layout; None: the dataset's default
    roots: dict[str, str] = dataclasses.field(default_factory=dict)  # composite: part -> root
    sheets: dict[str, str] = dataclasses.field(default_factory=dict)  # composite: part -> sheet
    ground_truth: str | None = None  # composite: the official list; None: the dataset's default
    on_bad: Literal["error", "skip"] = "error"  # a bad row or clip stops the run, or is skipped
    # class_folders only: folder names and label order (dataset layouts take their protocol's)
    classes: list[str] = dataclasses.field(
        default_factory=lambda: ["negative", "positive", "surprise"]
    )
    columns: SheetColumns = dataclasses.field(default_factory=SheetColumns)
    frames: int = 10  # frames per clip fed to the model (D)
    size: int = 128  # frame height and width after resizing
    grayscale: bool = False  # one channel instead of RGB
    # None: the dataset's default (onset_offset for the datasets whose sheets annotate onset
    # and offset, first for class folders); a run saves the sampler it used
    sampler: Literal["first", "even", "onset_offset", "max_motion"] | None = None
    frame_offset: int = 0  # first frame position for the "first" sampler (published framerange)
    # dataset_global: the published (statistics over all subjects: optimistic, labelled so)
    normalization: Literal["per_clip", "temporal", "train_fold", "scale", "dataset_global"] = (
        "per_clip"
    )
    # the model's inputs, by type (mer/data/inputs/<name>.py), e.g. [frames, au_regions]; None:
    # [frames], plus au_regions when regions.enabled (the older spelling, still read)
    inputs: list[str] | None = None
    cache_dir: str = "data/cache"  # preprocessed clips, one entry per sample, input and settings
    # threads building the next batches while the model trains (mer.data.batches.feed); the
    # batches and their order do not depend on it, so results do not either
    workers: int = 2
    demo: DemoConfig = dataclasses.field(default_factory=DemoConfig)
    regions: RegionConfig = dataclasses.field(default_factory=RegionConfig)
    flow: FlowConfig = dataclasses.field(default_factory=FlowConfig)
    fmer: FMERDataConfig = dataclasses.field(default_factory=FMERDataConfig)

    def input_names(self) -> list[str]:
        """The model's inputs, in order (see `inputs`)."""
        if self.inputs is not None:
            return list(self.inputs)
        return ["frames", "au_regions"] if self.regions.enabled else ["frames"]


@dataclasses.dataclass
class FamilyConfig:
    """The `model:` section: `family` names the module `mer/models/<family>.py` whose own
    dataclass (a subclass of this one) holds, types and defaults the rest of the section, so
    unknown keys are rejected per family."""

    family: str = "mlsp"


def family_named(family: Any):
    """The `mer.models.ModelFamily` that `model.family` names: its `model:` section's
    dataclass, train defaults and checks.

    Raises:
        ConfigError: an unknown family, with the known ones.
    """
    from mer.models import model_family  # the families import this module

    try:
        return model_family(family)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def _default_model() -> FamilyConfig:
    return family_named("mlsp").config()


@dataclasses.dataclass
class TrainConfig:
    """Optimisation; the defaults are the published settings."""

    epochs: int = 200
    batch_size: int = 8
    # >1: each batch is fed as this many equal parts whose gradients are averaged into one
    # update (Keras gradient accumulation): the same updates with a fraction of the memory
    micro_batches: int = 1
    learning_rate: float = 1e-3
    decay_epochs: list[int] = dataclasses.field(default_factory=lambda: [40, 80, 120, 160])
    decay_factor: float = 0.9  # learning rate multiplier at each decay epoch
    class_weights: list[float] | None = dataclasses.field(
        default_factory=lambda: [0.3, 0.35, 0.35]
    )  # None: unweighted cross-entropy
    validation_subjects: int = 0  # >0: hold out this many training subjects for validation
    kfold: int = 10  # folds of the stratified k-fold used when a dataset has no subject ids
    verbose: Literal["auto", 0, 1, 2] = "auto"  # Keras fit: auto = bars on a terminal, else a line
    # compute dtype (Keras dtype policy); the softmax and the loss stay float32 either way
    precision: Literal["float32", "mixed_bfloat16", "mixed_float16"] = "float32"
    # XLA: auto = Keras's rule (off on CPU and with PyTorch, on for JAX and on TensorFlow GPUs)
    jit_compile: Literal["auto", True, False] = "auto"
    # data_parallel: one fold's batches split over every local GPU (JAX: keras.distribution
    # DataParallel; TensorFlow: MirroredStrategy); batch_size is the global batch
    distribution: Literal["none", "data_parallel"] = "none"
    # after the folds, train one more model on every subject (same epochs) and save it as
    # final_model.keras + final_model.json for `python -m mer predict` / `explain` / `export`
    final_model: bool = False


@dataclasses.dataclass
class EvalConfig:
    """How a fold's predictions are obtained."""

    # loso: the held-out subject is only predicted (fixed epochs, final weights). paper: the
    # published protocol, for comparison only: the epoch with the best accuracy ON THE TEST
    # SUBJECT predicts it; every output is labelled optimistic.
    protocol: Literal["loso", "paper"] = "loso"


@dataclasses.dataclass
class RunConfig:
    """Where and how a run writes its results."""

    output_dir: str = "runs"
    split_lists_dir: str = "txt"  # LOSO lists per dataset, as the MEGC2019 tooling writes them
    tensorboard: bool = True  # per-fold logs; needs TensorFlow
    save_weights: bool = True  # final weights of each fold
    demo_config: str = "demo.yaml"  # preset used when data.root is not set (in config/)
    executor: Literal["local", "ray"] = "local"  # folds one after another here, or Ray tasks
    ray_address: str | None = None  # auto or HOST:PORT joins a Ray cluster; None starts one here
    ray_num_cpus: float = 1.0  # CPUs reserved by each fold's Ray task
    ray_num_gpus: float = 0.0  # GPUs of each fold's Ray task (a fraction shares a GPU)
    fold_retries: int = 2  # a fold whose Ray task fails is run again up to this many times


@dataclasses.dataclass
class ExperimentConfig:
    """Everything one experiment needs."""

    seed: int = 42
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: FamilyConfig = dataclasses.field(default_factory=_default_model)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    run: RunConfig = dataclasses.field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict, as saved to a run folder's config.yaml."""
        return dataclasses.asdict(self)


def config_differences(
    first: ExperimentConfig, second: ExperimentConfig, ignored: Sequence[str] = ()
) -> list[tuple[str, Any, Any]]:
    """(dotted key, first's value, second's value) for every setting the two configs disagree
    on, in key order; a key in `ignored`, or under a section in it, is not compared."""
    mine, theirs = _flatten(first.to_dict()), _flatten(second.to_dict())
    return [
        (key, mine.get(key), theirs.get(key))
        for key in sorted(set(mine) | set(theirs))
        if mine.get(key) != theirs.get(key)
        and not any(key == name or key.startswith(f"{name}.") for name in ignored)
    ]


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in values.items():
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def resolve_path(path: str | Path) -> Path:
    """A config path: absolute as given, otherwise relative to the project root."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else PROJECT_ROOT / path


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Reads a YAML config (with its `base:` chain) and applies `key=value` overrides.

    Args:
        path: the YAML file; None gives the built-in defaults.
        overrides: strings such as `train.epochs=5` or `data.classes=[a, b]`.

    Returns:
        The validated config.

    Raises:
        ConfigError: on a missing file, unknown key, wrong type or malformed override.
    """
    values = _read_yaml_chain(resolve_path(path)) if path is not None else {}
    for override in overrides:
        key, separator, text = override.partition("=")
        if not separator or not key.strip():
            raise ConfigError(f"override {override!r} is not of the form key=value")
        try:
            value = parse_yaml(text) if text.strip() else None
        except yaml.YAMLError as error:
            raise ConfigError(f"override {override!r}: value is not valid YAML") from error
        _set_dotted(values, key.strip(), value)
    _apply_family_defaults(values)
    config = build_typed(ExperimentConfig, values, "")
    check_config(config)
    return config


def _apply_family_defaults(values: dict[str, Any]) -> None:
    """Fills the `train:` keys that the files and overrides leave unset with the defaults the
    model family declares (Dual-ATME trains 60 epochs of 128 clips, say)."""
    model = values.get("model")
    family = model.get("family", "mlsp") if isinstance(model, Mapping) else "mlsp"
    defaults = family_named(family).train_defaults
    train = values.setdefault("train", {})
    if isinstance(train, dict):
        for key, value in defaults.items():
            train.setdefault(key, value)


def _read_yaml_chain(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    if path in seen:
        raise ConfigError(f"{path}: circular base chain")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        values = parse_yaml(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from error
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(values).__name__}")
    base = values.pop("base", None)
    if base is None:
        return values
    merged = _read_yaml_chain(path.parent / base, (*seen, path))
    _merge(merged, values)
    return merged


def _merge(target: dict[str, Any], source: Mapping[str, Any]) -> None:
    for key, value in source.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


def _set_dotted(values: dict[str, Any], key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    node = values
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {key!r}: {part!r} is not a section")
        node = child
    node[leaf] = value


def build_typed(cls: type, values: Any, where: str = "") -> Any:
    """The dataclass `cls` from a nested mapping, checking keys and types (see `load_config`).

    Raises:
        ConfigError: an unknown key or a value of the wrong type, named by its dotted path.
    """
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(
            f"unknown config key {where}{unknown[0]!r}; known keys: {', '.join(sorted(names))}"
        )
    arguments = {
        name: _convert(hints[name], value, f"{where}{name}") for name, value in values.items()
    }
    return cls(**arguments)


def _convert(kind: Any, value: Any, where: str) -> Any:
    if kind is FamilyConfig:  # typed by the family it names
        family = value.get("family", "mlsp") if isinstance(value, Mapping) else None
        return build_typed(family_named(family).config, value, where + ".")
    if dataclasses.is_dataclass(kind):
        return build_typed(kind, value, where + ".")
    origin = typing.get_origin(kind)
    arguments = typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in arguments:
            return None
        options = [option for option in arguments if option is not type(None)]
        return _convert(options[0], value, where)
    if origin is Literal:
        if value not in arguments:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(str, arguments))}")
        return value
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return {
            _convert(arguments[0], key, f"{where} key"): _convert(
                arguments[1], item, f"{where}.{key}"
            )
            for key, item in value.items()
        }
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [
            _convert(arguments[0], item, f"{where}[{index}]") for index, item in enumerate(value)
        ]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is Any or (isinstance(value, kind) and not (kind is int and isinstance(value, bool))):
        return value
    raise ConfigError(f"{where}: expected {kind.__name__}, got {value!r}")


def check_config(config: ExperimentConfig, *, classes_known: bool | None = None) -> None:
    """Value checks that types alone cannot express.

    Args:
        config: the config to check.
        classes_known: whether data.classes is final; by default only for class folders, as
            a dataset layout takes its classes from its protocol once the dataset is read.

    Raises:
        ConfigError: naming the key and the value.
    """
    positive = {
        "data.frames": config.data.frames,
        "data.size": config.data.size,
        "data.workers": config.data.workers,
        "train.epochs": config.train.epochs,
        "train.batch_size": config.train.batch_size,
        "train.micro_batches": config.train.micro_batches,
        "data.flow.face_size": config.data.flow.face_size,
        "data.flow.size": config.data.flow.size,
        "data.flow.grid": config.data.flow.grid,
    }
    for key, value in positive.items():
        if value < 1:
            raise ConfigError(f"{key} must be at least 1, got {value}")
    if "flow_sequence" in config.data.input_names() and config.data.frames < 2:
        raise ConfigError(
            f"data.inputs flow_sequence needs data.frames >= 2 (one flow step per pair), got "
            f"{config.data.frames}"
        )
    if config.data.flow.grid > config.data.flow.face_size:
        raise ConfigError(
            f"data.flow.grid ({config.data.flow.grid}) must be at most data.flow.face_size "
            f"({config.data.flow.face_size}): a cell is at least one pixel"
        )
    if config.train.batch_size % config.train.micro_batches:
        raise ConfigError(
            f"train.batch_size ({config.train.batch_size}) must be a multiple of "
            f"train.micro_batches ({config.train.micro_batches})"
        )
    if len(config.data.classes) < 2 or len(set(config.data.classes)) != len(config.data.classes):
        raise ConfigError(
            f"data.classes must be at least 2 distinct names, got {config.data.classes}"
        )
    weights = config.train.class_weights
    if classes_known is None:
        classes_known = config.data.layout == "class_folders"
    if weights is not None and classes_known and len(weights) != len(config.data.classes):
        raise ConfigError(
            f"train.class_weights has {len(weights)} values for "
            f"{len(config.data.classes)} classes: {weights}"
        )
    if config.eval.protocol == "paper" and config.train.validation_subjects:
        raise ConfigError(
            "eval.protocol=paper validates on the test subject; set train.validation_subjects=0"
        )
    inputs = config.data.inputs
    if inputs is not None and (not inputs or len(set(inputs)) != len(inputs)):
        raise ConfigError(f"data.inputs must name distinct inputs, got {inputs}")
    if inputs is not None and config.data.regions.enabled and "au_regions" not in inputs:
        raise ConfigError(
            f"data.regions.enabled is the older spelling of data.inputs: [frames, au_regions], "
            f"but data.inputs is {inputs}: drop regions.enabled or add au_regions"
        )
    if config.data.regions.margin < 0:
        raise ConfigError(f"data.regions.margin must be >= 0, got {config.data.regions.margin}")
    if config.data.regions.aus == "predicted":
        if "au_regions" not in config.data.input_names():
            raise ConfigError(
                "data.regions.aus=predicted chooses the au_regions crop, and data.inputs "
                f"{config.data.input_names()} has none"
            )
        region_detector_config(config)  # the preset exists and is an AU detector
    family_named(config.model.family).check(config)
    for key in ("ray_num_cpus", "ray_num_gpus", "fold_retries"):
        if getattr(config.run, key) < 0:
            raise ConfigError(f"run.{key} must be >= 0, got {getattr(config.run, key)}")


def region_detector_config(config: ExperimentConfig) -> ExperimentConfig:
    """The AU detector that data.regions.aus=predicted trains in each fold: the model and train
    sections and the AU frames' settings (data.fmer, data.flow) of the preset that
    data.regions.detector names (relative to config/), on this run's dataset, cache and seed,
    predicting data.regions.au_codes, the AUs the region rule looks at (every fold's detector
    has the same outputs; an AU no training clip has is trained towards absent).

    Raises:
        ConfigError: the preset is missing, invalid, or not of family au_detector.
    """
    name = config.data.regions.detector
    path = Path(name).expanduser()
    preset = load_config(path if path.is_absolute() else CONFIG_DIR / path)
    if preset.model.family != "au_detector":
        raise ConfigError(
            f"data.regions.detector must name an au_detector preset, got {name!r} (family "
            f"{preset.model.family})"
        )
    data = dataclasses.replace(
        config.data,
        inputs=["au_frames"],
        regions=RegionConfig(),
        fmer=preset.data.fmer,
        flow=preset.data.flow,
    )
    model = dataclasses.replace(preset.model, aus=list(config.data.regions.au_codes))
    train = dataclasses.replace(preset.train, final_model=False)
    detector = dataclasses.replace(config, data=data, model=model, train=train, eval=EvalConfig())
    check_config(detector)
    return detector

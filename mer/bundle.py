"""A trained model and everything needed to use it on new clips, saved side by side.

`final_model.keras` is the Keras model; `final_model.json` beside it holds the data config it
was trained with (so `predict` runs exactly the training preprocessing), the class names, the
fitted normalisers, one per input stream, and how it was trained. A run with
data.regions.aus=predicted saves its AU detector the same way beside it (`final_au_detector.keras`,
whose side file lists its `aus`), loaded with the model as `Bundle.detector`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import uuid
from pathlib import Path

import keras
import numpy as np

import mer  # noqa: F401  (registers the custom layers and loss, so the model reloads)
from mer.config import ConfigError, DataConfig, ExperimentConfig, build_typed
from mer.data.batches import Normalizer
from mer.data.sheets import DataError
from mer.data.sources import preprocessing_settings
from mer.io import write_json
from mer.models import model_family

BUNDLE_FORMAT = 1
MODEL_FILE = "final_model.keras"
DETECTOR_FILE = "final_au_detector.keras"  # data.regions.aus=predicted: the region's AU detector


@dataclasses.dataclass
class Bundle:
    """A loaded model with its preprocessing, classes and normalisers."""

    model: keras.Model
    data: DataConfig  # the training run's data config: inputs, frames, size, sampler, flow, ...
    classes: list[str]
    normalizers: list[Normalizer]  # one per input stream
    info: dict  # the whole JSON side file
    detector: Bundle | None = None  # the AU detector saved beside it, if any (DETECTOR_FILE)

    @property
    def streams(self) -> int:
        """Model inputs: one per `data.inputs` entry (the whole face; the face and its AU-region
        crops; the two flow images of Dual-ATME)."""
        return len(self.normalizers)

    @property
    def aus(self) -> list[int] | None:
        """An AU detector's outputs, the AU numbers in order (its side file's `aus`); None for
        a model that predicts classes."""
        return self.info.get("aus")

    @property
    def outputs(self) -> list[str]:
        """The names of the model's outputs: its classes, or an AU detector's "AU<number>"."""
        return self.classes if self.aus is None else [f"AU{code}" for code in self.aus]


def metadata_path(model_path: str | os.PathLike[str]) -> Path:
    """The JSON side file of a saved model: `final_model.json` for `final_model.keras`."""
    return Path(model_path).with_suffix(".json")


def class_model(model: keras.Model) -> keras.Model:
    """The same layers from `model`'s inputs to its first output, the class probabilities
    (FMER's second, its AU logits, is a training target), uncompiled."""
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return keras.Model(inputs, model.outputs[0], name=model.name)


def save_bundle(
    path: str | os.PathLike[str],
    model: keras.Model,
    config: ExperimentConfig,
    normalizers: list[Normalizer],
    training: dict | None = None,
) -> Path:
    """Saves the model as `.keras` and its side file, each written whole or not at all.

    Args:
        path: the `.keras` file to write.
        model: the trained model.
        config: the run's config (its data section and classes are what predict needs).
        normalizers: the fitted normalisers, one per input stream.
        training: how it was trained (clips, subjects, epochs, seed, history), stored as is.

    Returns:
        The `.keras` path.
    """
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"a saved model's file name must end in .keras, got {path}")
    if len(normalizers) != len(model.inputs):
        raise ValueError(f"{len(normalizers)} normalizers for {len(model.inputs)} model inputs")
    predicts_aus = model_family(config.model.family).predicts == "aus"
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.{uuid.uuid4().hex}.keras")
    # The same layers in an uncompiled model: the optimizer state (twice the weights) is left out.
    inference = class_model(model)
    try:
        inference.save(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    write_json(
        metadata_path(path),
        {
            "format": BUNDLE_FORMAT,
            "classes": list(config.data.classes),
            "family": config.model.family,
            # an AU detector's outputs, in order (`model.aus`)
            **({"aus": list(config.model.aus)} if predicts_aus else {}),
            "streams": len(normalizers),
            "input_shape": list(model.inputs[0].shape[1:]),
            "normalizers": [normalizer.to_dict() for normalizer in normalizers],
            "preprocessing": preprocessing_settings(config.data),
            "data": dataclasses.asdict(config.data),
            "training": training or {},
            "versions": {
                "python": platform.python_version(),
                "keras": keras.__version__,
                "backend": keras.backend.backend(),
                "numpy": np.__version__,
            },
        },
    )
    return path


def load_bundle(path: str | os.PathLike[str]) -> Bundle:
    """Loads a saved model (a `.keras` file, or a run folder holding `final_model.keras`), and
    the AU detector saved beside a final model, if there is one.

    Raises:
        DataError: the model or its side file is missing or unreadable.
    """
    path = Path(path)
    if path.is_dir():
        path = path / MODEL_FILE
    side = metadata_path(path)
    if not path.is_file():
        raise DataError(
            f"model not found: {path} (train one with --set train.final_model=true; it is "
            "saved as final_model.keras in the run folder)"
        )
    if not side.is_file():
        raise DataError(f"{path} has no {side.name} beside it: it holds the preprocessing")
    try:
        info = json.loads(side.read_text())
        data = build_typed(DataConfig, info["data"], "data.")
        normalizers = [Normalizer(**values) for values in info["normalizers"]]
        classes = list(info["classes"])
    except (ValueError, KeyError, TypeError, ConfigError) as error:
        raise DataError(f"{side}: not a model side file this version reads ({error})") from error
    try:
        model = keras.saving.load_model(path, compile=False)
    except (ValueError, OSError) as error:
        raise DataError(f"cannot load model {path}: {error}") from error
    outputs = len(info.get("aus", classes))  # an AU detector's outputs are its AUs
    if len(model.inputs) != len(normalizers) or model.outputs[0].shape[-1] != outputs:
        raise DataError(
            f"{side} does not match {path.name}: {len(normalizers)} streams and "
            f"{outputs} outputs for a model with {len(model.inputs)} inputs and "
            f"{model.outputs[0].shape[-1]} outputs"
        )
    beside = path.with_name(DETECTOR_FILE)
    detector = load_bundle(beside) if path.name == MODEL_FILE and beside.is_file() else None
    return Bundle(model, data, classes, normalizers, info, detector)

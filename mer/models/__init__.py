"""Model families: `model.family` names the module `mer/models/<family>.py`.

Such a module defines `FAMILY`, a `ModelFamily`: its typed `model:` config section, a builder
from that section and the input specs (`mer.specs.InputSpec`), the loss it trains with, the
`train:` defaults it declares (a preset's own values win), the checks of its settings, the
targets besides the classes it may train on (made from the clips' annotated AUs), what its
first output predicts (the classes, or the AUs alone), and the commands that do not apply to
it. The LOSO loop, the benchmark, presets, predict, explain and export receive the family and
name none.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from mer.config import ConfigError
from mer.specs import InputSpec

DEFAULT_FAMILY = "mlsp"


@dataclasses.dataclass(frozen=True)
class ModelFamily:
    """One family of networks (see the module docstring)."""

    name: str
    config: type  # the dataclass of its `model:` section; its `family` field names the module
    build: Callable[[Any, Sequence[InputSpec], int], Any]  # (section, specs, classes) -> Model
    loss: Callable[[Any], Any]  # the experiment config -> a Keras loss
    train_defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    check: Callable[[Any], None] = lambda config: None  # raises ConfigError on a bad setting
    # (network, normalised inputs, labels, config, seed) -> curves; None: Keras fit
    fit: Callable[..., dict[str, list[float]]] | None = None
    # command or "train" -> why it does not apply to this family, said in one line
    not_applicable: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # (each clip's AU numbers, None where its sheet has no AU cell; the experiment config) ->
    # targets of the model's second output, (clips, k) float32, NaN rows where unknown; or
    # None. The caller parses the cells (models read no sheet) and trains on the training
    # clips' rows alone. None: the classes are the only target.
    targets: Callable[[Sequence[frozenset[int] | None], Any], Any] | None = None
    # "classes": the first output is the class probabilities, scored by UF1/UAR. "aus": the
    # only output is per-AU probabilities (sigmoid) of `config.model.aus`, in that order,
    # trained on `targets` alone (no accuracy, no class weights) and scored by per-AU F1; the
    # held-out clips' AU cells are read to score them, never to train
    predicts: Literal["classes", "aus"] = "classes"

    def check_applies(self, command: str) -> None:
        """Refuses a command that does not apply to this family, saying why in one line.

        Args:
            command: a key of `not_applicable` ("final_model", "seeds", "compare", ...).

        Raises:
            ConfigError: with the reason, where `not_applicable` gives one.
        """
        reason = self.not_applicable.get(command)
        if reason:
            raise ConfigError(reason)


def known_families() -> list[str]:
    """The modules of this package that define a family."""
    names = [module.name for module in pkgutil.iter_modules(__path__)]
    return sorted(name for name in names if hasattr(_module(name), "FAMILY"))


def _module(name: str):
    return importlib.import_module(f"{__name__}.{name}")


def model_family(name: str) -> ModelFamily:
    """The family `name`.

    Raises:
        ValueError: no such family, with the known ones.
    """
    if not isinstance(name, str) or not name.isidentifier() or name not in known_families():
        raise ValueError(f"unknown model.family {name!r}; known: {', '.join(known_families())}")
    return _module(name).FAMILY

"""The README's "Adding a model" and "Adding an input" examples, run as written: each code block
is saved as the module it names, found by the same discovery as the shipped families and
inputs, and used by a tiny LOSO fold and by preprocessing."""

import re

import numpy as np
import pandas as pd
import pytest

import mer.data.inputs
import mer.models
from mer.config import PROJECT_ROOT, load_config, parse_yaml
from mer.data.sources import preprocess
from mer.training.loso import build_model, loso_folds, train_fold

README = (PROJECT_ROOT / "README.md").read_text()


def _blocks(after: str, language: str) -> list[str]:
    """The `language` code blocks of the README paragraph that starts with `after`."""
    section = README.split(after, 1)[1].split("\n**", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.DOTALL)


@pytest.fixture
def examples(tmp_path, monkeypatch):
    """The README's example modules, where the packages look for families and inputs."""
    (model_code,) = _blocks("**Adding a model**", "python")
    (input_code,) = _blocks("**Adding an input**", "python")
    for package, name, code in (
        (mer.models, "tiny_cnn", model_code),
        (mer.data.inputs, "frame_difference", input_code),
    ):
        folder = tmp_path / package.__name__.replace(".", "_")
        folder.mkdir()
        (folder / f"{name}.py").write_text(code)
        monkeypatch.setattr(package, "__path__", [*package.__path__, str(folder)])
    yield
    import sys

    for name in ("mer.models.tiny_cnn", "mer.data.inputs.frame_difference"):
        sys.modules.pop(name, None)


@pytest.mark.slow
def test_the_readme_family_trains_a_fold(examples, tmp_path):
    (yaml_text,) = _blocks("**Adding a model**", "yaml")
    assert parse_yaml(yaml_text)["model"] == {"family": "tiny_cnn", "filters": 16}
    overrides = ["model.family=tiny_cnn", "model.filters=4", "data.frames=4", "data.size=16",
                 "train.epochs=1", "run.tensorboard=false"]
    config = load_config(None, overrides)
    assert config.train.epochs == 1 and config.train.class_weights is None  # family default
    assert build_model(config).count_params() == 3 * 3**3 * 4 + 4 + 4 * 3 + 3  # conv, dense
    random = np.random.default_rng(0)
    clips = [random.integers(0, 255, (4, 16, 16, 3), dtype=np.uint8) for _ in range(6)]
    fold = loso_folds(["a", "a", "a", "b", "b", "b"])[0]
    result = train_fold(fold, [clips], np.array([0, 1, 2] * 2), config, tmp_path / "fold")
    assert result.probabilities.shape == (3, 3)


def test_the_readme_input_is_preprocessed_and_cached(examples, tmp_path):
    from tests.data.replicas import class_folder_dataset

    class_folder_dataset(tmp_path / "dataset", subjects=1)
    clips = sorted((tmp_path / "dataset").rglob("*.avi"))
    manifest = pd.DataFrame({"sample": [clip.stem for clip in clips],
                             "path": [str(clip) for clip in clips],
                             "frames": [12] * len(clips), "onset": [None] * len(clips),
                             "offset": [None] * len(clips)})
    config = load_config(None, ["data.inputs=[frame_difference]", "data.frames=4",
                                "data.size=8", "data.sampler=even",
                                f"data.cache_dir={tmp_path / 'cache'}"])
    (differences,) = preprocess(config.data, manifest).streams
    assert differences[0].shape == (4, 8, 8, 3) and (differences[0][0] == 128).all()
    assert preprocess(config.data, manifest).hits == len(clips)

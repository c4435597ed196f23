"""The typed config: base chains, overrides, and one-line errors."""

import pytest

from mer.config import CONFIG_DIR, ConfigError, load_config


def test_published_defaults_and_overrides():
    config = load_config(CONFIG_DIR / "me_model.yaml",
                         ["train.epochs=3", "data.classes=[a, b]", "train.class_weights=null",
                          "model.dropout=0.5", "data.root=/x"])
    assert config.train.epochs == 3
    assert config.data.classes == ["a", "b"]
    assert config.train.class_weights is None
    assert config.model.dropout == 0.5
    assert config.train.learning_rate == 0.001 and config.train.batch_size == 8
    assert config.train.decay_epochs == [40, 80, 120, 160]


def test_demo_preset_inherits_from_the_published_file():
    demo = load_config(CONFIG_DIR / "demo.yaml")
    assert demo.data.root is None and demo.data.size == 48
    assert demo.model.gru_units == 512 and demo.train.batch_size == 8


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.epoch=3", "unknown config key train.'epoch'"),
        ("train.epochs=three", "train.epochs: expected int, got 'three'"),
        ("train.epochs=true", "train.epochs: expected int, got True"),
        ("model.cam=max", "model.cam: 'max' is not one of"),
        ("data.classes=[a]", "data.classes must be at least 2"),
        ("data.workers=0", "data.workers must be at least 1, got 0"),
        ("train.class_weights=[1, 2]", "class_weights has 2 values for 3 classes"),
        ("noequals", "is not of the form key=value"),
    ],
)
def test_errors_name_the_key_and_value(override, message):
    with pytest.raises(ConfigError) as error:
        load_config(CONFIG_DIR / "me_model.yaml", [override])
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_missing_file_and_base_chain(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "none.yaml")
    (tmp_path / "a.yaml").write_text("base: b.yaml\ntrain:\n  epochs: 2\n")
    (tmp_path / "b.yaml").write_text("seed: 7\ntrain:\n  epochs: 5\n  batch_size: 4\n")
    config = load_config(tmp_path / "a.yaml")
    assert (config.seed, config.train.epochs, config.train.batch_size) == (7, 2, 4)
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="circular"):
        load_config(tmp_path / "a.yaml")


@pytest.mark.parametrize(
    "text, value", [("1e-4", 1e-4), ("1E+4", 1e4), ("1.0e4", 1e4), ("-2.5E-3", -2.5e-3),
                    (".5e1", 5.0), ("3", 3.0), ("0.001", 1e-3)]
)
def test_every_float_spelling_is_a_number_on_the_command_line_and_in_files(
    tmp_path, text, value
):
    assert load_config(None, [f"train.learning_rate={text}"]).train.learning_rate == value
    path = tmp_path / "experiment.yaml"
    path.write_text(f"train:\n  learning_rate: {text}\n  decay_factor: {text}\n")
    config = load_config(path)
    assert config.train.learning_rate == value and config.train.decay_factor == value
    assert load_config(None, [f"data.name={text}e"]).data.name == f"{text}e"  # text stays text

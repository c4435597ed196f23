"""The entry scripts' config resolution: without a dataset, a preset runs the demo and says
which of its model settings the demo's replace."""

from mer.cli import resolve_config
from mer.config import CONFIG_DIR, config_differences, load_config


def test_a_preset_without_data_names_the_model_settings_the_demo_replaces(capsys):
    preset = CONFIG_DIR / "ablations" / "single_branch_gru.yaml"
    overrides = ["model.dropout=0.1"]  # applies to both, so it differs in neither
    config, path = resolve_config(str(preset), "me_model.yaml", overrides)
    line = capsys.readouterr().out.strip()
    assert path == CONFIG_DIR / "demo.yaml" and config == load_config(path, overrides)
    assert config.model.dropout == 0.1
    assert "demo preset demo.yaml instead of single_branch_gru.yaml" in line
    assert "the preset's own network and training settings are replaced by the demo's" in line
    own = load_config(preset, overrides)
    differences = [item for item in config_differences(own, config) if item[0].startswith("model.")]
    assert [key for key, _, _ in differences] == ["model.branches", "model.cam", "model.pooling"]
    listed = ", ".join(
        f"{key.removeprefix('model.')} {mine} -> {demo}" for key, mine, demo in differences
    )
    assert f"(model settings, preset -> demo: {listed})" in line
    assert "dropout" not in line and len(line.splitlines()) == 1


def test_the_default_preset_runs_its_demo_with_the_same_model_settings(capsys):
    config, path = resolve_config(None, "me_model.yaml", [])
    assert path == CONFIG_DIR / "demo.yaml"
    assert "(the same model settings)" in capsys.readouterr().out
    resolve_config(None, "me_model.yaml", ["data.root=somewhere"])  # a dataset: no switch
    assert capsys.readouterr().out == ""

"""Architecture figures drawn from the model's layer graph."""

import keras
from PIL import Image

from mer.cli import main
from mer.evaluation.architecture import _boxes, describe, draw_architecture
from mer.models.builders import build_mlsp_model


def test_boxes_follow_the_layer_graph(tmp_path):
    model = build_mlsp_model((4, 16, 16, 3), 3, streams=2, branch_filters=4, merge_filters=4,
                             gru_units=32, heads=4, dense_units=[8, 8], head_units=[8, 4])
    boxes, parents = _boxes(model)
    names = [box["name"] for box in boxes]
    assert names[:4] == ["frames", "regions", "branch5_conv", "branch3_conv"]
    assert "branch5_leaky" not in names  # written inside the conv's box
    assert parents["branches"] == ["branch5_conv", "branch3_conv"]
    assert parents["attention"] == ["merge_conv", "channel_attention", "spatial_attention"]
    assert describe(model.get_layer("branch5_conv")) == "Conv3D 4, 5×5×5"
    assert describe(model.get_layer("gru")) == "GRU 32"
    draw_architecture(model, tmp_path / "tiny.png")
    assert Image.open(tmp_path / "tiny.png").format == "PNG"


def test_architecture_command_draws_both_published_models(tmp_path, capsys):
    assert main(["architecture", "--out", str(tmp_path)]) == 0
    for name in ("architecture_me_model.png", "architecture_dual_branch_au.png"):
        image = Image.open(tmp_path / name)
        assert image.height > image.width > 500, name
    assert "dual_branch_au.yaml" in capsys.readouterr().out
    keras.backend.clear_session()

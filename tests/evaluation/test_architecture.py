"""Architecture figures drawn from the model's layer graph."""

import keras
import pytest
from PIL import Image

from mer.cli import main
from mer.config import CONFIG_DIR
from mer.evaluation.architecture import _boxes, describe, draw_architecture
from mer.models.builders import build_mlsp_model
from mer.models.dual_atme import build_dual_atme_model


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


@pytest.mark.slow
def test_architecture_command_draws_both_published_models(tmp_path, capsys):
    assert main(["architecture", "--out", str(tmp_path)]) == 0
    for name in ("architecture_me_model.png", "architecture_dual_branch_au.png"):
        image = Image.open(tmp_path / name)
        assert image.height > image.width > 500, name
    assert "dual_branch_au.yaml" in capsys.readouterr().out
    keras.backend.clear_session()


@pytest.mark.slow
def test_dual_atme_is_drawn_as_two_2d_branches(tmp_path, capsys):
    """Each Inception block one box with its 2-D pooling inside; CBAM on the AARS branch only;
    the two embeddings meet at the fusion."""
    model = build_dual_atme_model([(28, 28, 3)] * 2, 3)
    boxes, parents = _boxes(model)
    followers = {box["name"]: [layer.name for layer in box["followers"]] for box in boxes}
    assert followers["aars_inception1"] == ["aars_pool1"]
    assert followers["head_dense"] == ["head_batch_norm", "head_relu", "head_dropout"]
    assert parents["aars_inception2"] == ["aars_inception1"]
    assert parents["cbam"] == ["aars_inception2"]
    assert parents["aars_embedding"] == ["cbam"]
    assert parents["hars_embedding"] == ["hars_inception2"]
    assert parents["fusion"] == ["aars_embedding", "hars_embedding"]
    assert describe(model.get_layer("hars_inception2")) == "Inception 4×12 (1, 3, 5, pool)"
    assert describe(model.get_layer("cbam")) == "CBAM (/16, spatial 3×3)"
    assert main(["architecture", "--config", "dual_atme.yaml", "--out", str(tmp_path)]) == 0
    assert "dual_atme.yaml" in capsys.readouterr().out
    image = Image.open(tmp_path / "architecture_dual_atme.png")
    assert image.height > image.width > 500
    keras.backend.clear_session()


def test_titles_count_an_au_detectors_outputs_as_aus(tmp_path, monkeypatch):
    import mer.evaluation.architecture as architecture
    from mer.figures import write_architecture

    titles = []
    monkeypatch.setattr(
        architecture, "draw_architecture", lambda model, path, title: titles.append(title)
    )
    preset = tmp_path / "tiny_detector.yaml"
    preset.write_text(f"base: {CONFIG_DIR}/au_detector.yaml\nmodel:\n  p3d_filters: 1\n")
    write_architecture(preset, tmp_path)
    write_architecture(CONFIG_DIR / "demo.yaml", tmp_path)
    assert "; 9 AUs; " in titles[0] and "classes" not in titles[0]
    assert "; 3 classes; " in titles[1]


def test_global_pooling_and_a_layer_of_two_outputs_are_drawn(tmp_path):
    """FMER's graph splits its tokens in two (one layer, two outputs) and its AU detector ends
    in a global pooling, which has no pool size: the figure names both."""
    from mer.evaluation.architecture import _shape
    from mer.figures import write_architecture

    assert describe(keras.layers.GlobalMaxPooling1D()) == "GlobalMaxPool1D"
    assert describe(keras.layers.MaxPooling3D(2)) == "MaxPool3D 2×2×2"
    preset = tmp_path / "tiny_fmer.yaml"
    preset.write_text(
        f"base: {CONFIG_DIR}/fmer.yaml\ndata:\n  flow:\n    face_size: 32\n  fmer:\n"
        "    alphas: [2.0]\n    au_size: 16\nmodel:\n  p3d_filters: 1\n"
    )
    image = write_architecture(preset, tmp_path)
    assert Image.open(image).height > 500
    from mer.config import load_config
    from mer.training.loso import build_model

    model = build_model(load_config(preset))
    assert _shape(model.get_layer("graph_regions")) == "(10, 49) + (20, 49)"
    assert describe(model.get_layer("p3d_pool")) == "GlobalAveragePool2D"
    keras.backend.clear_session()

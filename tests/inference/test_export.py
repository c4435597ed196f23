"""`python -m mer export`: SavedModel (and ONNX where tf2onnx is installed)."""

import json

import pytest

from mer.cli import main

ONNX_MISSING = "ONNX export is optional: pip install -r requirements-onnx.txt; CI installs it"


@pytest.mark.slow
def test_savedmodel_export_matches_keras(one_stream_bundle, tmp_path, capsys):
    model, _ = one_stream_bundle
    assert main(["export", "--model", str(model), "--out", str(tmp_path)]) == 0
    output = capsys.readouterr().out
    assert (tmp_path / "saved_model" / "saved_model.pb").is_file()
    difference = float(output.split("max |difference| from Keras ")[1].split(")")[0])
    assert difference < 1e-5
    assert json.loads((tmp_path / "final_model.json").read_text())["streams"] == 1


@pytest.mark.slow
def test_onnx_export_matches_keras(one_stream_bundle, tmp_path, capsys):
    for package in ("tf2onnx", "onnxruntime"):
        pytest.importorskip(package, reason=ONNX_MISSING)
    model, _ = one_stream_bundle
    assert main(["export", "--model", str(model), "--out", str(tmp_path), "--format", "onnx"]) == 0
    output = capsys.readouterr().out
    difference = float(output.split("max |difference| from Keras ")[1].split(")")[0])
    assert (tmp_path / "model.onnx").is_file() and difference < 1e-5


@pytest.mark.parametrize(
    ("backend", "formats", "message"),
    [
        ("torch", ["savedmodel"], "savedmodel export runs on the tensorflow or jax backend, not"),
        ("jax", ["savedmodel", "onnx"], "onnx export runs on the tensorflow backend, not jax"),
    ],
)
def test_other_backends_are_told_in_one_line(
    monkeypatch, tmp_path, capsys, backend, formats, message
):
    """A format the backend cannot export is refused before anything is read or written."""
    monkeypatch.setattr("keras.backend.backend", lambda: backend)
    arguments = ["export", "--model", str(tmp_path / "none"), "--out", str(tmp_path / "out")]
    assert main([*arguments, "--format", *formats]) == 2
    error = capsys.readouterr().err
    assert message in error and "KERAS_BACKEND=tensorflow" in error
    assert len(error.strip().splitlines()) == 1 and not (tmp_path / "out").exists()

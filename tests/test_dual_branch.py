"""The dual-branch AU pipeline: two cached streams with real landmarks, a tiny script run (a
flat two-branch network: the pipeline is under test), and `python -m mer regions`."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import mer.data.inputs as inputs
import mer.data.sources as sources
from mer.cli import main, run_script
from mer.config import PROJECT_ROOT, load_config
from mer.data.synthetic import DemoSpec, generate_demo
from tests.test_end_to_end import FLAT_LAYERS, TINY_MODEL, workspace


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory):
    """Two synthetic subjects with real-looking faces, one clip per class."""
    root = tmp_path_factory.mktemp("demo")
    sheet = generate_demo(root, DemoSpec(subjects=2, clips_per_class=1, frames=16, size=96))
    return root, sheet


def _overrides(root, sheet, tmp_path):
    return [
        f"data.root={root}",
        f"data.sheet={sheet}",
        "data.frames=6",
        "data.size=32",
        *workspace(tmp_path),
        "train.epochs=1",
        "train.batch_size=3",
    ]


def test_two_streams_are_cached_and_not_decoded_again(tiny_demo, tmp_path, monkeypatch):
    root, sheet = tiny_demo
    config = load_config(PROJECT_ROOT / "config" / "dual_branch_au.yaml",
                         _overrides(root, sheet, tmp_path))
    source = sources.resolve_source(config.data)
    manifest = sources.load_manifest(config.data, source).samples
    prepared = sources.preprocess(config.data, manifest)
    streams = prepared.streams
    assert prepared.hits == 0 and len(streams) == 2
    faces, regions = streams
    assert faces[0].shape == regions[0].shape == (6, 32, 32, 3)
    assert faces[0].dtype == regions[0].dtype == np.uint8
    assert not np.array_equal(faces[0], regions[0])  # the crop is not the whole face

    def no_decoding(*arguments, **keywords):
        raise AssertionError("a cache hit decoded a clip")

    monkeypatch.setattr(inputs, "read_frames", no_decoding)
    monkeypatch.setattr(inputs, "frame_changes", no_decoding)
    again = sources.preprocess(config.data, manifest)
    assert again.hits == len(manifest) == 6
    np.testing.assert_array_equal(again.streams[1][0], regions[0])


@pytest.mark.slow
def test_dual_branch_script_end_to_end(tiny_demo, tmp_path, capsys):
    root, sheet = tiny_demo
    overrides = _overrides(root, sheet, tmp_path) + TINY_MODEL + FLAT_LAYERS
    command = [sys.executable, str(PROJECT_ROOT / "dual_branch_3dcnn_au.py")]
    for item in overrides:
        command += ["--set", item]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("Results: ")
    run_dir = tmp_path / "runs" / last.split("/")[-1]
    assert run_dir.name.startswith("dual_branch_3dcnn_au-")
    assert "-annotated-aus-annotated-window-" in run_dir.name  # max_motion reads onset..offset
    predictions = pd.read_csv(run_dir / "predictions.csv")
    assert len(predictions) == 6
    assert set(predictions["caveats"]) == {"annotated-aus; annotated-window"}
    config = (run_dir / "config.yaml").read_text()
    assert "enabled: true" in config and "max_motion" in config
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["clips"] == 6
    assert summary["test_inputs_use_annotations"] is True
    assert summary["annotated_test_inputs"] == ["au_regions", "onset_offset window"]
    # The demo's AU cells: negative 4+15 and surprise 1+2+5 are "eyes", positive 6+12 "mouth".
    # Each fold's one training subject ties negative and surprise on "eyes": the first class
    # wins, so negative and positive clips are right, surprise ones predicted negative.
    reference = summary["annotation_only_reference"]
    assert reference["regions"] == {"eyes": 4, "mouth": 2}
    assert reference["uf1"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert reference["uar"] == pytest.approx((1 + 1 + 0) / 3)
    assert "NOT A CLEAN LOSO ESTIMATE:" in done.stdout
    assert "Annotation-only reference" in done.stdout

    # the script is run_script with these names: its --summary is asked here, in this process
    arguments = ["--set", "data.root=x", "--set", "data.sheet=y", "--summary"]
    assert run_script("dual_branch_3dcnn_au", "dual_branch_au.yaml", "test", arguments) == 0
    assert "Total parameters: 3,817,055" in capsys.readouterr().out


def test_regions_command_on_a_real_face(tmp_path, capsys):
    image = PROJECT_ROOT / "mer" / "data" / "assets" / "astronaut.png"
    landmarks = json.loads((image.parent / "astronaut_landmarks.json").read_text())["landmarks"]
    out = tmp_path / "crop.png"
    assert main(["regions", "--image", str(image), "--aus", "12", "--out", str(out)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["region"] == "mouth" and result["landmarks"] == 68
    x0, y0, x1, y1 = result["box"]
    corners = [landmarks[48], landmarks[54]]  # the mouth corners are inside, the eyes are not
    assert all(x0 <= x < x1 and y0 <= y <= y1 for x, y in corners)
    assert not any(y0 <= landmarks[index][1] < y1 for index in (36, 45))
    import cv2

    assert cv2.imread(str(out)).shape == (128, 128, 3)
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.zeros((64, 64, 3), np.uint8))
    assert main(["regions", "--image", str(blank), "--aus", "4"]) == 2
    assert "no face found" in capsys.readouterr().err

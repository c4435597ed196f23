"""`python -m mer export-flow`: the flow inputs as the PNG images other MER code reads."""

import numpy as np
import pytest
from PIL import Image

from mer.cli import EXIT_USAGE, main
from mer.config import PROJECT_ROOT, load_config
from mer.data.export_flow import flow_image_path
from mer.data.manifest import build_manifest
from mer.data.sources import preprocess
from mer.data.synthetic import DemoSpec, generate_demo
from tests.test_end_to_end import as_arguments

PRESET = PROJECT_ROOT / "config" / "demo_dual_atme.yaml"  # inputs [flow, flow_puzzle], 28 px


@pytest.mark.slow
def test_the_flow_inputs_of_a_demo_run_are_written_and_read_back(tmp_path, capsys):
    root = tmp_path / "demo"
    sheet = generate_demo(root, DemoSpec(subjects=2, clips_per_class=1, frames=12, size=96))
    overrides = [f"data.root={root}", f"data.sheet={sheet}", f"data.cache_dir={tmp_path / 'cache'}",
                 "data.flow.face_size=48"]
    out = tmp_path / "flow images"
    assert main(["export-flow", "--config", str(PRESET), *as_arguments(overrides),
                 "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip().endswith(f"Flow images: 12 in {out}")
    data = load_config(PRESET, overrides).data
    manifest = build_manifest(data, root, sheet, "demo").samples
    assert len(manifest) == 6
    written = sorted(path.relative_to(out).as_posix() for path in out.rglob("*.png"))
    expected = [str(flow_image_path(sample, name)) for name in ("flow", "flow_puzzle")
                for sample in manifest["sample"]]
    assert written == sorted(expected)
    assert "flow/sub01_negative_01_flow.png" in written  # <input>/<sample>_<input>.png
    # The export went through the cache: a run's preprocessing finds every clip there.
    prepared = preprocess(data, manifest)
    assert prepared.hits == len(manifest)
    for name, stream in zip(data.input_names(), prepared.streams, strict=True):
        for sample, cached in zip(manifest["sample"], stream, strict=True):
            with Image.open(out / flow_image_path(sample, name)) as image:  # as Dual-ATME reads
                pixels = np.asarray(image.convert("RGB"))
            assert pixels.shape == (28, 28, 3) and pixels.dtype == np.uint8
            assert pixels.min() == 0 and pixels.max() == 255  # each channel spans [-1, 1]
            read_back = pixels / 127.5 - 1  # R, G, B = u, v, magnitude
            half_step = 1 / 255 + 1e-6  # rounding to the nearest of 256 levels over [-1, 1]
            np.testing.assert_allclose(read_back, np.asarray(cached, np.float64), atol=half_step)


@pytest.mark.parametrize(
    ("preset", "override", "message"),
    [("demo.yaml", "data.frames=4", "data.inputs is ['frames']"),
     ("demo_dual_atme.yaml", "data.flow.scaling=none", "data.flow.scaling='none'"),
     ("demo_dual_atme.yaml", "data.flow.channels=[u, v]", "data.flow.channels=['u', 'v']")],
)
def test_what_cannot_be_a_flow_image_is_refused_before_any_work(tmp_path, capsys, preset,
                                                                 override, message):
    config = str(PROJECT_ROOT / "config" / preset)
    arguments = ["export-flow", "--config", config, "--set", override, "--out", str(tmp_path)]
    assert main(arguments) == EXIT_USAGE
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []

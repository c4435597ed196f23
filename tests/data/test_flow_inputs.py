"""The flow inputs as preprocessing makes them: cache keys, the movement they measure on a real
face, dtype and shape (the flow maths itself: tests/data/test_flow.py)."""

import dataclasses

import cv2
import numpy as np
import pytest

import mer.data.inputs.flow as flow_input
import mer.data.inputs.flow_sequence as flow_sequence_input
from mer.config import ConfigError, DataConfig, FlowConfig, load_config
from mer.data.faces import shared_landmarker
from mer.data.flow import aligned_face, optical_flow
from mer.data.inputs import input_specs
from mer.data.inputs.flow_grid import grid_means
from mer.data.manifest import build_manifest
from mer.data.sources import preprocess
from tests.data.replicas import write_sheet
from tests.data.test_flow import ASSETS, SHIFT, _translated

FACE_SIZE = 64  # the aligned face the flow is computed on
SIZE = 32  # the flow input's side: the face's flow averaged over 2 × 2 pixels
CROP = (slice(0, 256), slice(96, 352))  # rows, columns of the photo around the face


class OnsetLandmarks:
    """Stands in for the flow inputs' landmarker: dlib ran once, on the onset frame every clip
    of this module starts on."""

    def __init__(self, onset: np.ndarray):
        self.onset = onset
        self.found = shared_landmarker().landmarks(onset)

    def landmarks(self, image: np.ndarray) -> np.ndarray:
        """The onset frame's landmarks (the flow inputs detect on nothing else)."""
        assert np.array_equal(image, self.onset), "a flow input looked for a face elsewhere"
        return self.found


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory):
    """Two frame-folder clips of the astronaut photo, onset, apex and offset frames: `moving`,
    whose apex (and offset) is the whole image moved by SHIFT, and `static`; the landmarker;
    the manifest."""
    image = cv2.cvtColor(cv2.imread(str(ASSETS / "astronaut.png")), cv2.COLOR_BGR2RGB)
    onset = np.ascontiguousarray(image[CROP])
    moved = _translated(onset, SHIFT)
    root = tmp_path_factory.mktemp("astronaut")
    for label, frames in (("moving", [onset, moved, moved]), ("static", [onset] * 3)):
        folder = root / label / label
        folder.mkdir(parents=True)
        for number, frame in enumerate(frames, start=1):
            cv2.imwrite(str(folder / f"img{number}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    rows = [[1, name, 1, 2, 3, "", ""] for name in ("moving", "static")]  # onset, apex, offset
    write_sheet(root / "coding.xlsx", rows)
    landmarker = OnsetLandmarks(onset)
    assert landmarker.found is not None  # dlib finds the face
    data = DataConfig(classes=["moving", "static"])
    manifest = build_manifest(data, root, root / "coding.xlsx", "astronaut").samples
    with pytest.MonkeyPatch.context() as patch:
        for module in (flow_input, flow_sequence_input):
            patch.setattr(module, "shared_landmarker", lambda: landmarker)
        yield onset, landmarker.found, manifest


def _data(tmp_path, **flow) -> DataConfig:
    """A flow-only data config at the module's tiny sizes, its cache under tmp_path."""
    settings = {"face_size": FACE_SIZE, "size": SIZE, **flow}
    return DataConfig(
        classes=["moving", "static"],
        inputs=["flow"],
        cache_dir=str(tmp_path / "cache"),
        flow=FlowConfig(**settings),
    )


def _clip(manifest, name: str):
    return manifest[manifest["sample"] == name]


def _entries(tmp_path) -> int:
    """How many cache entries (one .npy per sample, input and settings) exist."""
    return len(list((tmp_path / "cache").rglob("*.npy")))


def test_changing_the_algorithm_remakes_the_flow(astronaut, tmp_path):
    _, _, manifest = astronaut
    moving = _clip(manifest, "moving")
    tvl1 = preprocess(_data(tmp_path), moving)
    again = preprocess(_data(tmp_path), moving)
    assert (tvl1.hits, again.hits) == (0, 1)  # the cache is used...
    farneback = preprocess(_data(tmp_path, algorithm="farneback"), moving)
    assert farneback.hits == 0 and _entries(tmp_path) == 2  # ...and the algorithm is in the key
    assert farneback.keys != tvl1.keys
    assert np.abs(np.asarray(farneback.streams[0][0], np.float32) - tvl1.streams[0][0]).max() > 0.01


CHANGES = {
    "algorithm": "tvl1",
    "apex": "max_difference",
    "face_size": FACE_SIZE - 8,
    "margin": 0.2,
    "size": SIZE // 2,
    "channels": ["u", "v", "strain"],
    "scaling": "none",
}
GRID_ONLY = {"grid": 4}  # flow_grid's, not the flow images'


def test_every_flow_setting_is_changed_below():
    assert set(CHANGES) | set(GRID_ONLY) == {field.name for field in dataclasses.fields(FlowConfig)}


@pytest.mark.parametrize(("setting", "value"), CHANGES.items())
def test_every_flow_setting_is_in_the_cache_key(astronaut, tmp_path, setting, value):
    _, _, manifest = astronaut
    moving = _clip(manifest, "moving")
    base = _data(tmp_path, algorithm="farneback")  # the fast one: only the keys matter here
    assert getattr(base.flow, setting) != value
    preprocess(base, moving)
    changed = dataclasses.replace(base, flow=dataclasses.replace(base.flow, **{setting: value}))
    assert preprocess(changed, moving).hits == 0 and _entries(tmp_path) == 2


@pytest.mark.parametrize(("setting", "value"), [("frames", 4), ("size", 16), ("grayscale", True)])
def test_frame_settings_do_not_remake_the_flow(astronaut, tmp_path, setting, value):
    _, _, manifest = astronaut
    moving = _clip(manifest, "moving")
    base = _data(tmp_path, algorithm="farneback")
    made = preprocess(base, moving)
    assert getattr(base, setting) != value
    found = preprocess(dataclasses.replace(base, **{setting: value}), moving)
    assert found.hits == 1 and _entries(tmp_path) == 1
    np.testing.assert_array_equal(found.streams[0][0], made.streams[0][0])


def test_a_translated_face_gives_its_shift_in_face_pixels(astronaut, tmp_path):
    onset, landmarks, manifest = astronaut
    data = _data(tmp_path, scaling="none")
    prepared = preprocess(data, _clip(manifest, "moving"))
    (flow,) = prepared.streams[0]
    assert flow.dtype == np.float16 and flow.shape == input_specs(data)[0].shape == (SIZE, SIZE, 3)
    # The photo moved by SHIFT pixels; the flow is in pixels of the FACE_SIZE face, which the
    # alignment scaled (by about 0.55) and turned (her 3.5° tilt levelled).
    aligned = aligned_face(onset[None], landmarks, FACE_SIZE)
    expected = aligned.matrix[:, :2] @ SHIFT
    assert 0.4 < np.hypot(*expected) < 0.8 * np.hypot(*SHIFT)
    box = aligned.landmarks * SIZE / FACE_SIZE  # the face: its landmarks' box in the input
    (left, top), (right, bottom) = box.min(axis=0).astype(int), box.max(axis=0).astype(int)
    face = np.asarray(flow[top:bottom, left:right], np.float32)
    np.testing.assert_allclose(face[..., :2].reshape(-1, 2).mean(axis=0), expected, atol=0.1)
    np.testing.assert_allclose(face[..., 2].mean(), np.hypot(*expected), atol=0.15)


def test_a_static_clip_gives_zero_magnitude(astronaut, tmp_path):
    _, _, manifest = astronaut
    data = _data(tmp_path, scaling="none")
    (flow,) = preprocess(data, _clip(manifest, "static")).streams[0]
    assert flow.dtype == np.float16 and flow.shape == (SIZE, SIZE, 3)
    assert np.abs(np.asarray(flow, np.float32)).max() < 1e-3


def test_the_puzzle_flow_has_its_spec_and_is_not_the_face_flow(astronaut, tmp_path):
    _, _, manifest = astronaut
    data = dataclasses.replace(_data(tmp_path), inputs=["flow", "flow_puzzle"])
    prepared = preprocess(data, _clip(manifest, "moving"))
    specs = input_specs(data)
    assert [spec.name for spec in specs] == ["flow", "flow_puzzle"]
    (face,), (puzzle,) = prepared.streams
    for array, spec in ((face, specs[0]), (puzzle, specs[1])):
        assert array.dtype == np.float16 and spec.dtype == "float16"
        assert array.shape == spec.shape == (SIZE, SIZE, 3)
        assert (array.min(), array.max()) == (-1, 1)  # min_max scaling
    assert np.abs(np.asarray(puzzle, np.float32) - face).mean() > 0.1


def test_the_grid_features_are_the_grid_means_of_the_face_flow(astronaut, tmp_path):
    """flow_grid: (grid, grid, 2) float32, the grid means of the aligned face's onset -> apex
    flow with its median removed: the whole photo's translation, the same at every pixel of
    the face, is gone."""
    onset, landmarks, manifest = astronaut
    data = dataclasses.replace(_data(tmp_path), inputs=["flow_grid"])
    (features,) = preprocess(data, _clip(manifest, "moving")).streams[0]
    assert features.dtype == np.float32 and features.shape == input_specs(data)[0].shape == (
        8, 8, 2
    )
    aligned = aligned_face(np.stack([onset, _translated(onset, SHIFT)]), landmarks, FACE_SIZE)
    flow = optical_flow(aligned.frames[0], aligned.frames[1], data.flow.algorithm)
    np.testing.assert_allclose(features, grid_means(flow, 8), atol=1e-6)
    assert np.abs(flow.mean(axis=(0, 1))).max() > 0.3 and np.abs(features).mean() < 0.1


def test_the_grid_is_in_the_grid_features_key_only(astronaut, tmp_path):
    _, _, manifest = astronaut
    moving = _clip(manifest, "moving")
    images = _data(tmp_path, algorithm="farneback")
    grid = dataclasses.replace(images, inputs=["flow_grid"])
    preprocess(images, moving), preprocess(grid, moving)
    coarser = dataclasses.replace(images.flow, **GRID_ONLY)
    assert preprocess(dataclasses.replace(images, flow=coarser), moving).hits == 1
    assert preprocess(dataclasses.replace(grid, flow=coarser), moving).hits == 0
    for setting, value in (("size", SIZE // 2), ("channels", ["u"]), ("scaling", "none")):
        changed = dataclasses.replace(grid.flow, **{setting: value})  # the images' settings
        assert preprocess(dataclasses.replace(grid, flow=changed), moving).hits == 1, setting


def test_the_flow_sequence_measures_each_step_on_one_crop(astronaut, tmp_path):
    """flow_sequence over the moving clip's 3 frames (onset, moved, moved): the first step is
    the shift in face pixels, the second none; the crop is the first frame's for both."""
    onset, landmarks, manifest = astronaut
    data = dataclasses.replace(
        _data(tmp_path, scaling="none"), inputs=["flow_sequence"], frames=3, sampler="first"
    )
    (steps,) = preprocess(data, _clip(manifest, "moving")).streams[0]
    assert steps.dtype == np.float16 and steps.shape == input_specs(data)[0].shape == (
        2, SIZE, SIZE, 3
    )
    aligned = aligned_face(onset[None], landmarks, FACE_SIZE)
    expected = aligned.matrix[:, :2] @ SHIFT
    box = aligned.landmarks * SIZE / FACE_SIZE
    (left, top), (right, bottom) = box.min(axis=0).astype(int), box.max(axis=0).astype(int)
    face = np.asarray(steps[:, top:bottom, left:right, :2], np.float32).mean(axis=(1, 2))
    np.testing.assert_allclose(face[0], expected, atol=0.1)
    assert np.abs(np.asarray(steps[1], np.float32)).max() < 1e-3
    fewer = preprocess(dataclasses.replace(data, frames=2), _clip(manifest, "moving"))
    assert fewer.hits == 0 and fewer.streams[0][0].shape == (1, SIZE, SIZE, 3)


def test_a_flow_sequence_of_one_frame_is_refused():
    with pytest.raises(ConfigError, match="flow_sequence needs data.frames >= 2"):
        load_config(None, ["data.inputs=[flow_sequence]", "data.frames=1"])

"""The FMER inputs as preprocessing makes them (`fmer_patches`, `au_frames`): shapes, dtypes,
specs, which settings key which cache entry, the order of the magnification factors, and the
frames they start from, on the astronaut photo moving half a pixel per frame."""

import dataclasses

import cv2
import numpy as np
import pytest

import mer.data.inputs.fmer_patches as fmer_patches_input
from mer.config import ConfigError, DataConfig, FlowConfig, FMERDataConfig, load_config
from mer.data.faces import shared_landmarker
from mer.data.flow import aligned_face
from mer.data.inputs import input_specs
from mer.data.manifest import build_manifest
from mer.data.sources import preprocess
from tests.data.replicas import write_sheet
from tests.data.test_flow import ASSETS, _translated

FACE_SIZE = 48  # the face the patches' flow is computed on
AU_SIZE = 24
FRAMES = 7  # img1..img7: onset 1, apex 4, offset 7
STEP = (0.5, 0.0)  # (x, y) pixels per frame
CROP = (slice(0, 256), slice(96, 352))  # rows, columns of the photo around the face


class OnsetLandmarks:
    """Stands in for the FMER inputs' landmarker: dlib ran once, on the onset frame every clip
    of this module starts on."""

    def __init__(self, onset: np.ndarray):
        self.onset = onset
        self.found = shared_landmarker().landmarks(onset)

    def landmarks(self, image: np.ndarray) -> np.ndarray:
        """The onset frame's landmarks (the FMER inputs detect on nothing else)."""
        assert np.array_equal(image, self.onset), "an FMER input looked for a face elsewhere"
        return self.found


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory):
    """Frame-folder clips of the astronaut photo: `moving` (onset, apex, offset 1, 4, 7),
    `no_apex` (the same frames, no apex in the sheet), `apex_at_offset` (apex 7) and `static`;
    the onset frame, its landmarks, the manifest."""
    image = cv2.cvtColor(cv2.imread(str(ASSETS / "astronaut.png")), cv2.COLOR_BGR2RGB)
    onset = np.ascontiguousarray(image[CROP])
    moving = [_translated(onset, (STEP[0] * frame, STEP[1] * frame)) for frame in range(FRAMES)]
    moving[0] = onset
    root = tmp_path_factory.mktemp("astronaut")
    clips = {
        ("moving", "moving"): (moving, 4),
        ("moving", "no_apex"): (moving, ""),
        ("moving", "apex_at_offset"): (moving, FRAMES),
        ("static", "static"): ([onset] * FRAMES, 4),
    }
    rows = []
    for (label, name), (frames, apex) in clips.items():
        folder = root / label / name
        folder.mkdir(parents=True)
        for number, frame in enumerate(frames, start=1):
            cv2.imwrite(str(folder / f"img{number}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        rows.append([1, name, 1, apex, FRAMES, "", ""])
    write_sheet(root / "coding.xlsx", rows)
    landmarker = OnsetLandmarks(onset)
    assert landmarker.found is not None
    data = DataConfig(classes=["moving", "static"])
    manifest = build_manifest(data, root, root / "coding.xlsx", "astronaut").samples
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fmer_patches_input, "shared_landmarker", lambda: landmarker)
        yield onset, moving, landmarker.found, manifest


def _data(tmp_path, inputs=("fmer_patches", "au_frames"), flow=None, **fmer) -> DataConfig:
    """Both FMER inputs at tiny sizes (Farneback unless `flow` says), the cache under tmp_path."""
    settings = {"alphas": [2.0, 3.0], "au_size": AU_SIZE, **fmer}
    return DataConfig(
        classes=["moving", "static"],
        inputs=list(inputs),
        cache_dir=str(tmp_path / "cache"),
        flow=FlowConfig(**{"face_size": FACE_SIZE, "algorithm": "farneback", **(flow or {})}),
        fmer=FMERDataConfig(**settings),
    )


def _clip(manifest, name: str):
    return manifest[manifest["sample"] == name]


def _entries(tmp_path) -> int:
    return len(list((tmp_path / "cache").rglob("*.npy")))


@pytest.mark.slow
def test_both_inputs_have_their_shapes_dtypes_and_specs(astronaut, tmp_path):
    _, _, _, manifest = astronaut
    data = _data(tmp_path, flow={"algorithm": "tvl1"})
    (patches,), (frames,) = preprocess(data, _clip(manifest, "moving")).streams
    patch_spec, frame_spec = input_specs(data)
    assert patches.dtype == np.float16 and patches.shape == patch_spec.shape == (
        2, 9, 2, 30, 7, 7
    )
    assert (patch_spec.dtype, patch_spec.normalization) == ("float16", "none")
    assert frames.dtype == np.uint8 and frames.shape == frame_spec.shape == (16, 24, 24, 3)
    assert (frame_spec.dtype, frame_spec.normalization) == ("uint8", "scale")  # to [0, 1]
    # The face moves about 0.2 px per frame at this size, 0.09 per rising step; at 48 px the
    # magnification's middle gains are negative (see test_magnification), yet motion remains.
    assert 0.02 < np.abs(np.asarray(patches[0, :, 0], np.float32)).mean() < 1


def test_a_static_clip_gives_zero_patches(astronaut, tmp_path):
    _, _, _, manifest = astronaut
    data = _data(tmp_path, flow={"algorithm": "tvl1"})  # Farneback moves even on equal frames
    (patches,), (frames,) = preprocess(data, _clip(manifest, "static")).streams
    assert np.abs(np.asarray(patches, np.float32)).max() < 1e-3
    assert (frames == frames[0]).all()


def test_the_test_alpha_comes_first_and_each_factor_is_its_own_run(astronaut, tmp_path):
    _, _, _, manifest = astronaut
    moving = _clip(manifest, "moving")
    inputs = ["fmer_patches"]
    (both,) = preprocess(_data(tmp_path, inputs, alphas=[3.0, 2.0]), moving).streams[0]
    (test,) = preprocess(_data(tmp_path, inputs, alphas=[2.0]), moving).streams[0]
    (other,) = preprocess(_data(tmp_path, inputs, alphas=[3.0], test_alpha=3.0), moving).streams[0]
    np.testing.assert_array_equal(both, np.concatenate([test, other]))
    assert np.abs(np.asarray(both[1], np.float32) - both[0]).max() > 0.01


PATCH_CHANGES = {
    "alphas": [1.2, 2.0, 3.0],
    "test_alpha": 3.0,
    "published_frame_order": True,
}
FRAME_CHANGES = {"au_size": AU_SIZE + 8, "au_colour": "bgr_raw"}
BOTH_CHANGES = {"interpolation": "cross_fade"}


def test_every_fmer_setting_is_changed_below():
    changed = set(PATCH_CHANGES) | set(FRAME_CHANGES) | set(BOTH_CHANGES)
    assert changed == {field.name for field in dataclasses.fields(FMERDataConfig)}


@pytest.mark.parametrize(
    ("setting", "value", "remade"),
    [
        *((setting, value, 1) for setting, value in PATCH_CHANGES.items()),
        *((setting, value, 1) for setting, value in FRAME_CHANGES.items()),
        *((setting, value, 2) for setting, value in BOTH_CHANGES.items()),
    ],
)
def test_each_fmer_setting_keys_the_inputs_it_changes(astronaut, tmp_path, setting, value, remade):
    _, _, _, manifest = astronaut
    moving = _clip(manifest, "moving")
    base = _data(tmp_path)
    assert getattr(base.fmer, setting) != value
    preprocess(base, moving)
    changed = dataclasses.replace(base, fmer=dataclasses.replace(base.fmer, **{setting: value}))
    assert preprocess(changed, moving).hits == 0 and _entries(tmp_path) == 2 + remade


@pytest.mark.parametrize(
    ("setting", "value", "remade"), [("face_size", FACE_SIZE + 8, 1), ("margin", 0.2, 2)]
)
def test_the_flow_settings_they_use_key_them(astronaut, tmp_path, setting, value, remade):
    _, _, _, manifest = astronaut
    moving = _clip(manifest, "moving")
    base = _data(tmp_path)
    preprocess(base, moving)
    changed = dataclasses.replace(base, flow=dataclasses.replace(base.flow, **{setting: value}))
    assert preprocess(changed, moving).hits == 0 and _entries(tmp_path) == 2 + remade
    untouched = dataclasses.replace(base, flow=dataclasses.replace(base.flow, size=14, grid=4))
    assert preprocess(untouched, moving).hits == 1  # the flow images' settings do not apply


def test_the_au_frames_run_from_the_aligned_onset_to_the_offset(astronaut, tmp_path):
    onset, moving, landmarks, manifest = astronaut
    clip = _clip(manifest, "moving")
    (frames,) = preprocess(_data(tmp_path, ["au_frames"]), clip).streams[0]
    aligned = aligned_face(np.stack([moving[0], moving[-1]]), landmarks, AU_SIZE)
    np.testing.assert_array_equal(frames[0], aligned.frames[0])
    np.testing.assert_array_equal(frames[-1], aligned.frames[1])
    raw = _data(tmp_path, ["au_frames"], au_colour="bgr_raw")
    (bgr,) = preprocess(raw, clip).streams[0]
    np.testing.assert_array_equal(bgr, frames[..., ::-1])
    assert input_specs(raw)[0].normalization == "none"  # 0-255, as published


def test_a_clip_without_apex_takes_the_apex_at_the_offset(astronaut, tmp_path):
    _, _, _, manifest = astronaut
    data = _data(tmp_path, ["fmer_patches"])
    (missing,) = preprocess(data, _clip(manifest, "no_apex")).streams[0]
    (at_offset,) = preprocess(data, _clip(manifest, "apex_at_offset")).streams[0]
    (annotated,) = preprocess(data, _clip(manifest, "moving")).streams[0]
    np.testing.assert_array_equal(missing, at_offset)
    assert np.abs(np.asarray(missing, np.float32) - annotated).max() > 0.01


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.fmer.test_alpha=2.5", "test_alpha 2.5 is not one of"),
        ("data.fmer.alphas=[2.0, 2.0]", "distinct and positive"),
        ("data.fmer.au_size=4", "au_size must be at least 8"),
    ],
)
def test_bad_fmer_settings_are_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])

"""dlib face detection and 68-point landmarks, on a real face (the NASA astronaut portrait)."""

import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import dlib
import numpy as np
import pytest

from mer.data import faces
from mer.data.faces import FaceLandmarker, predictor_path, shared_landmarker
from mer.data.sheets import DataError

ASSETS = Path(faces.__file__).resolve().parent / "assets"


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    """The 512×512 RGB astronaut portrait."""
    return cv2.cvtColor(cv2.imread(str(ASSETS / "astronaut.png")), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def stored() -> dict:
    """The astronaut's stored dlib face box and landmarks."""
    return json.loads((ASSETS / "astronaut_landmarks.json").read_text())


def test_predictor_file_is_found_without_importing_the_package(monkeypatch):
    monkeypatch.delitem(sys.modules, "face_recognition_models", raising=False)
    path = predictor_path()
    assert path.name == "shape_predictor_68_face_landmarks.dat"
    assert path.parent.name == "models"
    assert path.parent.parent.name == "face_recognition_models"
    assert path.stat().st_size > 50_000_000
    assert "face_recognition_models" not in sys.modules


def _find_spec_replacing(monkeypatch, replacement):
    """Makes `find_spec("face_recognition_models")` return `replacement`."""
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        if name == "face_recognition_models":
            return replacement
        return real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_missing_package_says_how_to_install(monkeypatch):
    _find_spec_replacing(monkeypatch, None)
    with pytest.raises(DataError, match="pip install face_recognition_models"):
        predictor_path()


def test_missing_model_file_names_the_folder(monkeypatch, tmp_path):
    _find_spec_replacing(monkeypatch, SimpleNamespace(submodule_search_locations=[str(tmp_path)]))
    with pytest.raises(DataError, match="pip install") as raised:
        predictor_path()
    assert str(tmp_path / "models") in str(raised.value)


def test_models_load_lazily(monkeypatch, astronaut):
    def missing() -> Path:
        raise DataError("no model (pip install face_recognition_models)")

    monkeypatch.setattr(faces, "predictor_path", missing)
    landmarker = FaceLandmarker()
    with pytest.raises(DataError, match="no model"):
        landmarker.detect(astronaut)


def test_shared_landmarker_is_one_instance():
    assert isinstance(shared_landmarker(), FaceLandmarker)
    assert shared_landmarker() is shared_landmarker()


def test_detects_the_astronaut(astronaut, stored):
    face = shared_landmarker().detect(astronaut)
    assert face is not None
    assert all(isinstance(value, int) for value in face)
    np.testing.assert_allclose(face, stored["face_box"], atol=8)


def test_landmarks_match_the_stored_ones(astronaut, stored):
    landmarks = shared_landmarker().landmarks(astronaut)
    assert landmarks.shape == (68, 2)
    assert landmarks.dtype == np.float32
    np.testing.assert_allclose(landmarks, stored["landmarks"], atol=2)


def test_landmarks_inside_a_given_face_rectangle(astronaut, stored):
    landmarks = shared_landmarker().landmarks(astronaut, tuple(stored["face_box"]))
    np.testing.assert_allclose(landmarks, stored["landmarks"], atol=1)


def test_small_image_is_upsampled_so_its_face_is_found(astronaut, stored):
    # A 300×300 window around the face shrunk to 128×128: the face is ~40 px, below what dlib's
    # detector finds without upsampling.
    scale = 300 / 128
    small = cv2.resize(astronaut[0:300, 70:370], (128, 128), interpolation=cv2.INTER_AREA)
    assert len(dlib.get_frontal_face_detector()(small, 0)) == 0
    landmarker = shared_landmarker()
    assert landmarker.detect(small) is not None
    landmarks = landmarker.landmarks(small)
    np.testing.assert_allclose(landmarks * scale + [70, 0], stored["landmarks"], atol=6)


def test_the_largest_face_is_taken(astronaut):
    # The face at full size (~90 px) and, to its right, at half size (~45 px).
    window = astronaut[26:216, 125:315]
    canvas = np.zeros((190, 330, 3), dtype=np.uint8)
    canvas[:, :190] = window
    canvas[40:135, 210:305] = cv2.resize(window, (95, 95), interpolation=cv2.INTER_AREA)
    assert len(dlib.get_frontal_face_detector()(canvas, 1)) == 2
    x0, y0, x1, y1 = shared_landmarker().detect(canvas)
    assert x1 < 190 and x1 - x0 > 70
    landmarks = shared_landmarker().landmarks(canvas)
    assert landmarks[:, 0].max() < 190


@pytest.mark.parametrize("channels", [None, 1])
def test_grey_images(astronaut, stored, channels):
    grey = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)
    if channels is not None:
        grey = grey[:, :, None]
    landmarks = shared_landmarker().landmarks(grey)
    assert landmarks is not None
    np.testing.assert_allclose(landmarks, stored["landmarks"], atol=3)


def test_no_face_gives_none():
    blank = np.full((128, 128, 3), 127, dtype=np.uint8)
    landmarker = shared_landmarker()
    assert landmarker.detect(blank) is None
    assert landmarker.landmarks(blank) is None


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((64, 64, 3), dtype=np.float32), "float32"),
        (np.zeros((64, 64, 4), dtype=np.uint8), r"\(64, 64, 4\)"),
        (np.zeros((2, 64, 64, 3), dtype=np.uint8), r"\(2, 64, 64, 3\)"),
    ],
)
def test_bad_images_are_rejected(image, message):
    with pytest.raises(ValueError, match=message):
        shared_landmarker().detect(image)

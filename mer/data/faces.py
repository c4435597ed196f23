"""Face detection and dlib's 68-point landmarks, for cropping the regions that AUs point at.

The shape predictor is the `shape_predictor_68_face_landmarks.dat` file shipped in the PyPI package
`face_recognition_models`; the detector is dlib's HOG frontal-face detector. Both load lazily, once
per process through `shared_landmarker`, because the predictor alone is ~100 MB.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import dlib
import numpy as np

from mer.data.sheets import DataError

PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
LANDMARK_COUNT = 68
UPSAMPLE_BELOW = 200
"""Images whose shorter side is below this many pixels are upsampled once before detection.

dlib's HOG detector misses faces smaller than ~80 px; one upsampling halves that, so faces in
128×128 frames are found.
"""

Box = tuple[int, int, int, int]


def predictor_path() -> Path:
    """The 68-landmark model file of the `face_recognition_models` package.

    The package is located without being imported: its `__init__` imports `pkg_resources`,
    which setuptools ≥ 81 no longer ships.

    Raises:
        DataError: the package or its model file is missing.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"the dlib landmark model {PREDICTOR_FILE} comes from the package"
            " face_recognition_models, which is not installed: pip install face_recognition_models"
        )
    folders = [Path(location) / "models" for location in spec.submodule_search_locations]
    for folder in folders:
        if (folder / PREDICTOR_FILE).is_file():
            return folder / PREDICTOR_FILE
    raise DataError(
        f"{PREDICTOR_FILE} not found in {', '.join(map(str, folders))}; reinstall it:"
        " pip install --force-reinstall face_recognition_models"
    )


def dlib_image(image: np.ndarray, what: str = "face") -> np.ndarray:
    """An image as dlib (and the flow) takes it: contiguous uint8, (H, W, 3) RGB or (H, W) grey.

    Raises:
        ValueError: not uint8, or not (H, W), (H, W, 1) or (H, W, 3); `what` names the images.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"{what} images must be uint8, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ValueError(f"{what} images must be (H, W), (H, W, 1) or (H, W, 3), got {image.shape}")
    return np.ascontiguousarray(image)


class FaceLandmarker:
    """dlib's frontal-face detector and 68-point shape predictor, loaded on first use."""

    def __init__(self) -> None:
        """Creates the landmarker without loading anything, so building one costs nothing."""
        self._detector: dlib.fhog_object_detector | None = None
        self._predictor: dlib.shape_predictor | None = None

    def _models(self) -> tuple[dlib.fhog_object_detector, dlib.shape_predictor]:
        """The detector and predictor, loading them the first time."""
        if self._detector is None or self._predictor is None:
            predictor = dlib.shape_predictor(str(predictor_path()))
            self._detector = dlib.get_frontal_face_detector()
            self._predictor = predictor
        return self._detector, self._predictor

    def detect(self, image_rgb: np.ndarray) -> Box | None:
        """The largest face of an image.

        Args:
            image_rgb: uint8 (H, W, 3) RGB, or grey (H, W) / (H, W, 1).

        Returns:
            (x0, y0, x1, y1) as dlib reports it (x1/y1 inclusive; may reach past the image
            border), or None when no face is found.
        """
        image = dlib_image(image_rgb)
        detector, _ = self._models()
        upsample = 1 if min(image.shape[:2]) < UPSAMPLE_BELOW else 0
        rectangles = detector(image, upsample)
        if len(rectangles) == 0:
            return None
        largest = max(rectangles, key=lambda rectangle: rectangle.area())
        return (largest.left(), largest.top(), largest.right(), largest.bottom())

    def landmarks(self, image_rgb: np.ndarray, face: Box | None = None) -> np.ndarray | None:
        """The 68 dlib landmarks of a face.

        Args:
            image_rgb: uint8 (H, W, 3) RGB, or grey (H, W) / (H, W, 1).
            face: the face rectangle (as from `detect`); None detects the largest face.

        Returns:
            (68, 2) float32 (x, y) pixel coordinates, or None when no face is found.
        """
        image = dlib_image(image_rgb)
        if face is None:
            face = self.detect(image)
            if face is None:
                return None
        _, predictor = self._models()
        shape = predictor(image, dlib.rectangle(*(int(value) for value in face)))
        return np.array(
            [(shape.part(index).x, shape.part(index).y) for index in range(LANDMARK_COUNT)],
            dtype=np.float32,
        )


@functools.cache
def shared_landmarker() -> FaceLandmarker:
    """The process-wide landmarker, so the models load once however many clips are cropped."""
    return FaceLandmarker()

"""Dense optical flow between a clip's frames, the channels derived from it, and the aligned face
it is computed on.

Flow runs from `first` to `second`: channel 0 is u (+x, along the columns), channel 1 is v (+y,
down the rows), so that `second(y + v, x + u)` ≈ `first(y, x)`. TV-L1
(`cv2.optflow.DualTVL1OpticalFlow_create`, opencv-contrib) is the default, Farneback the option;
both read grey images.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from mer.data.faces import dlib_image
from mer.data.regions import MINIMUM_SIZE, _check_frames

FLOW_CHANNELS = ("u", "v", "magnitude", "strain")
APEX_FALLBACKS = ("middle", "max_difference")
SCALE_STEPS = frozenset({"scale_step", "pyramid_scale"})  # settings that must lie in (0, 1)
STORAGE_DTYPE = np.float16
"""The dtype flow is cached in: 0.001 px steps at 1 px, 0.03 px at 64 px (see `stored_flow`)."""

LEFT_EYE = tuple(range(36, 42))  # dlib-68: the eye on the image's left (the subject's right)
RIGHT_EYE = tuple(range(42, 48))  # the eye on the image's right (the subject's left)
LANDMARK_COUNT = 68


def _check_parameters(parameters: TVL1Parameters | FarnebackParameters) -> None:
    """Every setting of a parameter dataclass positive, counts as ints, scale steps below 1.

    Raises:
        ValueError: naming the setting and quoting its value.
    """
    for field in dataclasses.fields(parameters):
        value = getattr(parameters, field.name)
        if field.type == "bool":
            if not isinstance(value, bool):
                raise ValueError(f"{field.name} must be true or false, got {value!r}")
            continue
        kinds = int if field.type == "int" else int | float
        if isinstance(value, bool) or not isinstance(value, kinds) or not value > 0:
            raise ValueError(f"{field.name} must be a positive {field.type}, got {value!r}")
        if field.name in SCALE_STEPS and not value < 1:
            raise ValueError(f"{field.name} must be below 1, got {value!r}")


@dataclass(frozen=True)
class TVL1Parameters:
    """TV-L1 settings, OpenCV's defaults (`cv2.optflow.DualTVL1OpticalFlow_create`).

    OpenCV's `gamma` (illumination term) stays 0 and `useInitialFlow` off.
    """

    tau: float = 0.25  # time step of the solver (stable up to 0.25)
    data_weight: float = 0.15  # OpenCV's lambda: weight of the data term; smaller is smoother
    theta: float = 0.3  # coupling between the data and the smoothness terms
    scales: int = 5  # pyramid levels
    scale_step: float = 0.8  # each level this fraction of the one below it
    warps: int = 5  # warpings per level
    epsilon: float = 0.01  # stopping threshold of the inner iterations
    inner_iterations: int = 30
    outer_iterations: int = 10
    median_filtering: int = 5  # median filter on the flow between warpings (1: none)

    def __post_init__(self) -> None:
        """Checks every setting (see `_check_parameters`)."""
        _check_parameters(self)

    def calculate(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """Flow between two float32 grey images of values 0–255: (H, W, 2) float32."""
        solver = cv2.optflow.DualTVL1OpticalFlow_create(
            tau=self.tau,
            lambda_=self.data_weight,
            theta=self.theta,
            nscales=self.scales,
            warps=self.warps,
            epsilon=self.epsilon,
            innnerIterations=self.inner_iterations,
            outerIterations=self.outer_iterations,
            scaleStep=self.scale_step,
            medianFiltering=self.median_filtering,
        )
        # OpenCV scales float input by 255 (it takes 8-bit input as 0-255, float as 0-1).
        return solver.calc(first / 255.0, second / 255.0, None)


@dataclass(frozen=True)
class FarnebackParameters:
    """Farneback settings, OpenCV's defaults (those of `cv2.FarnebackOpticalFlow_create`)."""

    levels: int = 5  # pyramid levels, the image itself included
    pyramid_scale: float = 0.5  # each level this fraction of the one below it
    window_size: int = 13  # averaging window
    iterations: int = 10  # per level
    polynomial_size: int = 5  # neighbourhood of the polynomial expansion (5 or 7)
    polynomial_sigma: float = 1.1  # its Gaussian's sigma (1.1 for 5, 1.5 for 7)
    gaussian_window: bool = False  # a Gaussian averaging window instead of a box

    def __post_init__(self) -> None:
        """Checks every setting (see `_check_parameters`)."""
        _check_parameters(self)

    def calculate(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """Flow between two float32 grey images of values 0–255: (H, W, 2) float32."""
        return cv2.calcOpticalFlowFarneback(
            first,
            second,
            None,
            self.pyramid_scale,
            self.levels,
            self.window_size,
            self.iterations,
            self.polynomial_size,
            self.polynomial_sigma,
            cv2.OPTFLOW_FARNEBACK_GAUSSIAN if self.gaussian_window else 0,
        )


PARAMETERS = {"tvl1": TVL1Parameters, "farneback": FarnebackParameters}
ALGORITHMS = tuple(PARAMETERS)


def flow_parameters(
    algorithm: str = "tvl1", **parameters: float | bool
) -> TVL1Parameters | FarnebackParameters:
    """An algorithm's settings, defaults filled in (`dataclasses.asdict` of it suits a cache key).

    Args:
        algorithm: "tvl1" or "farneback".
        **parameters: fields of `TVL1Parameters` or `FarnebackParameters`.

    Raises:
        ValueError: an unknown algorithm, a setting the algorithm does not have, or a bad value.
    """
    if algorithm not in PARAMETERS:
        raise ValueError(
            f"unknown optical flow algorithm {algorithm!r}; expected one of {list(ALGORITHMS)}"
        )
    kind = PARAMETERS[algorithm]
    known = [field.name for field in dataclasses.fields(kind)]
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        raise ValueError(f"{algorithm} has no setting(s) {unknown}; its settings are {known}")
    return kind(**parameters)


def _grey(image: np.ndarray) -> np.ndarray:
    """A uint8 RGB or grey image as float32 grey, values 0–255 (no rounding).

    Raises:
        ValueError: not uint8, or not (H, W), (H, W, 1) or (H, W, 3).
    """
    image = dlib_image(image, "flow").astype(np.float32)
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def optical_flow(
    first: np.ndarray,
    second: np.ndarray,
    algorithm: str = "tvl1",
    *,
    prefilter_size: int = 0,
    prefilter_sigma: float = 0.0,
    **parameters: float | bool,
) -> np.ndarray:
    """Dense optical flow from `first` to `second`, computed on grey.

    TV-L1 gives the same output for the same input, with 1 or 2 OpenCV threads alike (a test
    checks it); at 128×128 it takes about 0.3 s on a 2-core AVX2 machine, Farneback 15 ms.

    Args:
        first: uint8 (H, W, 3) RGB or (H, W) / (H, W, 1) grey, e.g. the onset frame.
        second: the same size, e.g. the apex frame.
        algorithm: "tvl1" (default) or "farneback".
        prefilter_size: side of a Gaussian kernel both images are blurred with first (odd);
            0 with `prefilter_sigma` 0 blurs nothing; 0 with a sigma derives it from the sigma.
        prefilter_sigma: that Gaussian's sigma; 0 derives it from the size. The FMER setting is
            size 5, sigma 5. The blur is done in float, so sub-grey-level detail survives.
        **parameters: the algorithm's settings (`TVL1Parameters`, `FarnebackParameters`).

    Returns:
        (H, W, 2) float32: channel 0 u (+x, columns), channel 1 v (+y, rows), so that
        second(y + v, x + u) ≈ first(y, x).

    Raises:
        ValueError: an unknown algorithm or setting, a bad prefilter, or images of other sizes.
    """
    settings = flow_parameters(algorithm, **parameters)
    if isinstance(prefilter_size, bool) or not isinstance(prefilter_size, int | np.integer):
        raise ValueError(f"prefilter_size must be an int, got {prefilter_size!r}")
    if prefilter_size < 0 or (prefilter_size > 0 and prefilter_size % 2 == 0):
        raise ValueError(f"prefilter_size must be 0 or odd and positive, got {prefilter_size}")
    if not prefilter_sigma >= 0:
        raise ValueError(f"prefilter_sigma must be >= 0, got {prefilter_sigma!r}")
    first_grey, second_grey = _grey(first), _grey(second)
    if first_grey.shape != second_grey.shape:
        raise ValueError(
            f"flow images must have the same size, got {first_grey.shape} and {second_grey.shape}"
        )
    if prefilter_size or prefilter_sigma:
        kernel = (int(prefilter_size), int(prefilter_size))
        first_grey = cv2.GaussianBlur(first_grey, kernel, prefilter_sigma)
        second_grey = cv2.GaussianBlur(second_grey, kernel, prefilter_sigma)
    return settings.calculate(first_grey, second_grey).astype(np.float32, copy=False)


def flow_sequence(
    frames: np.ndarray | Sequence[np.ndarray],
    algorithm: str = "tvl1",
    *,
    prefilter_size: int = 0,
    prefilter_sigma: float = 0.0,
    **parameters: float | bool,
) -> np.ndarray:
    """Flow between each pair of consecutive frames (the FMER issue's sequence input).

    Args:
        frames: N >= 2 uint8 frames of one size, RGB or grey.
        algorithm, prefilter_size, prefilter_sigma, **parameters: as for `optical_flow`.

    Returns:
        (N - 1, H, W, 2) float32; step i is the flow from frame i to frame i + 1.

    Raises:
        ValueError: fewer than 2 frames, or as `optical_flow` does.
    """
    if len(frames) < 2:
        raise ValueError(f"a flow sequence needs at least 2 frames, got {len(frames)}")
    return np.stack(
        [
            optical_flow(
                earlier,
                later,
                algorithm,
                prefilter_size=prefilter_size,
                prefilter_sigma=prefilter_sigma,
                **parameters,
            )
            for earlier, later in zip(frames[:-1], frames[1:], strict=True)
        ]
    )


def _check_flow(flow: np.ndarray) -> np.ndarray:
    """The flow as an (H, W, 2) float array.

    Raises:
        ValueError: quoting the bad shape.
    """
    flow = np.asarray(flow)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow must be (H, W, 2), got {flow.shape}")
    return flow.astype(np.float32, copy=False)


def optical_strain(flow: np.ndarray) -> np.ndarray:
    """The magnitude of the flow's strain tensor, per pixel.

    With εxx = ∂u/∂x, εyy = ∂v/∂y and εxy = ½(∂u/∂y + ∂v/∂x), the magnitude is
    sqrt(εxx² + εyy² + 2·εxy²) = sqrt(u_x² + v_y² + ½(u_y + v_x)²): the formula of STSTNet's and
    HTNet's `computeStrain`. They take forward differences (last row and column copied from the
    one before); here the derivatives are central differences (`np.gradient`: one-sided at the
    border), which keep the strain centred on its pixel. Both agree on linear fields.

    Args:
        flow: (H, W, 2), channels u, v; H, W >= 2.

    Returns:
        (H, W) float32, in pixels per pixel.

    Raises:
        ValueError: a flow that is not (H, W, 2) with H, W >= 2.
    """
    flow = _check_flow(flow)
    if min(flow.shape[:2]) < 2:
        raise ValueError(f"strain needs a flow of at least 2×2 pixels, got {flow.shape}")
    u_y, u_x = np.gradient(flow[:, :, 0])  # along rows (y), then columns (x)
    v_y, v_x = np.gradient(flow[:, :, 1])
    return np.sqrt(u_x**2 + v_y**2 + 0.5 * (u_y + v_x) ** 2).astype(np.float32)


def flow_channels(flow: np.ndarray, channels: Sequence[str]) -> np.ndarray:
    """Channels derived from a flow, stacked in the order asked.

    Args:
        flow: (H, W, 2), channels u, v.
        channels: names from `FLOW_CHANNELS`: "u", "v", "magnitude" (sqrt(u² + v²)), "strain"
            (`optical_strain`); e.g. ("u", "v", "magnitude") for Dual-ATME, ("u", "v", "strain")
            for STSTNet and HTNet.

    Returns:
        (H, W, len(channels)) float32.

    Raises:
        ValueError: no channels, an unknown or repeated one, or a bad flow shape.
    """
    channels = list(channels)
    unknown = [name for name in channels if name not in FLOW_CHANNELS]
    if not channels or unknown or len(set(channels)) != len(channels):
        raise ValueError(
            f"flow channels must be distinct names from {list(FLOW_CHANNELS)}, got {channels}"
        )
    flow = _check_flow(flow)
    makers = {
        "u": lambda: flow[:, :, 0],
        "v": lambda: flow[:, :, 1],
        "magnitude": lambda: np.hypot(flow[:, :, 0], flow[:, :, 1]),
        "strain": lambda: optical_strain(flow),
    }
    return np.stack([makers[name]() for name in channels], axis=-1).astype(np.float32)


def stored_flow(flow: np.ndarray) -> np.ndarray:
    """Flow (or its channels) as the cache stores it: `STORAGE_DTYPE`, float16.

    float16 keeps three significant digits (0.001 px steps at 1 px, 0.03 px at 64 px) and ranges
    to ±65504, at half the bytes of float32; a uint8 encoding would need a clip range chosen in
    advance and would step by 1/255 of it (0.016 px over ±2 px), coarse for micro-expressions.

    Raises:
        ValueError: a value that is not finite.
    """
    flow = np.asarray(flow)
    if not np.isfinite(flow).all():
        raise ValueError(f"flow has {int((~np.isfinite(flow)).sum())} non-finite values")
    return flow.astype(STORAGE_DTYPE)


def apex_position(
    frames: Sequence[np.ndarray] | np.ndarray,
    onset: int,
    offset: int,
    apex: int | None = None,
    *,
    fallback: str = "middle",
) -> int:
    """The position of the frame the onset → apex flow ends on.

    Args:
        frames: the clip's frames (uint8, one size); read only for "max_difference".
        onset, offset: 0-based positions of the onset and offset frames in `frames`.
        apex: the sheet's apex position; None when the sheet has none (SMIC).
        fallback: without an apex, "middle": (onset + offset) // 2, as the dataset YAMLs take
            it; or "max_difference": the frame of onset..offset whose mean absolute difference
            from the onset frame is largest (the earliest on ties).

    Returns:
        A 0-based position in onset..offset.

    Raises:
        ValueError: positions out of order or outside the clip, or an unknown fallback.
    """
    if fallback not in APEX_FALLBACKS:
        raise ValueError(f"unknown apex fallback {fallback!r}; expected one of {APEX_FALLBACKS}")
    if not 0 <= onset <= offset < len(frames):
        raise ValueError(
            f"need 0 <= onset <= offset < {len(frames)} frames, got onset {onset}, offset {offset}"
        )
    if apex is not None:
        if not onset <= apex <= offset:
            raise ValueError(f"apex {apex} outside onset..offset {onset}..{offset}")
        return int(apex)
    if fallback == "middle":
        return (onset + offset) // 2
    reference = np.asarray(frames[onset], dtype=np.int16)
    differences = [
        np.abs(np.asarray(frames[position], dtype=np.int16) - reference).mean()
        for position in range(onset, offset + 1)
    ]
    return onset + int(np.argmax(differences))


@dataclass
class AlignedClip:
    """A clip's face, cropped and aligned by one transform taken from its onset landmarks.

    Attributes:
        frames: (T, size, size, C) uint8.
        landmarks: (68, 2) float32, the onset landmarks in the aligned frames.
        matrix: (2, 3) float64, the similarity transform from clip to aligned pixels.
    """

    frames: np.ndarray
    landmarks: np.ndarray
    matrix: np.ndarray


def aligned_face(
    frames: np.ndarray, landmarks: np.ndarray, size: int, *, margin: float = 0.1
) -> AlignedClip:
    """Crops and aligns the face of every frame of a clip with one similarity transform.

    The transform is taken once, from the onset frame's landmarks, so the flow between any two
    frames shows the face's movement, not a change of crop. It rotates the eye centres (means
    of dlib-68 points 36–41 and 42–47) level, puts their midpoint on the centre column, and
    scales the landmarks' bounding box in that rotated frame (brows to chin, jaw to jaw) so that
    its longer side plus `margin` on each side fills the output; the box is centred vertically.
    Pixels outside the frame repeat the border (bilinear interpolation, no anti-aliasing:
    shrinking by more than 2× aliases fine texture).

    Args:
        frames: (T, H, W, C) uint8, C = 3 (RGB) or 1 (grey).
        landmarks: (68, 2) (x, y) dlib landmarks of the onset frame.
        size: side of the square output, >= 8.
        margin: fraction of the box's longer side added on each side.

    Returns:
        The aligned frames, the landmarks moved with them, and the transform.

    Raises:
        ValueError: a bad frame array, landmarks that are not (68, 2) or whose eyes coincide,
            a size below 8, or a negative margin.
    """
    frames = _check_frames(frames)
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.shape != (LANDMARK_COUNT, 2):
        raise ValueError(f"landmarks must be (68, 2), got {landmarks.shape}")
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < MINIMUM_SIZE:
        raise ValueError(f"aligned face size must be an int >= {MINIMUM_SIZE}, got {size!r}")
    if not margin >= 0:
        raise ValueError(f"margin must be >= 0, got {margin!r}")
    left_eye = landmarks[list(LEFT_EYE)].mean(axis=0)
    right_eye = landmarks[list(RIGHT_EYE)].mean(axis=0)
    across = right_eye - left_eye
    if np.hypot(*across) < 1e-6:
        raise ValueError(f"the eye centres coincide at {left_eye.tolist()}: landmarks unusable")
    angle = math.atan2(across[1], across[0])
    rotation = np.array(
        [[math.cos(angle), math.sin(angle)], [-math.sin(angle), math.cos(angle)]]
    )  # turns the eye line horizontal
    middle = (left_eye + right_eye) / 2
    rotated = (landmarks - middle) @ rotation.T  # eye midpoint at the origin
    low, high = rotated.min(axis=0), rotated.max(axis=0)
    scale = size / (float((high - low).max()) * (1 + 2 * margin))
    linear = scale * rotation
    # The eye midpoint to the centre column; the box's vertical centre to the centre row.
    target = np.array([size / 2, size / 2 - scale * (low[1] + high[1]) / 2])
    matrix = np.hstack([linear, (target - linear @ middle)[:, None]])
    aligned = np.stack(
        [
            cv2.warpAffine(
                frame,
                matrix,
                (int(size), int(size)),
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_REPLICATE,
            ).reshape(int(size), int(size), frames.shape[3])
            for frame in frames
        ]
    )
    moved = (landmarks @ linear.T + matrix[:, 2]).astype(np.float32)
    return AlignedClip(frames=aligned, landmarks=moved, matrix=matrix)

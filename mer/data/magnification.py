"""Eulerian video magnification (Wu et al., SIGGRAPH 2012) as FMER's MATLAB `my_butter.m`
runs it, in NumPy and OpenCV.

Each frame's luminance (Y of YIQ) is split into a Laplacian pyramid; every level is filtered in
time by the difference of two first-order Butterworth low-passes, multiplied by its level's
gain, and the collapsed result is added back to the frame. They call it with chromAttenuation
0, so I and Q are left as they are; as YIQ -> RGB maps a change of Y to the same change of R, G
and B, the output is each RGB channel plus the magnified change of Y, clipped to the value
range. The first frame is unchanged: both low-passes start on it.

The pyramid is OpenCV's (`pyrDown`/`pyrUp`: the binomial 5-tap kernel [1 4 6 4 1] / 16 and
reflect-101 borders, as matlabPyrTools' binom5 and reflect1), with matlabPyrTools' level count.
Their `ntsc2rgb` may rescale out-of-range pixels before their clipping; here each channel is
clipped.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

LUMINANCE = np.array([0.299, 0.587, 0.114])  # Y of YIQ from RGB (MATLAB's rgb2ntsc)
FILTER_TAPS = 5  # the pyramid kernel's length, which bounds the level count
LAMBDA_C = 48.0  # the cutoff wavelength (pixels) FMER passes
LOW_CUTOFF = 0.5  # Hz, the lower low-pass
HIGH_CUTOFF = 10.0  # Hz, the upper low-pass
SAMPLING_RATE = 30.0  # Hz
EXAGGERATION = 2.0  # their factor on the bound of the paper's Figure 6


def butterworth_lowpass(cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB's `butter(1, cutoff)`: a first-order digital Butterworth low-pass (bilinear
    transform with a pre-warped cutoff).

    Args:
        cutoff: the cutoff as a fraction of the Nyquist frequency, in (0, 1).

    Returns:
        The numerator (b0, b1) and denominator (1, a1) of y[t] = b0 x[t] + b1 x[t-1] - a1 y[t-1].

    Raises:
        ValueError: a cutoff outside (0, 1).
    """
    if not 0 < cutoff < 1:
        raise ValueError(f"cutoff must be in (0, 1) (a fraction of Nyquist), got {cutoff!r}")
    warped = math.tan(math.pi * cutoff / 2)
    numerator = np.array([warped, warped]) / (1 + warped)
    denominator = np.array([1.0, (warped - 1) / (warped + 1)])
    return numerator, denominator


def pyramid_levels(height: int, width: int) -> int:
    """matlabPyrTools' `buildLpyr(..., 'auto')` level count: one more than the halvings (of the
    floored size) while both sides are at least the kernel's 5 taps."""
    levels = 1
    while min(height, width) >= FILTER_TAPS:
        levels += 1
        height, width = height // 2, width // 2
    return levels


def level_gains(height: int, width: int, alpha: float, lambda_c: float = LAMBDA_C) -> np.ndarray:
    """The gain of each pyramid level, finest first.

    With delta = lambda_c / 8 / (1 + alpha) and a wavelength lambda of sqrt(h^2 + w^2) / 3 at
    the coarsest level, halved per level towards the finest, a level's gain is
    min(alpha, 2 (lambda / delta / 8 - 1)); the finest and the coarsest level get 0. As in
    their code the bound is not floored at 0: on a 128 px face the middle levels' gains are
    negative for every alpha of FMER's set (only the second-coarsest level is magnified).

    Raises:
        ValueError: alpha or lambda_c not positive.
    """
    if not alpha > 0 or not lambda_c > 0:
        raise ValueError(f"alpha and lambda_c must be positive, got {alpha!r} and {lambda_c!r}")
    levels = pyramid_levels(height, width)
    delta = lambda_c / 8 / (1 + alpha)
    wavelength = math.hypot(height, width) / 3
    gains = np.zeros(levels)
    for level in range(levels - 1, -1, -1):  # coarsest first, as their loop
        if 0 < level < levels - 1:
            gains[level] = min(alpha, EXAGGERATION * (wavelength / delta / 8 - 1))
        wavelength /= 2
    return gains


def laplacian_pyramid(image: np.ndarray, levels: int) -> list[np.ndarray]:
    """The Laplacian pyramid of a float (H, W) image, finest band first, the low-pass last."""
    pyramid = []
    for _ in range(levels - 1):
        smaller = cv2.pyrDown(image)
        pyramid.append(image - cv2.pyrUp(smaller, dstsize=image.shape[::-1]))
        image = smaller
    return [*pyramid, image]


def collapsed(pyramid: list[np.ndarray]) -> np.ndarray:
    """The image a Laplacian pyramid (as from `laplacian_pyramid`) holds."""
    image = pyramid[-1]
    for band in reversed(pyramid[:-1]):
        image = band + cv2.pyrUp(image, dstsize=band.shape[::-1])
    return image


def magnify(
    frames: np.ndarray,
    alpha: float,
    *,
    lambda_c: float = LAMBDA_C,
    low_cutoff: float = LOW_CUTOFF,
    high_cutoff: float = HIGH_CUTOFF,
    sampling_rate: float = SAMPLING_RATE,
    published_frame_order: bool = False,
) -> np.ndarray:
    """A clip with its band-passed motion magnified about alpha times.

    The temporal band is that of `butter(1, cutoff / sampling_rate)` for both cutoffs: the
    cutoffs divided by the sampling rate, not by its half, as they call it (so it passes
    0.25-5 Hz at 30 fps, 1/120 to 1/6 cycles per frame).

    Args:
        frames: (T, H, W, C), T >= 2, C = 3 (RGB) or 1 (grey); uint8, or float of values 0-255.
        alpha: the magnification factor (FMER: 1.2, 1.4, ..., 3.0).
        lambda_c, low_cutoff, high_cutoff, sampling_rate: their settings (48, 0.5, 10, 30).
        published_frame_order: their output: frames 1..T-1 magnified, then the raw last
            frame (so a flow over it measures the magnification, not motion); default off:
            all T frames magnified (the first is the input's).

    Returns:
        (T, H, W, C) of the input's dtype: uint8 rounded, float clipped to 0-255.

    Raises:
        ValueError: a bad frame array, alpha, lambda_c or cutoff (cutoffs in order, each below
            the sampling rate).
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[3] not in (1, 3) or frames.shape[0] < 2:
        raise ValueError(f"frames must be (T, H, W, C) with T >= 2, C = 1 or 3; got {frames.shape}")
    if not 0 < low_cutoff < high_cutoff:
        raise ValueError(f"need 0 < low_cutoff < high_cutoff, got {low_cutoff}, {high_cutoff}")
    _, height, width, channels = frames.shape
    gains = level_gains(height, width, alpha, lambda_c)
    low_numerator, low_denominator = butterworth_lowpass(low_cutoff / sampling_rate)
    high_numerator, high_denominator = butterworth_lowpass(high_cutoff / sampling_rate)
    values = frames.astype(np.float64)
    luminance = values[..., 0] if channels == 1 else values @ LUMINANCE  # (T, H, W)
    previous = laplacian_pyramid(luminance[0], len(gains))
    low, high = list(previous), list(previous)  # both low-passes start on the first frame
    changes = [np.zeros((height, width))]
    for frame in luminance[1:]:
        pyramid = laplacian_pyramid(frame, len(gains))
        bands = []
        for level, (band, before) in enumerate(zip(pyramid, previous, strict=True)):
            high[level] = (
                high_numerator[0] * band + high_numerator[1] * before
                - high_denominator[1] * high[level]
            )
            low[level] = (
                low_numerator[0] * band + low_numerator[1] * before
                - low_denominator[1] * low[level]
            )
            bands.append(gains[level] * (high[level] - low[level]))
        previous = pyramid
        changes.append(collapsed(bands))
    magnified = (values + np.stack(changes)[..., None]).clip(0, 255)
    if published_frame_order:
        magnified = np.concatenate([magnified[1:], values[-1:]])
    if frames.dtype == np.uint8:
        return np.rint(magnified).astype(np.uint8)
    return magnified.astype(np.float32)

"""Eulerian video magnification as FMER's `my_butter.m`: the band-passed motion of a moving
sinusoid grows by about alpha, a static clip is unchanged, their gains and filters."""

import numpy as np
import pytest

from mer.data.magnification import (
    butterworth_lowpass,
    collapsed,
    laplacian_pyramid,
    level_gains,
    magnify,
    pyramid_levels,
)

SIZE = 128
WAVELENGTH = 32  # pixels: mostly within the pyramid's middle levels
PERIOD = 10  # frames of the motion, inside the 1/120 .. 1/6 cycles-per-frame band
AMPLITUDE = 0.25  # pixels
COLUMNS = np.arange(SIZE)


def _stripes(shift: float) -> np.ndarray:
    """Vertical sinusoidal stripes moved right by `shift` pixels, values 78-178."""
    return 128 + 50 * np.sin(2 * np.pi * (COLUMNS - shift) / WAVELENGTH)


def _band_passed(signal: np.ndarray) -> np.ndarray:
    """Their temporal filter on a 1-D signal, by scipy: butter(1, 10/30) - butter(1, 0.5/30),
    both starting on the first value."""
    signal_module = pytest.importorskip("scipy.signal")
    outputs = []
    for cutoff in (10 / 30, 0.5 / 30):
        numerator, denominator = signal_module.butter(1, cutoff)
        start = signal_module.lfilter_zi(numerator, denominator) * signal[0]
        outputs.append(signal_module.lfilter(numerator, denominator, signal, zi=start)[0])
    return outputs[0] - outputs[1]


@pytest.mark.parametrize("alpha", [1.2, 2.0, 3.0])
def test_the_band_passed_motion_grows_by_about_alpha(alpha):
    motion = AMPLITUDE * np.sin(2 * np.pi * np.arange(40) / PERIOD)
    frames = np.stack([np.tile(_stripes(shift), (SIZE, 1)) for shift in motion])[..., None]
    # A small lambda_c gives every level between the zeroed finest and coarsest the gain alpha
    # (at 48 only the second-coarsest would: see the gains test).
    magnified = magnify(frames.astype(np.float32), alpha, lambda_c=4.0)
    assert magnified.shape == frames.shape and magnified.dtype == np.float32
    slope = -np.gradient(_stripes(0.0))  # how the stripes change per pixel of shift
    inner = slice(SIZE // 4, 3 * SIZE // 4)
    shifts = np.array(
        [(frame[:, inner, 0].mean(axis=0) - _stripes(0.0)[inner]) @ slope[inner]
         / (slope[inner] @ slope[inner]) for frame in magnified]
    )
    band = _band_passed(motion)
    gain = (shifts - motion) @ band / (band @ band)
    # The stripes hold about 4 % in the zeroed bands (finest and low-pass) at this size.
    assert 0.93 * alpha < gain < alpha, gain
    np.testing.assert_allclose(shifts - motion, gain * band, atol=0.01 * AMPLITUDE * alpha)


def test_a_static_clip_is_unchanged():
    image = np.random.default_rng(0).integers(0, 256, (32, 48, 3), np.uint8)
    frames = np.stack([image] * 6)
    for published in (False, True):
        magnified = magnify(frames, 3.0, published_frame_order=published)
        assert magnified.dtype == np.uint8
        np.testing.assert_array_equal(magnified, frames)


def test_the_published_order_drops_the_first_frame_and_ends_on_the_raw_last():
    rng = np.random.default_rng(1)
    frames = rng.integers(60, 200, (5, 64, 64, 3), np.uint8)
    frames[1:] = np.clip(frames[1:].astype(int) + rng.integers(-20, 20, (4, 64, 64, 3)), 0, 255)
    plain = magnify(frames, 2.0, lambda_c=4.0)
    published = magnify(frames, 2.0, lambda_c=4.0, published_frame_order=True)
    np.testing.assert_array_equal(plain[0], frames[0])  # both low-passes start on it
    assert np.abs(plain[1:].astype(int) - frames[1:]).max() > 5  # the others are magnified
    np.testing.assert_array_equal(published[:-1], plain[1:])
    np.testing.assert_array_equal(published[-1], frames[-1])


def test_rgb_channels_move_together_with_the_luminance():
    rng = np.random.default_rng(2)
    grey = rng.uniform(80, 170, (4, 64, 64, 1))
    grey[2:] += 10
    # Luminance grey - 3.7: a constant off the grey, whose temporal change is the grey's.
    colour = np.concatenate([grey - 20, grey, grey + 20], axis=-1)
    change = magnify(colour, 2.0, lambda_c=4.0) - colour
    assert np.abs(change).max() > 1
    for channel in range(3):
        np.testing.assert_allclose(
            change[..., channel : channel + 1], magnify(grey, 2.0, lambda_c=4.0) - grey, atol=1e-3
        )


def test_the_gains_are_theirs_finest_first():
    # 128 px: 6 levels (128 .. 4 px); delta = 48 / 8 / 3 = 2; lambda = 181.02 / 3 = 60.3 at
    # the coarsest, halved per level; gain min(2, 2 (lambda / 16 - 1)), ends zeroed.
    np.testing.assert_allclose(
        level_gains(128, 128, 2.0), [0, -1.52860, -1.05719, -0.11438, 1.77124, 0], atol=1e-5
    )
    np.testing.assert_allclose(level_gains(144, 144, 2.0)[4], 2.0)  # the bound reaches alpha
    assert [pyramid_levels(side, side) for side in (4, 5, 9, 10, 128)] == [1, 2, 2, 3, 6]


def test_the_butterworth_low_pass_is_matlabs():
    signal_module = pytest.importorskip("scipy.signal")
    for cutoff in (1 / 3, 1 / 60):
        for ours, theirs in zip(butterworth_lowpass(cutoff), signal_module.butter(1, cutoff),
                                strict=True):
            np.testing.assert_allclose(ours, theirs, rtol=1e-12)


def test_the_pyramid_collapses_to_the_image():
    image = np.random.default_rng(3).uniform(0, 255, (37, 53))
    pyramid = laplacian_pyramid(image, pyramid_levels(37, 53))
    assert [band.shape for band in pyramid] == [(37, 53), (19, 27), (10, 14), (5, 7)]
    np.testing.assert_allclose(collapsed(pyramid), image, atol=1e-9)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": 2.0, "low_cutoff": 12.0}, "low_cutoff"),
        ({"alpha": 2.0, "high_cutoff": 40.0}, "cutoff"),
    ],
)
def test_bad_settings_are_refused(arguments, message):
    with pytest.raises(ValueError, match=message):
        magnify(np.zeros((3, 16, 16, 3), np.uint8), **arguments)


def test_a_single_frame_is_refused():
    with pytest.raises(ValueError, match=r"\(1, 16, 16, 3\)"):
        magnify(np.zeros((1, 16, 16, 3), np.uint8), 2.0)

"""FMER's frame timings (which original frames each output frame comes from) and the frames
synthesised between two originals."""

from fractions import Fraction

import cv2
import numpy as np
import pytest

from mer.data.interpolation import (
    FrameSource,
    even_times,
    flow_stream_times,
    frame_sources,
    interpolated_frames,
)


def _pairs(times):
    """(earlier, later, weight rounded) of each time's source."""
    return [
        (source.earlier, source.later, round(source.weight, 4)) for source in frame_sources(times)
    ]


def test_the_ten_frames_rise_in_eight_then_halve_the_fall_then_end_on_the_offset():
    times = flow_stream_times(0, 10, 15)
    assert times == [Fraction(10 * step, 7) for step in range(8)] + [Fraction(25, 2), 15]
    assert _pairs(times) == [
        (0, 0, 0.0),
        (1, 2, 0.4286),  # 10/7
        (2, 3, 0.8571),  # 20/7
        (4, 5, 0.2857),
        (5, 6, 0.7143),
        (7, 8, 0.1429),
        (8, 9, 0.5714),
        (10, 10, 0.0),  # frame 7: the apex itself
        (12, 13, 0.5),  # frame 8: half-way from apex to offset
        (15, 15, 0.0),  # frame 9: the offset
    ]


def test_an_apex_on_the_offset_gives_ten_even_steps_to_it():
    times = flow_stream_times(3, 15, 15)
    assert times == [3 + Fraction(12 * step, 9) for step in range(10)]
    assert _pairs(times)[:4] == [(3, 3, 0.0), (4, 5, 0.3333), (5, 6, 0.6667), (7, 7, 0.0)]
    assert _pairs(times)[-1] == (15, 15, 0.0)  # frame 9: the apex


def test_whole_frame_spacing_reads_only_original_frames():
    assert _pairs(flow_stream_times(10, 24, 40)) == [
        *((10 + 2 * step,) * 2 + (0.0,) for step in range(8)), (32, 32, 0.0), (40, 40, 0.0)
    ]


def test_the_au_stream_is_sixteen_even_times_from_onset_to_offset():
    times = even_times(5, 35, 16)
    assert times == list(range(5, 36, 2))
    assert _pairs(even_times(0, 1, 16))[1] == (0, 1, round(1 / 15, 4))


def test_one_frame_clips_repeat_it():
    assert _pairs(flow_stream_times(4, 4, 4)) == [(4, 4, 0.0)] * 10


@pytest.mark.parametrize(
    ("onset", "apex", "offset"), [(5, 3, 8), (0, 9, 8), (-1, 0, 2), (0.5, 1, 2), (True, 1, 2)]
)
def test_bad_windows_are_refused_with_their_values(onset, apex, offset):
    with pytest.raises(ValueError, match="onset|apex|offset"):
        flow_stream_times(onset, apex, offset)


def test_even_times_needs_two_frames_in_order():
    with pytest.raises(ValueError, match="count"):
        even_times(0, 5, 1)
    with pytest.raises(ValueError, match="6 and 5"):
        even_times(6, 5, 4)


def test_a_cross_fade_mixes_the_two_frames_around_each_time():
    frames = [np.full((4, 4, 3), 10 * position, np.uint8) for position in range(16)]
    times = flow_stream_times(0, 10, 15)
    made = interpolated_frames(frames, frame_sources(times), "cross_fade")
    assert made.shape == (10, 4, 4, 3) and made.dtype == np.uint8
    np.testing.assert_array_equal(made[:, 0, 0, 0], [round(10 * float(time)) for time in times])


def test_whole_frames_are_the_originals_and_only_the_named_frames_are_read():
    rng = np.random.default_rng(0)
    frames = {position: rng.integers(0, 256, (6, 6, 3), np.uint8) for position in (2, 5)}
    sources = [FrameSource(Fraction(2), 2, 2, 0.0), FrameSource(Fraction(5), 5, 5, 0.0)]
    made = interpolated_frames(frames, sources)
    np.testing.assert_array_equal(made, [frames[2], frames[5]])
    with pytest.raises(ValueError, match="position 3"):
        interpolated_frames(frames, frame_sources([Fraction(5, 2)]))


def _shifted(image: np.ndarray, shift: float) -> np.ndarray:
    """A float image moved right by `shift` pixels, as uint8."""
    matrix = np.float32([[1, 0, shift], [0, 1, 0]])
    moved = cv2.warpAffine(image, matrix, image.shape[::-1], flags=cv2.INTER_CUBIC,
                           borderMode=cv2.BORDER_REFLECT)
    return np.rint(moved.clip(0, 255)).astype(np.uint8)[:, :, None]


@pytest.mark.parametrize("algorithm", ["tvl1", "farneback"])
def test_the_warped_blend_follows_the_motion_where_a_cross_fade_ghosts(algorithm):
    noise = np.random.default_rng(1).uniform(0, 255, (48, 48)).astype(np.float32)
    texture = cv2.GaussianBlur(noise, (0, 0), 2.0)
    texture = (texture - texture.min()) / np.ptp(texture) * 255
    frames = [_shifted(texture, 0.0), _shifted(texture, 3.0)]  # 3 px per frame
    halfway = frame_sources([Fraction(1, 2)])
    warped = interpolated_frames(frames, halfway, "warped_blend", algorithm)[0]
    faded = interpolated_frames(frames, halfway, "cross_fade")[0]
    truth = _shifted(texture, 1.5).astype(np.float32)
    inner = (slice(8, 40), slice(8, 40))
    warped_error = np.abs(warped[inner] - truth[inner]).mean()
    faded_error = np.abs(faded[inner] - truth[inner]).mean()
    assert warped.shape == (48, 48, 1) and warped.dtype == np.uint8
    assert warped_error < 2.5 and warped_error < faded_error / 3, (warped_error, faded_error)


def test_an_unknown_method_is_refused():
    with pytest.raises(ValueError, match="'ghost'"):
        interpolated_frames([np.zeros((4, 4, 3), np.uint8)], frame_sources([0]), "ghost")

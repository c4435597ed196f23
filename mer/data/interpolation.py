"""Frames at fractional times of a clip, each made only from the two original frames around it:
FMER's timings and a weight-free substitute for the RIFE interpolation it used.

Times are positions in the clip's frame list (0-based) and exact fractions, so a time on a whole
frame gives that frame unchanged. A frame at time t between positions e = floor(t) and e + 1,
at weight w = t - e, is either the flow-warped blend of the two (default: both are warped along
the optical flow from e to e + 1 to time t, then mixed (1 - w) : w) or their linear cross-fade.
RIFE also only ever interpolates between neighbours, at 100-200 fps, where motion is small.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

import cv2
import numpy as np

from mer.data.flow import optical_flow

METHODS = ("warped_blend", "cross_fade")
FLOW_STREAM_FRAMES = 10  # FMER's frames before magnification (9 flow steps)
AU_STREAM_FRAMES = 16  # FMER's AU-stream frames, onset to offset (its P3D needs 16)


@dataclass(frozen=True)
class FrameSource:
    """Where one output frame comes from: `later` mixed in at `weight`, `earlier` at the rest
    (the same frame, at weight 0, when the time is a whole frame)."""

    time: Fraction
    earlier: int
    later: int
    weight: float


def _check_position(name: str, value: int) -> int:
    """A frame position as an int.

    Raises:
        ValueError: not an int, or negative, quoting it.
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ValueError(f"{name} must be a frame position (an int >= 0), got {value!r}")
    return int(value)


def flow_stream_times(onset: int, apex: int, offset: int) -> list[Fraction]:
    """FMER's 10 times: frames 0-7 at onset + k (apex - onset) / 7, frame 8 half-way from apex
    to offset, frame 9 the offset; when apex == offset, ten even steps onset -> apex (their
    SMIC script, which has no apex, takes this timing with the apex at the offset).

    Raises:
        ValueError: positions that are not ints with 0 <= onset <= apex <= offset.
    """
    onset, apex, offset = (
        _check_position(name, value)
        for name, value in (("onset", onset), ("apex", apex), ("offset", offset))
    )
    if not onset <= apex <= offset:
        raise ValueError(f"need onset <= apex <= offset, got {onset}, {apex}, {offset}")
    if apex == offset:
        return even_times(onset, apex, FLOW_STREAM_FRAMES)
    rising = [onset + Fraction(step * (apex - onset), 7) for step in range(8)]
    return [*rising, apex + Fraction(offset - apex, 2), Fraction(offset)]


def even_times(start: int, end: int, count: int) -> list[Fraction]:
    """`count` evenly spaced times from `start` to `end`, both included (the AU stream: 16
    from onset to offset).

    Raises:
        ValueError: positions that are not ints with 0 <= start <= end, or count below 2.
    """
    start, end = _check_position("start", start), _check_position("end", end)
    if start > end:
        raise ValueError(f"need start <= end, got {start} and {end}")
    if isinstance(count, bool) or not isinstance(count, int) or count < 2:
        raise ValueError(f"count must be an int >= 2, got {count!r}")
    return [start + Fraction(step * (end - start), count - 1) for step in range(count)]


def frame_sources(times: Sequence[Fraction]) -> list[FrameSource]:
    """The original frames each time is made from: floor(t) and floor(t) + 1."""
    sources = []
    for time in times:
        earlier = math.floor(time)
        whole = time == earlier
        sources.append(
            FrameSource(
                time=Fraction(time),
                earlier=earlier,
                later=earlier if whole else earlier + 1,
                weight=float(time - earlier),
            )
        )
    return sources


def _mixed(earlier: np.ndarray, later: np.ndarray, weight: float) -> np.ndarray:
    """(1 - weight) earlier + weight later, rounded to uint8."""
    mixed = (1.0 - weight) * earlier.astype(np.float32) + weight * later.astype(np.float32)
    return np.rint(mixed).clip(0, 255).astype(np.uint8)


def warped_blend(
    earlier: np.ndarray, later: np.ndarray, weight: float, flow: np.ndarray
) -> np.ndarray:
    """The frame at `weight` between two frames, both warped there along `flow` and mixed.

    The flow at each output pixel stands for the flow of the point passing through it (smooth
    motion), so the earlier frame is read at p - w flow(p), the later at p + (1 - w) flow(p)
    (bilinear; outside the image the border repeats).

    Args:
        earlier, later: uint8 (H, W, C) frames.
        weight: the time between them, in [0, 1].
        flow: (H, W, 2) from `earlier` to `later` (`mer.data.flow.optical_flow`).

    Returns:
        (H, W, C) uint8.
    """
    height, width = earlier.shape[:2]
    columns, rows = np.meshgrid(
        np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)
    )
    u, v = flow[:, :, 0], flow[:, :, 1]

    def read(image: np.ndarray, step: float) -> np.ndarray:
        moved = cv2.remap(
            image.astype(np.float32),
            columns + step * u,
            rows + step * v,
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
        return moved.reshape(image.shape)

    return _mixed(read(earlier, -weight), read(later, 1.0 - weight), weight)


def interpolated_frames(
    frames: Sequence[np.ndarray] | Mapping[int, np.ndarray],
    sources: Sequence[FrameSource],
    method: str = "warped_blend",
    algorithm: str = "tvl1",
) -> np.ndarray:
    """The frames at `sources`' times.

    Args:
        frames: uint8 (H, W, C) frames by position (a sequence, or a mapping holding at least
            the positions the sources name), one size.
        sources: from `frame_sources`.
        method: "warped_blend" (default) or "cross_fade".
        algorithm: the warped blend's flow, "tvl1" or "farneback" (computed once per pair of
            neighbours, on grey).

    Returns:
        (len(sources), H, W, C) uint8; a whole-frame time is a copy of that frame.

    Raises:
        ValueError: an unknown method, no sources, or a position `frames` lacks.
    """
    if method not in METHODS:
        raise ValueError(f"unknown interpolation method {method!r}; expected one of {METHODS}")
    if not sources:
        raise ValueError("no frames to interpolate: sources is empty")
    flows: dict[tuple[int, int], np.ndarray] = {}

    def frame(position: int) -> np.ndarray:
        try:
            return np.asarray(frames[position])
        except (IndexError, KeyError):
            raise ValueError(f"frame position {position} is not among the frames given") from None

    made = []
    for source in sources:
        earlier, later = frame(source.earlier), frame(source.later)
        if source.weight == 0:
            made.append(earlier.copy())
        elif method == "cross_fade":
            made.append(_mixed(earlier, later, source.weight))
        else:
            pair = (source.earlier, source.later)
            if pair not in flows:
                flows[pair] = optical_flow(earlier, later, algorithm)
            made.append(warped_blend(earlier, later, source.weight, flows[pair]))
    return np.stack(made)

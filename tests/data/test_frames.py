"""Frame discovery, selection and decoding."""

import logging

import cv2
import numpy as np
import pytest

from mer.data.frames import (
    count_frames,
    frame_changes,
    frame_files,
    frame_numbers,
    load_clip,
    read_frames,
    select_positions,
)
from mer.data.sheets import DataError
from tests.data.replicas import write_video


def test_frame_files_sort_numerically_whatever_the_prefix(tmp_path):
    for name in ["img10.jpg", "img9.jpg", "img100.jpg", "notes.txt", "img1.jpg"]:
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in frame_files(tmp_path)] == [
        "img1.jpg",
        "img9.jpg",
        "img10.jpg",
        "img100.jpg",
    ]


def test_select_positions_samplers():
    video = range(1, 31)  # a video's frame numbers are 1-based positions
    assert select_positions(video, 5, "first", start=3).tolist() == [3, 4, 5, 6, 7]
    assert select_positions(range(1, 10), 3, "even").tolist() == [0, 4, 8]
    assert select_positions(video, 3, "onset_offset", onset=11, offset=21).tolist() == [10, 15, 20]
    # a frame folder's numbers are its file numbers, gaps included
    folder = [46, 47, 48, 50, 51, 52, 53]
    assert select_positions(folder, 3, "onset_offset", onset=47, offset=52).tolist() == [1, 3, 5]


def test_short_clips_are_padded_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        assert select_positions([1, 2, 3], 5, "first").tolist() == [0, 1, 2, 2, 2]
        assert select_positions([1, 2], 4, "even").tolist() == [0, 0, 1, 1]
    assert len(caplog.records) == 2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(sampler="onset_offset"), "onset/offset missing"),
        (dict(sampler="onset_offset", onset=40, offset=45), "no frame numbered 40..45"),
        (dict(sampler="onset_offset", onset=12, offset=2), "the onset 12 comes after the offset 2"),
        (dict(sampler="random"), "unknown sampler"),
    ],
)
def test_select_positions_errors(kwargs, message):
    with pytest.raises(DataError, match=message):
        select_positions(range(1, 31), 4, **kwargs)


def test_video_and_frame_folder_read_the_same_frames(tmp_path):
    frames = np.zeros((6, 32, 32, 3), np.uint8)
    for index in range(6):
        frames[index, :, :, 0] = 40 * index  # red grows over time
        frames[index, :8, :8, 2] = 200  # a blue corner
    write_video(tmp_path / "clip.avi", frames)
    folder = tmp_path / "clip_frames"
    folder.mkdir()
    for index, frame in enumerate(frames):
        cv2.imwrite(
            str(folder / f"reg_img{index + 46}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
        )
    assert count_frames(tmp_path / "clip.avi") == 6
    assert count_frames(folder) == 6
    assert frame_numbers(folder) == [46, 47, 48, 49, 50, 51]
    assert frame_numbers(tmp_path / "clip.avi") == [1, 2, 3, 4, 5, 6]
    positions = np.array([1, 4, 4])
    from_video = np.stack(read_frames(tmp_path / "clip.avi", positions))
    from_folder = np.stack(read_frames(folder, positions))
    np.testing.assert_array_equal(from_folder, frames[positions])  # lossless PNG, RGB order
    assert np.abs(from_video.astype(int) - frames[positions]).mean() < 6  # MJPG is lossy
    clip = load_clip(folder, positions, size=16)
    assert clip.shape == (3, 16, 16, 3) and clip.dtype == np.uint8
    assert clip[0, 0, 0, 2] > 150 and clip[0, -1, -1, 2] < 50  # blue stays top-left: RGB kept
    assert load_clip(folder, positions, size=16, grayscale=True).shape == (3, 16, 16, 1)


def test_broken_media_get_named_errors(tmp_path):
    broken = tmp_path / "broken.avi"
    broken.write_bytes(b"not a video")
    with pytest.raises(DataError, match="broken.avi"):
        count_frames(broken)
    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "img1.jpg").write_bytes(b"garbage")
    with pytest.raises(DataError, match="img1.jpg"):
        read_frames(folder, np.array([0]))


def test_max_motion_keeps_the_strongest_changes_in_time_order(tmp_path):
    motion = [0, 5, 1, 9, 2, 7, 0, 8]
    numbers = list(range(101, 109))
    assert select_positions(numbers, 3, "max_motion", motion=motion).tolist() == [3, 5, 7]
    # restricted to onset..offset (frame numbers 102..106 = positions 1..5)
    picked = select_positions(numbers, 2, "max_motion", onset=102, offset=106, motion=motion)
    assert picked.tolist() == [3, 5]


def test_frame_changes_measure_grey_differences(tmp_path):
    folder = tmp_path / "clip"
    folder.mkdir()
    frames = np.zeros((4, 8, 8, 3), np.uint8)
    frames[2, :2, :2] = 10  # frame 2 differs from 1 and from 3 by 4 pixels of 10 grey levels
    for index, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"img{index + 1}.png"), frame)
    np.testing.assert_allclose(frame_changes(read_frames(folder, np.arange(4))), [0, 0, 40, 40])

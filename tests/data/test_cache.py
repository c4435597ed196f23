"""The preprocessing cache: one entry per sample and settings, made once, reused, redone when
the media, the sample's row or the settings change."""

import errno
import os

import cv2
import numpy as np
import pandas as pd
import pytest

from mer.config import DataConfig
from mer.data.cache import ClipCache, media_signature
from mer.data.sources import make_inputs, preprocess


def test_cache_hit_miss_and_invalidation(tmp_path):
    calls = []

    def make():
        calls.append(1)
        return np.full((2, 4, 4, 3), len(calls), np.uint8)

    cache = ClipCache(tmp_path / "cache", {"size": 4})
    first, hit = cache.load_or_make("sub01/EP01", {"onset": 3}, make)
    assert not hit and first[0, 0, 0, 0] == 1
    second, hit = cache.load_or_make("sub01/EP01", {"onset": 3}, make)
    assert hit and len(calls) == 1 and second[0, 0, 0, 0] == 1
    assert not list(cache.directory.glob("*.tmp"))
    assert [path.name.split("-")[0] for path in cache.directory.iterdir()] == ["sub01_EP01"]
    other = ClipCache(tmp_path / "cache", {"size": 8})
    assert other.directory != cache.directory
    _, hit = other.load_or_make("sub01/EP01", {"onset": 3}, make)
    assert not hit
    _, hit = cache.load_or_make("sub01/EP01", {"onset": 4}, make)  # another window
    assert not hit and len(calls) == 3


def test_media_signature_sees_an_edited_video_and_an_edited_frame(tmp_path):
    video = tmp_path / "clip.avi"
    video.write_bytes(b"video")
    before = media_signature(video)
    status = video.stat()
    os.utime(video, ns=(status.st_atime_ns, status.st_mtime_ns + 10**9))
    assert media_signature(video) != before

    folder = tmp_path / "frames"
    folder.mkdir()
    for number in range(3):
        (folder / f"img{number}.jpg").write_bytes(b"jpeg")
    before = media_signature(folder)
    (folder / "img1.jpg").write_bytes(b"jpeg, edited")  # the folder's own stat is unchanged
    assert media_signature(folder) != before
    (folder / "img3.jpg").write_bytes(b"jpeg")
    assert len(media_signature(folder)[1]) == 4


def _frame_folder(folder, count):
    """Frames whose every pixel is 10 x the frame number, so a window shows in the values."""
    folder.mkdir(parents=True)
    for number in range(1, count + 1):
        cv2.imwrite(str(folder / f"{number}.png"), np.full((8, 8, 3), 10 * number, np.uint8))


def test_samples_sharing_one_take_get_their_own_frames(tmp_path):
    """CAS(ME)^3 keeps several expressions in one take folder: each sample is its window."""
    take = tmp_path / "spNO.1" / "a" / "color"
    _frame_folder(take, 20)
    manifest = pd.DataFrame(
        {
            "sample": ["spNO.1/a/2", "spNO.1/a/12"],
            "path": [str(take)] * 2,
            "frames": [20, 20],
            "onset": [2, 12],
            "offset": [5, 15],
            "aus": ["12", "4"],
        }
    )
    data = DataConfig(frames=4, size=8, sampler="onset_offset", cache_dir=str(tmp_path / "cache"))
    prepared = preprocess(data, manifest)
    first, second = prepared.streams[0]
    assert first[:, 0, 0, 0].tolist() == [20, 30, 40, 50]  # frames 2..5
    assert second[:, 0, 0, 0].tolist() == [120, 130, 140, 150]  # frames 12..15
    for array, (_, row) in zip(prepared.streams[0], manifest.iterrows(), strict=True):
        np.testing.assert_array_equal(array, make_inputs(data, row)[0])  # as without a cache
    assert prepared.hits == 0 and len(set(prepared.keys)) == 2

    assert preprocess(data, manifest).hits == 2
    cv2.imwrite(str(take / "13.png"), np.full((8, 8, 3), 7, np.uint8))  # one frame edited
    again = preprocess(data, manifest)
    assert again.hits == 0  # both share the folder, whose signature covers all its files
    assert again.streams[0][1][:, 0, 0, 0].tolist() == [120, 7, 140, 150]
    assert again.keys != prepared.keys


def test_a_failed_write_leaves_no_entry(tmp_path, monkeypatch):
    cache = ClipCache(tmp_path / "cache", {"size": 4})

    def disk_full(stream, array):
        stream.write(b"\x93NUMPY partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr("mer.data.cache.np.save", disk_full)
        with pytest.raises(OSError, match="No space left"):
            cache.load_or_make("clip", {}, lambda: np.zeros((2, 4, 4, 3), np.uint8))
    assert not list(cache.directory.iterdir())  # nothing a later run could trust
    _, hit = cache.load_or_make("clip", {}, lambda: np.zeros((2, 4, 4, 3), np.uint8))
    assert not hit

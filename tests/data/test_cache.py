"""The preprocessing cache: made once, reused, redone when the clip or the settings change."""

import errno
import os

import numpy as np
import pytest

from mer.data.cache import ClipCache


def test_cache_hit_miss_and_invalidation(tmp_path):
    clip = tmp_path / "clip.avi"
    clip.write_bytes(b"video")
    calls = []

    def make():
        calls.append(1)
        return np.full((2, 4, 4, 3), len(calls), np.uint8)

    cache = ClipCache(tmp_path / "cache", {"size": 4})
    first, hit = cache.load_or_make(clip, make)
    assert not hit and first[0, 0, 0, 0] == 1
    second, hit = cache.load_or_make(clip, make)
    assert hit and len(calls) == 1 and second[0, 0, 0, 0] == 1
    assert not list(cache.directory.glob("*.tmp"))
    other = ClipCache(tmp_path / "cache", {"size": 8})
    assert other.directory != cache.directory
    _, hit = other.load_or_make(clip, make)
    assert not hit
    stat = clip.stat()
    os.utime(clip, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # the clip was edited
    _, hit = cache.load_or_make(clip, make)
    assert not hit and len(calls) == 3


def test_a_failed_write_leaves_no_entry(tmp_path, monkeypatch):
    clip = tmp_path / "clip.avi"
    clip.write_bytes(b"video")
    cache = ClipCache(tmp_path / "cache", {"size": 4})

    def disk_full(stream, array):
        stream.write(b"\x93NUMPY partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr("mer.data.cache.np.save", disk_full)
        with pytest.raises(OSError, match="No space left"):
            cache.load_or_make(clip, lambda: np.zeros((2, 4, 4, 3), np.uint8))
    assert not list(cache.directory.iterdir())  # nothing a later run could trust
    _, hit = cache.load_or_make(clip, lambda: np.zeros((2, 4, 4, 3), np.uint8))
    assert not hit

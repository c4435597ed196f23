"""Normalisation and streamed batches."""

import ctypes
import os
import random
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from mer.data.batches import (
    M_MMAP_THRESHOLD,
    M_TRIM_THRESHOLD,
    ClipBatches,
    Normalizer,
    PrefetchedBatches,
    _builders,
    _glibc,
    feed,
    release_pages,
)

RANDOM = np.random.default_rng(0)


def _clips(count, frames=4, size=6, channels=3):
    return [RANDOM.integers(0, 256, (frames, size, size, channels), dtype=np.uint8)
            for _ in range(count)]


def test_normalizer_modes():
    clip = _clips(1)[0]
    per_clip = Normalizer("per_clip")(clip)
    assert per_clip.dtype == np.float32
    assert abs(per_clip.mean()) < 1e-5 and abs(per_clip.std() - 1) < 1e-3
    temporal = Normalizer("temporal")(clip)
    np.testing.assert_allclose(temporal.mean(axis=0), 0, atol=1e-5)  # static part removed
    assert abs(temporal.std() - 1) < 1e-3
    static = np.repeat(clip[:1], 4, axis=0)
    assert np.abs(Normalizer("temporal")(static)).max() == 0  # no movement, no signal
    np.testing.assert_allclose(Normalizer("scale")(clip), clip / 255, rtol=1e-6)


@pytest.mark.parametrize("mode", ["none", "scale", "per_clip", "temporal", "train_fold",
                                  "dataset_global"])
def test_batch_rows_are_the_plain_numpy_formulas_float_for_float(mode):
    """Batches are normalised in place, row by row: the same floats as the formulas written
    out on a float32 copy (so runs and saved results do not move)."""
    # long sums, from a generator of the test's own, so the clips do not depend on which tests
    # ran before: among these, one shows a variance taken around a re-measured mean
    clips = list(np.random.default_rng(0).integers(0, 256, (5, 6, 41, 41, 3), dtype=np.uint8))
    normalizer = Normalizer.fit(mode, clips)

    def plain(clip):
        values = clip.astype(np.float32)
        if mode == "scale":
            return values / np.float32(255)
        if mode == "per_clip":
            return (values - values.mean()) / (values.std() + np.float32(1e-6))
        if mode == "temporal":
            residual = values - values.mean(axis=0, keepdims=True)
            return residual / (residual.std() + np.float32(1e-6))
        if mode == "none":
            return values
        return (values - normalizer.mean) / normalizer.std

    (batch,) = ClipBatches([clips], None, 3, 5, [normalizer])[0]
    for clip, row in zip(clips, batch, strict=True):
        np.testing.assert_array_equal(row, plain(clip))
        np.testing.assert_array_equal(normalizer(clip), row)
    flow = RANDOM.standard_normal((7, 7, 3)).astype(np.float16)
    if mode == "none":  # flow is stored as float16
        np.testing.assert_array_equal(normalizer(flow), flow.astype(np.float32))


def test_train_fold_statistics_come_from_the_given_clips_only():
    training = _clips(5)
    normalizer = Normalizer.fit("train_fold", training)
    stacked = np.stack(training).reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(normalizer.mean, stacked.mean(0), rtol=1e-5)
    np.testing.assert_allclose(normalizer.std, stacked.std(0), rtol=1e-4)
    assert Normalizer.fit("per_clip", training).mean is None
    with pytest.raises(ValueError, match="'zscore'"):
        Normalizer("zscore")


def test_batches_cover_every_clip_once_per_epoch_deterministically():
    clips = _clips(11)
    labels = np.arange(11) % 3
    batches = ClipBatches([clips], labels, 3, 4, [Normalizer("scale")], shuffle=True, seed=5)
    assert len(batches) == 3
    seen = []
    for index in range(len(batches)):
        inputs, targets = batches[index]
        assert inputs.dtype == np.float32 and inputs.shape[1:] == (4, 6, 6, 3)
        assert targets.shape == (len(inputs), 3)
        for clip_input, target in zip(inputs, targets, strict=True):
            match = [i for i, c in enumerate(clips) if np.allclose(c / 255, clip_input)]
            assert len(match) == 1 and target.argmax() == labels[match[0]]
            seen.append(match[0])
    assert sorted(seen) == list(range(11))
    first_order = batches.order.copy()
    batches.on_epoch_end()
    assert not np.array_equal(first_order, batches.order)
    again = ClipBatches([clips], labels, 3, 4, [Normalizer("scale")], shuffle=True, seed=5)
    np.testing.assert_array_equal(again.order, first_order)



class KerasFed(keras.utils.PyDataset):
    """`batches` as Keras feeds a PyDataset itself: with `workers` > 1 through its thread queue,
    as runs fed them before `feed`."""

    def __init__(self, batches, workers: int):
        super().__init__(workers=workers, max_queue_size=2)
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int):
        return self.batches[index]

    def on_epoch_end(self) -> None:
        self.batches.on_epoch_end()


def test_the_feed_trains_on_the_batches_keras_would_feed():
    """The feed's threads (1, 2 or 3, data.workers) give fit the batches that Keras gives from
    the PyDataset itself, in the same order (each epoch's batch order drawn as fit(shuffle=True)
    draws it), so the weights come out bit-identical; on TensorFlow they are also those of
    Keras's thread queue, as runs were fed before the feed. (On JAX and PyTorch the queue
    gives other batches in the first epoch: the ones it built while fit read the first batch's
    shapes, before fit's first epoch end reshuffled the clips.) Keras builds no queue of its
    own."""
    clips, labels = _clips(10), np.arange(10) % 3

    def trained(workers: int, keras_feeds: bool = False) -> list[np.ndarray]:
        keras.utils.set_random_seed(3)
        batches = ClipBatches([clips], labels, 3, 4, [Normalizer("scale")], shuffle=True, seed=5)
        model = keras.Sequential(
            [keras.Input((4, 6, 6, 3)), keras.layers.Flatten(), keras.layers.Dense(3)]
        )
        model.compile(keras.optimizers.SGD(0.1), keras.losses.CategoricalCrossentropy(True))
        if keras_feeds:  # fit's default shuffle=True
            model.fit(KerasFed(batches, workers), epochs=3, verbose=0)
        else:
            model.fit(feed(batches, workers, shuffle=True), epochs=3, verbose=0, shuffle=False)
        return model.get_weights()

    expected = trained(1, keras_feeds=True)
    others = [trained(workers) for workers in (1, 2, 3)]
    if keras.backend.backend() == "tensorflow":
        others.append(trained(2, keras_feeds=True))
    for weights in others:
        for left, right in zip(expected, weights, strict=True):
            np.testing.assert_array_equal(left, right)
    prefetched = PrefetchedBatches(ClipBatches([clips], labels, 3, 4, [Normalizer("scale")]), 2)
    assert (prefetched.workers, prefetched.use_multiprocessing, prefetched.threads) == (
        1, False, 2
    )
    with pytest.raises(ValueError, match="workers must be at least 1, got 0"):
        feed(ClipBatches([clips], labels, 3, 4, [Normalizer("scale")]), 0)


def test_prefetched_batches_build_ahead_in_each_epochs_order():
    """The next AHEAD batches are built while one is taken; a batch read out of turn (Keras's
    shape probe before fit) is built on the spot; an epoch's end waits for what is being built,
    then passes the end on (ClipBatches reshuffles its clips)."""
    clips, labels = _clips(20), np.arange(20) % 3
    batches = ClipBatches([clips], labels, 3, 4, [Normalizer("scale")], shuffle=True, seed=5)
    reads = []

    class Recorded(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()

        def __len__(self) -> int:
            return len(batches)

        def __getitem__(self, index: int):
            reads.append(index)
            return batches[index]

        def on_epoch_end(self) -> None:
            batches.on_epoch_end()

    prefetched = PrefetchedBatches(Recorded(), 2, shuffle=True)
    np.testing.assert_array_equal(prefetched[3][0], batches[3][0])  # out of turn: on the spot
    prefetched.on_epoch_end()  # as Keras's before fit: what was being built ahead is dropped
    assert not prefetched.pending
    built = len(reads)
    random.seed(1)
    prefetched.on_epoch_begin()
    random.seed(1)
    order = list(range(5))
    random.shuffle(order)
    assert prefetched.order == order and sorted(prefetched.pending) == [0, 1]
    for position in range(5):
        np.testing.assert_array_equal(prefetched[position][0], batches[order[position]][0])
        assert sorted(prefetched.pending) == list(range(position + 1, min(position + 3, 5)))
    clip_order = batches.order.copy()
    prefetched.on_epoch_end()
    assert sorted(reads[built:]) == list(range(5))  # each of the epoch's batches built once
    assert not prefetched.pending and not np.array_equal(batches.order, clip_order)


def test_two_streams_and_prediction_batches():
    first, second = _clips(3), _clips(3)
    batches = ClipBatches([first, second], None, 3, 2, [Normalizer("scale")] * 2)
    (inputs,) = batches[1]
    assert isinstance(inputs, tuple) and len(inputs) == 2
    np.testing.assert_allclose(inputs[1][0], second[2] / 255, rtol=1e-6)
    with pytest.raises(ValueError, match="equal length"):
        ClipBatches([first, second[:2]], None, 3, 2, [Normalizer("scale")] * 2)


def test_targets_follow_their_clips_through_the_shuffle():
    """A family's second targets (FMER's AUs) come beside the one-hot labels, row for row."""
    clips = _clips(5)
    labels = np.arange(5) % 3
    targets = np.arange(10, dtype=np.float32).reshape(5, 2)
    batches = ClipBatches([clips], labels, 3, 2, [Normalizer("none")], shuffle=True, seed=1,
                          targets=targets)
    for index in range(len(batches)):
        inputs, (classes, rows) = batches[index]
        chosen = batches.order[index * 2 : (index + 1) * 2]
        np.testing.assert_array_equal(inputs, np.stack([clips[item] for item in chosen]))
        np.testing.assert_array_equal(classes.argmax(axis=1), labels[chosen])
        assert rows.dtype == np.float32
        np.testing.assert_array_equal(rows, targets[chosen])
    with pytest.raises(ValueError, match="4 rows of targets for 5 labels"):
        ClipBatches([clips], labels, 3, 2, [Normalizer("none")], targets=targets[:4])
    with pytest.raises(ValueError, match="5 rows of targets for no labels"):
        ClipBatches([clips], None, 3, 2, [Normalizer("none")], targets=targets)


def _resident_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(
    not Path("/proc/self/statm").exists(),
    reason="reads resident memory from Linux /proc/self/statm (CI runs on Linux)",
)
def test_read_clips_leave_resident_memory(tmp_path):
    path = tmp_path / "clip.npy"
    np.save(path, np.full((64, 1024, 1024), 7, np.uint8))  # 64 MB
    clip = np.load(path, mmap_mode="r")
    before = _resident_mb()
    assert int(clip[:, ::4096].sum()) > 0  # touches every page
    assert _resident_mb() > before + 48
    release_pages(clip)
    assert _resident_mb() < before + 16  # the pages left this process (the file cache keeps them)
    assert int(clip[0, 0, 0]) == 7  # and read back as before
    release_pages(np.zeros(3))  # not a mapped file: nothing to do


class _MallocInfo(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


@pytest.mark.skipif(_glibc() is None, reason="glibc's allocator settings (CI runs on glibc)")
def test_batches_reuse_heap_memory_after_tensorflow_freezes_the_mmap_threshold():
    libc = _glibc()
    libc.mallinfo2.restype = _MallocInfo
    # What TensorFlow's generator dataset leaves when its first iterator starts: a 128 kB
    # trim threshold, and with it the mmap threshold frozen at 128 kB.
    libc.mallopt(M_TRIM_THRESHOLD, 128 * 1024)
    libc.mallopt(M_MMAP_THRESHOLD, 128 * 1024)
    clips = _clips(8, frames=4, size=64)  # a float32 batch of 8 is 1.5 MB
    batches = ClipBatches([clips], np.arange(8) % 3, 3, 8, [Normalizer("none")])
    mapped_before = libc.mallinfo2().hblkhd
    inputs, _ = batches[0]
    mapped = libc.mallinfo2().hblkhd - mapped_before
    assert inputs.nbytes > 1024 * 1024
    assert mapped < inputs.nbytes  # the batch came from the heap, not from a new mapping
    np.testing.assert_array_equal(inputs, np.stack(clips).astype(np.float32))


def test_dataset_global_is_the_published_scalar_mean_and_max():
    clips = _clips(3)
    normalizer = Normalizer.fit("dataset_global", clips)
    everything = np.stack(clips).astype(np.float64)
    mean = everything.mean()
    expected = (everything[1] - mean) / (everything - mean).max()  # the published two lines
    np.testing.assert_allclose(normalizer(clips[1]), expected, rtol=1e-5, atol=1e-6)
    restored = Normalizer(**normalizer.to_dict())
    np.testing.assert_array_equal(restored(clips[0]), normalizer(clips[0]))
    with pytest.raises(ValueError, match="dataset_global normalization needs mean and std"):
        Normalizer("dataset_global")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_builds_batches_with_threads_of_its_own():
    clips, labels = _clips(8), np.arange(8) % 3
    batches = ClipBatches([clips], labels, 3, 4, [Normalizer("scale")])
    expected = PrefetchedBatches(batches, 2)[1][0]
    # the parent's pool of 2 has both its threads, idle: a pool copied into the child would
    # count them and start none
    for future in [_builders(2).submit(time.sleep, 0.2) for _ in range(2)]:
        future.result()
    child = os.fork()
    if child == 0:  # the child: exit 0 only if its feed builds the batch
        try:
            prefetched = PrefetchedBatches(batches, 2)
            prefetched.on_epoch_begin()
            os._exit(0 if np.array_equal(prefetched[1][0], expected) else 1)
        finally:
            os._exit(2)
    for _ in range(600):  # up to 30 s
        done, status = os.waitpid(child, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(child, 9)
    os.waitpid(child, 0)
    pytest.fail("the forked child's batches were never built")

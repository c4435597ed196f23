"""Streaming batches of uint8 clips for Keras, normalised on the fly in float32.

This is the one data module that imports Keras: the batch sequence is a `keras.utils.PyDataset`,
so it feeds `fit`/`predict` on every backend without a TensorFlow input pipeline.
"""

from __future__ import annotations

import ctypes
import functools
import math
import mmap
import os
import platform
import random
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import keras
import numpy as np

from mer.config import DataConfig
from mer.data.inputs import input_specs

NORMALIZATIONS = ("per_clip", "temporal", "train_fold", "scale", "dataset_global", "none")
MEASURED = ("train_fold", "dataset_global")  # the modes whose statistics come from clips


_SCRATCH = threading.local()  # one float32 work array per thread that builds batches


def _standard_deviation(values: np.ndarray, mean: np.float32) -> np.float32:
    """`values.std()` to the last bit, given `values.mean()` (the same sums numpy's std
    takes), computed in a work array kept per thread instead of a new temporary per call."""
    scratch = getattr(_SCRATCH, "array", None)
    if scratch is None or scratch.shape != values.shape:
        scratch = _SCRATCH.array = np.empty(values.shape, np.float32)
    np.subtract(values, mean, out=scratch)
    np.square(scratch, out=scratch)
    return np.sqrt(scratch.mean())


class Normalizer:
    """Maps a uint8 clip to float32 model input.

    - "none": the values as float32 (inputs that their maker scales already, such as flow);
    - "scale": x / 255;
    - "per_clip": zero mean, unit variance over the clip itself (uses no other clip);
    - "temporal": each pixel minus its mean over the clip's frames, scaled to unit variance:
      the static face is removed and the movement remains (also uses no other clip);
    - "train_fold": per-channel mean and std measured on the training clips of the fold only
      (see `fit`); the held-out subject never contributes;
    - "dataset_global": the published code's: minus one scalar mean, divided by the largest
      value left, both over every clip of the dataset, test subjects included (optimistic:
      the caller fits it on all clips, and runs are labelled so).
    """

    def __init__(
        self, mode: str, mean: Sequence[float] | None = None, std: Sequence[float] | None = None
    ):
        if mode not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {mode!r}")
        if mode in MEASURED and (mean is None or std is None):
            raise ValueError(f"{mode} normalization needs mean and std; use Normalizer.fit")
        self.mode = mode
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float32)
        self.std = None if std is None else np.asarray(std, dtype=np.float32)

    @classmethod
    def fit(cls, mode: str, clips: Sequence[np.ndarray]) -> Normalizer:
        """A normalizer for `mode`, measuring its statistics on `clips` when it needs them."""
        if mode not in MEASURED:
            return cls(mode)
        if not clips:
            raise ValueError(f"{mode} normalization needs at least one clip")
        if mode == "dataset_global":
            return cls._fit_global(clips)
        channels = clips[0].shape[-1]
        total = np.zeros(channels, np.float64)
        squares = np.zeros(channels, np.float64)
        count = 0
        for clip in clips:  # streamed: one clip in float at a time
            values = np.asarray(clip, dtype=np.float32).reshape(-1, channels)
            total += values.sum(axis=0, dtype=np.float64)
            squares += np.square(values, dtype=np.float64).sum(axis=0)
            count += values.shape[0]
        mean = total / count
        std = np.sqrt(np.maximum(squares / count - mean**2, 0.0)) + 1e-6
        return cls(mode, mean, std)

    @classmethod
    def _fit_global(cls, clips: Sequence[np.ndarray]) -> Normalizer:
        """One scalar mean over every value, then the largest value minus it as the scale."""
        total = sum(np.asarray(clip).sum(dtype=np.float64) for clip in clips)
        mean = total / sum(np.asarray(clip).size for clip in clips)
        largest = max(float(np.asarray(clip).max()) for clip in clips)
        return cls("dataset_global", [mean], [max(largest - mean, 1e-6)])

    def __call__(self, clip: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The float32 input of `clip`; with `out` (float32, the clip's shape), written there.

        `out` is how a batch is built: each clip is normalised in place in its row of the
        batch, the same operations on the same values (so the same floats) with no clip-sized
        temporary. Temporaries cost more than their arithmetic here: once TensorFlow has set
        its malloc trim threshold, each one is a fresh mapping, whose pages fault in and whose
        unmapping flushes the other threads' TLBs.
        """
        if out is None:
            out = np.empty(clip.shape, np.float32)
        np.copyto(out, clip, casting="unsafe")
        if self.mode == "none":
            return out
        if self.mode == "scale":
            out /= np.float32(255.0)
        elif self.mode == "per_clip":
            mean = out.mean()
            deviation = _standard_deviation(out, mean)
            out -= mean
            out /= deviation + np.float32(1e-6)
        elif self.mode == "temporal":
            out -= out.mean(axis=0, keepdims=True)
            out /= _standard_deviation(out, out.mean()) + np.float32(1e-6)
        else:
            out -= self.mean
            out /= self.std
        return out

    def to_dict(self) -> dict:
        """The parameters, as saved beside a model."""
        return {
            "mode": self.mode,
            "mean": None if self.mean is None else self.mean.tolist(),
            "std": None if self.std is None else self.std.tolist(),
        }


def fit_normalizers(data: DataConfig, streams: Sequence[Sequence[np.ndarray]]) -> list[Normalizer]:
    """One normaliser per configured input, fitted on `streams` where its mode measures: the
    input's own mode (flow is scaled by its maker) or data.normalization."""
    specs = input_specs(data)
    if len(specs) != len(streams):
        raise ValueError(f"{len(streams)} streams for the {len(specs)} inputs {data.input_names()}")
    return [
        Normalizer.fit(spec.normalization or data.normalization, stream)
        for spec, stream in zip(specs, streams, strict=True)
    ]


def release_pages(clip: np.ndarray) -> None:
    """Drops the resident pages of a clip memory-mapped from the cache once it has been read.

    The pages stay in the operating system's file cache, so the next read is as fast, but they
    stop counting towards this process's resident memory: training on hundreds of clips then
    needs the memory of a batch, not of the dataset. Arrays not backed by a file are left alone.
    """
    base = clip
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "base", None)
    if base is not None and not base.closed:
        base.madvise(mmap.MADV_DONTNEED)


# glibc's mallopt parameters (malloc.h) and the values that keep a batch's memory for the next.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
BATCH_MMAP_THRESHOLD = 64 * 2**20  # a float32 batch of 8x10x128x128x3 is 15.7 MB
BATCH_TRIM_THRESHOLD = 256 * 2**20


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (Linux), else None."""
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def keep_batch_memory() -> None:
    """Lets glibc reuse a freed batch's memory for the next batch instead of mapping it afresh.

    TensorFlow's generator dataset sets glibc's trim threshold (128 kB) when its first
    iterator starts, and setting it also freezes the mmap threshold (128 kB in a fresh
    process): every batch array then became a new mapping, faulted in page by page and
    unmapped when freed, and in some epochs one of the two input threads spent 130-150 ms in
    the kernel against 10-20 ms (8 batches of 8 clips of 10x128x128x3). Raising both
    thresholds keeps the memory in the heap. Called for every batch, since TensorFlow's
    setting (once a process, at its first generator iterator) may come after the first
    batches are built, by the feed's threads or another dataset; a call costs about half a
    microsecond. Does nothing off glibc.
    """
    libc = _glibc()
    if libc is None:
        return
    libc.mallopt(M_MMAP_THRESHOLD, BATCH_MMAP_THRESHOLD)
    libc.mallopt(M_TRIM_THRESHOLD, BATCH_TRIM_THRESHOLD)


class ClipBatches(keras.utils.PyDataset):
    """Batches of (clips, one-hot labels), built from uint8 arrays one batch at a time; with
    `targets`, of (clips, (one-hot labels, targets)), for a model whose second output trains
    on them (FMER's AU logits).

    Args:
        streams: one list of clips per model input (the AU model has two), same length each.
        labels: class index per clip, or None for prediction.
        num_classes: width of the one-hot labels.
        batch_size: clips per batch; the last batch may be smaller.
        normalizers: uint8 clip -> float32 input, one per stream.
        shuffle: reshuffle the order every epoch, from `seed` (deterministic).
        seed: shuffling seed.
        targets: (clips, k) float32 targets of the second output, one row per clip; only
            with labels.

    `feed` gives them to fit and predict, built ahead by threads of our own.
    """

    def __init__(
        self,
        streams: Sequence[Sequence[np.ndarray]],
        labels: np.ndarray | None,
        num_classes: int,
        batch_size: int,
        normalizers: Sequence[Normalizer],
        *,
        shuffle: bool = False,
        seed: int = 0,
        targets: np.ndarray | None = None,
    ):
        super().__init__()
        lengths = {len(stream) for stream in streams}
        if len(lengths) != 1 or 0 in lengths:
            raise ValueError(
                f"streams must be non-empty and of equal length, got {sorted(lengths)}"
            )
        if labels is not None and len(labels) != len(streams[0]):
            raise ValueError(f"{len(labels)} labels for {len(streams[0])} clips")
        if targets is not None and (labels is None or len(targets) != len(labels)):
            count = "no labels" if labels is None else f"{len(labels)} labels"
            raise ValueError(f"{len(targets)} rows of targets for {count}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size!r}")
        self.streams = streams
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        self.targets = None if targets is None else np.asarray(targets, dtype=np.float32)
        self.num_classes = num_classes
        self.batch_size = batch_size
        if len(normalizers) != len(streams):
            raise ValueError(f"{len(normalizers)} normalizers for {len(streams)} streams")
        self.normalizers = normalizers
        self.shuffle = shuffle
        self.random = np.random.default_rng(seed)
        self.order = np.arange(len(streams[0]))
        if shuffle:
            self.random.shuffle(self.order)

    def __len__(self) -> int:
        return math.ceil(len(self.order) / self.batch_size)

    def __getitem__(self, index: int):
        keep_batch_memory()
        chosen = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        inputs = []  # each (batch, frames, height, width, channels) float32
        for stream, normalizer in zip(self.streams, self.normalizers, strict=True):
            batch = np.empty((len(chosen), *stream[chosen[0]].shape), np.float32)
            for row, item in zip(batch, chosen, strict=True):
                normalizer(stream[item], out=row)
            inputs.append(batch)
        for stream in self.streams:
            for item in chosen:
                release_pages(stream[item])
        inputs = inputs[0] if len(inputs) == 1 else tuple(inputs)
        if self.labels is None:
            return (inputs,)
        classes = np.eye(self.num_classes, dtype=np.float32)[self.labels[chosen]]
        if self.targets is None:
            return inputs, classes
        return inputs, (classes, self.targets[chosen])

    def on_epoch_end(self) -> None:
        if self.shuffle:
            self.random.shuffle(self.order)


AHEAD = 2  # batches built ahead of the one the model takes, as Keras's queue held at most


@functools.cache
def _builders(threads: int) -> ThreadPoolExecutor:
    """One pool per thread count for the whole process: feeds come and go with every fold."""
    return ThreadPoolExecutor(threads, thread_name_prefix="mer-batches")


# a forked child has none of the parent's threads: it starts pools of its own
os.register_at_fork(after_in_child=_builders.cache_clear)


class PrefetchedBatches(keras.utils.PyDataset):
    """The batches of `batches` in each epoch's order, the next AHEAD of them built by
    `workers` threads while the model trains on one.

    It replaces Keras's thread queue (a PyDataset with workers > 1), which waits 0.1 s at the
    end of every epoch and every predict, when it stops: it drains its queue with that
    timeout (5.4 s of the demo's 71-73 s on a 2-core Zen 4 EPYC; 23 minutes at paper
    settings). With `shuffle`, each epoch's batch order is drawn as Keras's fit(shuffle=True)
    draws it, `random.shuffle` of the batch indices from Python's `random` (which the run's
    seed sets), so the batches and their order are the ones Keras gives from the PyDataset
    itself (on TensorFlow also the ones its queue gave). Keras must not shuffle again: fit
    takes it with shuffle=False.
    """

    def __init__(self, batches: keras.utils.PyDataset, workers: int, *, shuffle: bool = False):
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers!r}")
        super().__init__()  # PyDataset's one worker: Keras builds no queue of its own
        self.batches = batches
        self.threads = workers
        self.shuffle = shuffle
        self.order = list(range(len(batches)))
        self.pending: dict[int, Future] = {}

    def __len__(self) -> int:
        return len(self.batches)

    def _request(self, positions: range) -> None:
        for position in positions:
            if position not in self.pending:
                index = self.order[position]
                self.pending[position] = _builders(self.threads).submit(
                    self.batches.__getitem__, index
                )

    def _drop_pending(self) -> None:
        for future in self.pending.values():
            if not future.cancel():
                future.exception()  # wait: it reads the order that is about to change
        self.pending.clear()

    def __getitem__(self, position: int):
        future = self.pending.pop(position, None)
        self._request(range(position + 1, min(position + 1 + AHEAD, len(self))))
        if future is None:  # not the next one (a shape probe before fit): built here
            return self.batches[self.order[position]]
        return future.result()

    def on_epoch_begin(self) -> None:
        self._drop_pending()
        self.order = list(range(len(self.batches)))
        if self.shuffle:
            random.shuffle(self.order)
        self._request(range(min(AHEAD, len(self))))

    def on_epoch_end(self) -> None:
        self._drop_pending()
        self.batches.on_epoch_end()


def feed(batches: keras.utils.PyDataset, workers: int, *, shuffle: bool = False):
    """What fit, evaluate and predict take for `batches`: a PrefetchedBatches; on TensorFlow,
    a tf.data dataset of its epochs without tf.data's autotuned prefetch, as Keras feeds its
    own queue (with one worker Keras's TensorFlow trainer adds that prefetch, whose new
    iterator stalled at the end of a third of the fits, 0.6-0.8 s after the last step, on a
    2-core Xeon)."""
    prefetched = PrefetchedBatches(batches, workers, shuffle=shuffle)
    if keras.backend.backend() != "tensorflow":
        return prefetched
    import tensorflow as tf  # the input pipeline only

    def epoch():
        # A new iterator, so a new call, each epoch. Keras ends a PyDataset's epoch before the
        # first too (fit's EpochIterator.reset: ClipBatches reshuffles), and a dataset's
        # never; it takes len(batches) batches, never reaching the end here: so the epoch
        # before ends here, as the reset before the first.
        prefetched.on_epoch_end()
        prefetched.on_epoch_begin()
        for position in range(len(prefetched)):
            yield prefetched[position]

    signature = tf.nest.map_structure(
        lambda array: tf.TensorSpec((None, *array.shape[1:]), array.dtype), batches[0]
    )
    dataset = tf.data.Dataset.from_generator(epoch, output_signature=signature)
    options = tf.data.Options()
    options.autotune.enabled = False
    options.threading.private_threadpool_size = 1
    cardinality = tf.data.experimental.assert_cardinality(len(prefetched))
    return dataset.with_options(options).apply(cardinality)

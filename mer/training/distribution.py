"""Data-parallel training of one fold on every local accelerator (`train.distribution`).

`data_parallel` copies the model onto each device and splits every batch between them, so
`train.batch_size` is the global batch (each of N devices gets batch_size / N clips):

- JAX: Keras's distribution API, `keras.distribution.DataParallel` over
  `keras.distribution.list_devices()` (the GPUs, else the CPU devices).
- TensorFlow: `tf.distribute.MirroredStrategy` over the logical GPUs, else the logical CPUs.
- PyTorch: not supported (a config error).

The scope must be entered after `keras.backend.clear_session()` (which forgets the current
distribution and resets TensorFlow's graph) and held while the model is built, compiled, trained
and run; `mer.training.loso.train_fold` does exactly that. Results on several devices are not
bit-identical to one device: the gradient is summed in another order.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import keras
import numpy as np

from mer.config import ConfigError, ExperimentConfig

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def distribution_scope(config: ExperimentConfig) -> Iterator[int]:
    """Makes the configured distribution current for the duration of the block.

    Args:
        config: the experiment config; `train.distribution` chooses.

    Yields:
        The number of devices a batch is split over (1 without a distribution).

    Raises:
        ConfigError: data_parallel on a backend without a data-parallel path (PyTorch).
    """
    if config.train.distribution == "none":
        yield 1
        return
    backend = keras.backend.backend()
    if backend == "jax":
        devices = keras.distribution.list_devices()
        _warn_if_single(devices)
        with keras.distribution.DataParallel(devices=devices).scope():
            yield len(devices)
    elif backend == "tensorflow":
        import tensorflow as tf  # the TensorFlow backend's own strategy

        logical = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        devices = [device.name for device in logical]
        _warn_if_single(devices)
        with tf.distribute.MirroredStrategy(devices).scope():
            yield len(devices)
    else:
        raise ConfigError(
            f"train.distribution=data_parallel needs the JAX or TensorFlow backend, not {backend!r}"
        )


def _warn_if_single(devices: list[str]) -> None:
    if len(devices) < 2:
        logger.warning(
            "train.distribution=data_parallel with one device (%s): nothing to split",
            ", ".join(devices),
        )
    else:
        logger.info("data-parallel training over %d devices: %s", len(devices), devices)


def even_batches(
    batches: keras.utils.PyDataset, replicas: int, *, training: bool = False
) -> keras.utils.PyDataset:
    """`batches` made to split evenly over `replicas` devices.

    JAX shards every batch into equal parts, so a batch of 5 clips cannot go to 2 devices;
    TensorFlow's MirroredStrategy splits uneven batches but fails on a device left with no clip
    (a last batch of 1 on 2 devices). Both get batches whose size is a multiple of `replicas`.

    Args:
        batches: a `ClipBatches` (it has `batch_size` and `order`).
        replicas: devices per batch, as `distribution_scope` yields.
        training: drop the last clips of an uneven batch (the order is reshuffled every
            epoch, so no clip is always left out); otherwise repeat the batch's last clip,
            which adds rows at the end of the outputs: keep the first `len(order)`.
    """
    if replicas == 1:
        return batches
    if batches.batch_size < replicas:
        raise ConfigError(
            f"train.batch_size ({batches.batch_size}) must be at least the number of devices "
            f"({replicas}) with train.distribution=data_parallel"
        )
    return _EvenBatches(batches, replicas, training)


class _EvenBatches(keras.utils.PyDataset):
    """See `even_batches`."""

    def __init__(self, batches: keras.utils.PyDataset, replicas: int, training: bool):
        super().__init__()
        self.batches = batches
        self.replicas = replicas
        self.training = training
        last = len(batches.order) - (len(batches) - 1) * batches.batch_size
        self.length = len(batches) - (1 if training and last < replicas else 0)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        parts = self.batches[index]  # (inputs,) or (inputs, targets); inputs a tuple per stream
        arrays = [*(parts[0] if isinstance(parts[0], tuple) else (parts[0],)), *parts[1:]]
        size = len(arrays[0])
        even = -(-size // self.replicas) * self.replicas  # the next multiple of replicas
        if self.training:
            even = size // self.replicas * self.replicas
            arrays = [array[:even] for array in arrays]
        elif even != size:
            padding = even - size
            arrays = [np.concatenate([array, array[-1:].repeat(padding, 0)]) for array in arrays]
        streams = len(arrays) - (len(parts) - 1)
        inputs = tuple(arrays[:streams]) if isinstance(parts[0], tuple) else arrays[0]
        return (inputs, *arrays[streams:])

    def on_epoch_end(self) -> None:
        self.batches.on_epoch_end()

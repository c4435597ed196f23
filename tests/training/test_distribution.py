"""`train.distribution=data_parallel`: one fold trained over two virtual CPU devices, on JAX
(keras.distribution.DataParallel) and on TensorFlow (MirroredStrategy), each in a subprocess
(devices are fixed when a backend starts); and the even batches that both need."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from mer.config import PROJECT_ROOT, ConfigError, load_config
from mer.data.batches import ClipBatches, Normalizer
from mer.training.distribution import distribution_scope, even_batches

# One fold: 5 training clips in batches of 4 and 1 (the 1 cannot be split: dropped), 3 test
# clips (padded to 4, the extra output cut). A flat tiny model keeps JAX's compile short.
FOLD_ON_TWO_DEVICES = """
import json, os, pathlib, sys, tempfile
if os.environ["KERAS_BACKEND"] == "tensorflow":
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import numpy as np
from mer.config import load_config
from mer.training import loso
from tests.test_end_to_end import TINY
from tests.test_scale_out import FLAT

models = []
build = loso.build_model
loso.build_model = lambda *args, **kwargs: models.append(build(*args, **kwargs)) or models[-1]
config = load_config(None, TINY + FLAT + ["train.distribution=data_parallel"])
random = np.random.default_rng(0)
clips = [random.integers(0, 255, (4, 16, 16, 3), dtype=np.uint8) for _ in range(8)]
fold = loso.Fold("s3", 2, np.arange(5), np.array([], dtype=int), np.arange(5, 8))
with tempfile.TemporaryDirectory() as scratch:
    result = loso.train_fold(fold, [clips], np.arange(8) % 3, config, pathlib.Path(scratch))
    history = json.loads((pathlib.Path(scratch) / "history.json").read_text())
(model,) = models
if os.environ["KERAS_BACKEND"] == "jax":  # each variable lives on both devices
    devices = len(model.trainable_variables[0].value.sharding.device_set)
else:
    devices = model.distribute_strategy.num_replicas_in_sync
print(json.dumps({"devices": devices, "probabilities": result.probabilities.tolist(),
                  "loss": history["loss"]}))
"""


def test_a_fold_trains_data_parallel_on_two_virtual_devices():
    environments = {
        "jax": {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
        "tensorflow": {},
    }
    processes = {  # both at once: most of each is start-up
        backend: subprocess.Popen(
            [sys.executable, "-c", FOLD_ON_TWO_DEVICES],
            cwd=PROJECT_ROOT,
            env={**os.environ, "KERAS_BACKEND": backend, **extra},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for backend, extra in environments.items()
    }
    for backend, process in processes.items():
        output, error = process.communicate(timeout=300)
        assert process.returncode == 0, f"{backend}: {error[-3000:]}"
        result = json.loads(output.strip().splitlines()[-1])
        assert result["devices"] == 2, backend
        probabilities = np.array(result["probabilities"])
        assert probabilities.shape == (3, 3), backend  # the padding row cut off
        assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-5), backend
        assert np.isfinite(result["loss"]).all(), backend


def _batches(clips: int, batch_size: int, labels: bool = True) -> ClipBatches:
    stream = [np.full((2, 2, 2, 1), index, dtype=np.uint8) for index in range(clips)]
    return ClipBatches(
        [stream],
        np.arange(clips) % 2 if labels else None,
        2,
        batch_size,
        [Normalizer("scale")],
    )


def test_even_batches_drop_in_training_and_pad_otherwise():
    training = even_batches(_batches(7, 4), 2, training=True)  # 4 + 3 -> 4 + 2
    assert len(training) == 2
    assert [len(training[index][0]) for index in range(2)] == [4, 2]
    assert len(training[1][1]) == 2  # labels trimmed with their clips
    assert len(even_batches(_batches(5, 4), 2, training=True)) == 1  # a last batch of 1: gone

    predicting = even_batches(_batches(7, 4, labels=False), 2)  # 4 + 3 -> 4 + 4
    (inputs,) = predicting[1]
    assert inputs.shape[0] == 4
    assert (inputs[:, 0, 0, 0, 0] * 255).round().tolist() == [4, 5, 6, 6]  # the last repeated

    unchanged = _batches(7, 4)
    assert even_batches(unchanged, 1, training=True) is unchanged
    with pytest.raises(ConfigError, match=r"batch_size \(4\) must be at least .* \(8\)"):
        even_batches(unchanged, 8)


def test_no_distribution_and_unsupported_backends(monkeypatch):
    with distribution_scope(load_config()) as replicas:
        assert replicas == 1
    config = load_config(None, ["train.distribution=data_parallel"])
    monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
    with pytest.raises(ConfigError, match="JAX or TensorFlow backend, not 'torch'"):
        with distribution_scope(config):
            pass

"""`train.distribution=data_parallel` on two virtual CPU devices, on JAX
(keras.distribution.DataParallel) and on TensorFlow (MirroredStrategy), each in a subprocess
(devices are fixed when a backend starts): one training step equals the single-device step, a
fold trains and predicts, the final model gets even batches; and the even batches themselves."""

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

# In one process per backend, with two devices and a flat tiny model (JAX's compiles stay short):
# - a fold of 4 training clips (one batch of 4, split 2 + 2) and 3 test clips (padded to 4, the
#   extra output cut), dropout 0, trained 1 epoch on one device and on both, from the same
#   initial weights;
# - the final model on 5 clips in batches of 4 and 1 (the 1 cannot be split: it must be dropped).
ON_TWO_DEVICES = """
import json, os, pathlib, tempfile
if os.environ["KERAS_BACKEND"] == "tensorflow":
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
import numpy as np
from mer.config import load_config
from mer.training import final, loso
from tests.test_end_to_end import FLAT, TINY

models, initial, fitted = [], [], []
build = loso.build_model

def build_from_initial(*args, **kwargs):
    # Every fold model starts from the first one's weights.
    model = build(*args, **kwargs)
    if initial:
        model.set_weights(initial)
    else:
        initial.extend(model.get_weights())
    models.append(model)
    return model

feed = final.feed

def feed_spied(batches, *args, **kwargs):
    # The final model's batches, recording the sizes its fit receives.
    fitted.extend(len(batches[index][1]) for index in range(len(batches)))
    return feed(batches, *args, **kwargs)

def numpy(variables):
    return [keras.ops.convert_to_numpy(variable.value) for variable in variables]

def largest_difference(first, second):
    return max(float(np.abs(a - b).max()) for a, b in zip(first, second, strict=True))

loso.build_model = build_from_initial
final.feed = feed_spied
random = np.random.default_rng(0)
clips = [random.integers(0, 255, (4, 16, 16, 3), dtype=np.uint8) for _ in range(7)]
labels = np.arange(7) % 3
fold = loso.Fold("s1", 0, np.arange(4), np.array([], dtype=int), np.arange(4, 7))
results = []
with tempfile.TemporaryDirectory() as scratch:
    for distribution in ("none", "data_parallel"):
        config = load_config(None, TINY + FLAT + ["model.dropout=0",
                                                  f"train.distribution={distribution}"])
        results.append(loso.train_fold(fold, [clips], labels, config, pathlib.Path(scratch)))
    final.train_final_model([clips[:5]], labels[:5], config, pathlib.Path(scratch), subjects=2)
single, parallel = models
if os.environ["KERAS_BACKEND"] == "jax":  # each variable lives on both devices
    devices = len(parallel.trainable_variables[0].value.sharding.device_set)
else:
    devices = parallel.distribute_strategy.num_replicas_in_sync
print(json.dumps({
    "devices": devices,
    "probabilities": results[1].probabilities.tolist(),
    "loss": results[1].history["loss"],
    "steps": [int(numpy([model.optimizer.iterations])[0]) for model in models],
    "moved": largest_difference(single.get_weights(), initial),
    "weights_difference": largest_difference(single.get_weights(), parallel.get_weights()),
    "optimizer_difference": largest_difference(
        *(numpy(model.optimizer.variables) for model in models)
    ),
    "final_batches": fitted,
}))
"""


@pytest.mark.slow
def test_data_parallel_on_two_virtual_devices_equals_one_device():
    environments = {
        "jax": {  # two CPU devices; a third less compile time, for a model this small
            "XLA_FLAGS": "--xla_force_host_platform_device_count=2 "
            "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
        },
        "tensorflow": {},
    }
    processes = {  # both at once: most of each is start-up
        backend: subprocess.Popen(
            [sys.executable, "-c", ON_TWO_DEVICES],
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
        assert result["steps"] == [1, 1], backend  # one step each, on one device and on two
        assert result["moved"] > 1e-4, backend  # the step changed the weights (Adam: ~1e-3)
        assert result["weights_difference"] < 1e-5, (backend, result["weights_difference"])
        # Adam's moments are the gradient and its square: a gradient summed over the devices
        # instead of averaged would move the weights alike but show here.
        assert result["optimizer_difference"] < 1e-5, (backend, result["optimizer_difference"])
        assert result["devices"] == 2, backend
        probabilities = np.array(result["probabilities"])
        assert probabilities.shape == (3, 3), backend  # the padding row cut off
        assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-5), backend
        assert np.isfinite(result["loss"]).all(), backend
        assert result["final_batches"] == [4], backend  # 4 + 1 clips: the 1 is dropped


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

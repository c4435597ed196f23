"""Dual-ATME: the authors' parameter counts, the layers against NumPy, the focal + cosine loss,
config round trips, training, save/load and the JAX backend."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from mer.models.dual_atme import (
    CBAM2D,
    DEFAULTS,
    Inception2D,
    SimilarityFusion,
    build_dual_atme_model,
    focal_loss,
)
from mer.training.schedules import step_decay

RANDOM = np.random.default_rng(0)
# 8x8 inputs -> 8x8x8 -> 4x4x8 -> 4x4x16 -> 2x2x16: embeddings of 64
TINY = dict(inception_filters=(2, 4), cbam_reduction=4, dense_units=8)
TINY_SHAPES = [(8, 8, 3), (8, 8, 3)]


def _trainable(layer) -> int:
    return sum(int(np.prod(weight.shape)) for weight in layer.trainable_weights)


def _inputs():
    """A batch of 4 for the two TINY inputs, in [-1, 1] as the flow images are."""
    return tuple(RANDOM.uniform(-1, 1, size=(4, 8, 8, 3)).astype("float32") for _ in range(2))


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def test_parameter_counts_are_the_authors():
    """The numbers of the authors' PyTorch modules (instantiated to check), at 3 classes."""
    for attention_on in ("aars", "both"):  # both branches reuse the one CBAM: no new weights
        model = build_dual_atme_model([(28, 28, 3)] * 2, 3, attention_on=attention_on)
        assert _trainable(model) == 4_833_193
        non_trainable = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
        assert non_trainable == 2_432  # BatchNormalization moving statistics
        assert model.count_params() == 4_835_625
    for stream in ("aars", "hars"):
        assert _trainable(model.get_layer(f"{stream}_inception1")) == 1_404
        assert _trainable(model.get_layer(f"{stream}_inception2")) == 3_492
        assert tuple(model.get_layer(f"{stream}_inception2").output.shape[1:]) == (14, 14, 48)
        assert tuple(model.get_layer(f"{stream}_embedding").output.shape[1:]) == (2_352,)
    assert _trainable(model.get_layer("cbam")) == 358
    head = ("head_dense", "head_batch_norm", "logits")
    assert sum(_trainable(model.get_layer(name)) for name in head) == 4_823_043
    assert tuple(model.get_layer("fusion").output.shape[1:]) == (4_704,)
    assert [tensor.name for tensor in model.inputs] == ["aars", "hars"]
    blocks = [layer for layer in model.layers if isinstance(layer, Inception2D)]
    batch_norms = [model.get_layer("head_batch_norm")] + [
        sublayer for block in blocks for path in block.paths for sublayer in path
        if isinstance(sublayer, keras.layers.BatchNormalization)
    ]
    assert len(batch_norms) == 2 * (6 + 6) + 1  # six per Inception block, one in the head
    assert {(layer.momentum, layer.epsilon) for layer in batch_norms} == {(0.9, 1e-5)}


def _conv_same(x, kernel, bias):
    size = kernel.shape[0]
    pad = size // 2
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    windows = sliding_window_view(padded, (size, size), axis=(1, 2))  # (b, H, W, C, k, k)
    return np.einsum("bhwcij,ijco->bhwo", windows, kernel) + bias


def _max_pool_same(x):
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
    return sliding_window_view(padded, (3, 3), axis=(1, 2)).max(axis=(-2, -1))


def test_inception_matches_numpy_in_inference():
    x = RANDOM.normal(size=(2, 6, 6, 3)).astype("float32")
    layer = Inception2D(filters=2, bottleneck_filters=3, epsilon=0.1)
    layer.build(x.shape)
    for path in layer.paths:  # moving statistics away from 0 and 1, so that BN shows
        for sublayer in path:
            if isinstance(sublayer, keras.layers.BatchNormalization):
                gamma, beta, mean, variance = (np.asarray(w) for w in sublayer.weights)
                sublayer.set_weights([gamma + 0.5, beta + 0.2, mean + 0.3, variance + 1.0])

    def unit(tensor, conv, batch_norm):
        kernel, bias = (np.asarray(w) for w in conv.weights)
        gamma, beta, mean, variance = (np.asarray(w) for w in batch_norm.weights)
        normalised = (_conv_same(tensor, kernel, bias) - mean) / np.sqrt(variance + 0.1)
        return np.maximum(normalised * gamma + beta, 0)

    direct, three, five, pool = layer.paths
    expected = np.concatenate(
        [
            unit(x, *direct[:2]),
            unit(unit(x, *three[:2]), *three[3:5]),
            unit(unit(x, *five[:2]), *five[3:5]),
            unit(_max_pool_same(x), *pool[1:3]),
        ],
        axis=-1,
    )
    result = np.asarray(layer(x, training=False))
    assert result.shape == (2, 6, 6, 8)
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-5)


def test_cbam_matches_numpy():
    x = RANDOM.normal(size=(2, 5, 5, 8)).astype("float32")
    layer = CBAM2D(reduction=4, kernel_size=3)
    result = np.asarray(layer(x))
    hidden_kernel, hidden_bias = (np.asarray(w) for w in layer.mlp_hidden.weights)
    output_kernel, output_bias = (np.asarray(w) for w in layer.mlp_output.weights)
    assert hidden_kernel.shape == (8, 2)

    def mlp(pooled):
        return np.maximum(pooled @ hidden_kernel + hidden_bias, 0) @ output_kernel + output_bias

    channel = _sigmoid(mlp(x.mean(axis=(1, 2))) + mlp(x.max(axis=(1, 2))))
    attended = x * channel[:, None, None, :]
    descriptors = np.concatenate(
        [attended.mean(-1, keepdims=True), attended.max(-1, keepdims=True)], axis=-1
    )  # mean first, then max, as the authors concatenate them
    kernel, bias = (np.asarray(w) for w in layer.spatial_conv.weights)
    expected = attended * _sigmoid(_conv_same(descriptors, kernel, bias))
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-5)


def test_forward_flops_by_hand():
    inception = Inception2D(6)
    inception.build((None, 28, 28, 3))
    # kernels 1x1x3x6 (x3), 3x3x6x6, 5x5x6x6 and 1x1x3x6 of the 3x3 and 5x5 reductions
    assert inception.forward_flops((None, 28, 28, 3)) == 2 * (4 * 18 + 324 + 900) * 28 * 28
    cbam = CBAM2D()
    cbam.build((None, 7, 7, 48))
    assert cbam.forward_flops((None, 7, 7, 48)) == 2 * (2 * 2 * 48 * 3 + 9 * 2 * 49)


def test_focal_loss_against_numpy():
    labels = np.eye(3)[[0, 1, 2, 2]]
    probabilities = np.array(
        [[0.7, 0.2, 0.1], [0.3, 0.3, 0.4], [0.05, 0.05, 0.9], [0.5, 0.5, 0.0]], "float32"
    )  # the last sample gives its class probability 0: the log must stay finite
    p_true = np.maximum((labels * probabilities).sum(-1), 1e-7)
    expected = np.mean(-((1 - p_true) ** 2) * np.log(p_true))
    result = float(focal_loss()(labels, probabilities))
    assert np.isfinite(result)
    np.testing.assert_allclose(result, expected, rtol=1e-5)
    gamma_zero = float(focal_loss(gamma=0.0)(labels, probabilities))
    np.testing.assert_allclose(gamma_zero, np.mean(-np.log(p_true)), rtol=1e-5)


def test_similarity_fusion_concatenates_and_adds_the_cosine_term():
    first = RANDOM.normal(size=(3, 5)).astype("float32")
    second = RANDOM.normal(size=(3, 5)).astype("float32")
    second[0] = 2 * first[0]  # cos 1: no disagreement for this sample
    layer = SimilarityFusion(cosine_weight=0.3)
    fused = np.asarray(layer([first, second]))
    np.testing.assert_array_equal(fused, np.concatenate([first, second], axis=-1))
    cosine = (first * second).sum(-1) / np.linalg.norm(first, axis=-1)
    cosine /= np.linalg.norm(second, axis=-1)
    assert len(layer.losses) == 1
    np.testing.assert_allclose(float(layer.losses[0]), 0.3 * np.mean(1 - cosine), rtol=1e-5)


def _focal_plus_cosine(labels, probabilities, first, second, cosine_weight):
    """The authors' loss by hand: focal (gamma 2, safe log) + weight * mean(1 - cos(x1, x2))."""
    p_true = np.maximum((labels * probabilities).sum(-1), 1e-7)
    focal = np.mean(-((1 - p_true) ** 2) * np.log(p_true))
    norms = np.linalg.norm(first, axis=-1) * np.linalg.norm(second, axis=-1)
    return focal + cosine_weight * np.mean(1 - (first * second).sum(-1) / norms)


def _probe(model):
    """The model's probabilities and its two embeddings x1, x2."""
    names = ("aars_embedding", "hars_embedding")
    return keras.Model(model.inputs, [model.output, *(model.get_layer(n).output for n in names)])


@pytest.mark.slow
def test_model_loss_is_focal_plus_cosine_term():
    """evaluate's loss = focal(labels, predict) + weight * mean(1 - cos(x1, x2)), from NumPy."""
    keras.utils.set_random_seed(3)
    model = build_dual_atme_model(TINY_SHAPES, 3, cosine_weight=0.5, **TINY)
    model.compile(loss=focal_loss())
    inputs = _inputs()
    labels = np.eye(3)[[0, 1, 2, 1]]
    outputs = [np.asarray(t) for t in _probe(model)(inputs, training=False)]
    loss = model.evaluate(inputs, labels, batch_size=4, verbose=0)
    np.testing.assert_allclose(loss, _focal_plus_cosine(labels, *outputs, 0.5), rtol=1e-5)


def test_attention_on_both_applies_the_one_cbam_to_hars_too():
    embeddings = {}
    for attention_on in ("aars", "both"):
        model = build_dual_atme_model(TINY_SHAPES, 3, attention_on=attention_on, **TINY)
        probe = keras.Model(
            model.inputs,
            [model.get_layer("hars_pool2").output, model.get_layer("hars_embedding").output],
        )
        pooled, embedding = (np.asarray(t) for t in probe(_inputs(), training=False))
        embeddings[attention_on] = (pooled.reshape(len(pooled), -1), embedding)
        assert len([layer for layer in model.layers if isinstance(layer, CBAM2D)]) == 1
    np.testing.assert_array_equal(*embeddings["aars"])  # HARS untouched by attention
    assert not np.allclose(*embeddings["both"])


def _train_once(model, weights, inputs, labels) -> list[bool]:
    """One fit step; whether each of `weights` changed."""
    before = [np.array(w) for w in weights]
    history = model.fit(inputs, labels, epochs=1, batch_size=len(labels), verbose=0)
    assert np.isfinite(history.history["loss"][0])
    return [not np.allclose(np.asarray(w), b) for w, b in zip(weights, before, strict=True)]


@pytest.mark.parametrize(
    "layer, shapes",
    [
        (Inception2D(filters=3, bottleneck_filters=2, momentum=0.8, epsilon=1e-3), [(6, 6, 2)]),
        (CBAM2D(reduction=2, kernel_size=5), [(6, 6, 4)]),
        (SimilarityFusion(cosine_weight=0.2), [(6,), (6,)]),
    ],
)
def test_config_round_trip_symbolic_eager_and_training(layer, shapes):
    keras.utils.set_random_seed(1)
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    inputs = [keras.Input(shape) for shape in shapes]
    arguments = inputs if len(inputs) > 1 else inputs[0]
    outputs = clone(arguments)
    arrays = [RANDOM.normal(size=(4, *shape)).astype("float32") for shape in shapes]
    arrays = arrays if len(arrays) > 1 else arrays[0]
    eager = clone(arrays)
    assert tuple(outputs.shape[1:]) == tuple(eager.shape[1:])
    flat = keras.layers.Flatten()(outputs)
    model = keras.Model(arguments, keras.layers.Dense(2, activation="softmax")(flat))
    model.compile("adam", "categorical_crossentropy", run_eagerly=True)  # no tracing: seconds
    head = model.layers[-1].trainable_weights  # SimilarityFusion has no weights of its own
    changed = _train_once(model, clone.trainable_weights + head, arrays, np.eye(2)[[0, 1, 0, 1]])
    assert all(changed)


@pytest.mark.slow
def test_model_trains_predicts_and_reloads(tmp_path):
    keras.utils.set_random_seed(2)
    model = build_dual_atme_model(
        TINY_SHAPES, 2, attention_on="both", dropout=0.25, cosine_weight=0.1, bottleneck_filters=3,
        cbam_kernel_size=5, momentum=0.5, epsilon=1e-3, name="tiny", **TINY
    )
    model.compile("adam", focal_loss(gamma=1.5), run_eagerly=True)  # graph: the loss test
    inputs, labels = _inputs(), np.eye(2)[[0, 1, 1, 0]]
    assert all(_train_once(model, model.trainable_weights, inputs, labels))  # all get gradients
    probabilities = model.predict(inputs, verbose=0)
    assert probabilities.shape == (4, 2)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, rtol=1e-5)
    path = tmp_path / "dual_atme.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(reloaded.predict(inputs, verbose=0), probabilities)
    assert reloaded.loss.get_config()["gamma"] == 1.5
    assert reloaded.get_layer("fusion").cosine_weight == 0.1


def test_defaults_halve_the_rate_every_ten_epochs():
    assert DEFAULTS.decay_epochs == (10, 20, 30, 40, 50)
    schedule = step_decay(DEFAULTS.learning_rate, DEFAULTS.decay_epochs, DEFAULTS.decay_factor)
    for epoch in range(DEFAULTS.epochs):  # PyTorch StepLR(step_size=10, gamma=0.5)
        assert schedule(epoch) == pytest.approx(1e-3 * 0.5 ** (epoch // 10))
    assert DEFAULTS.batch_size == 128


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(input_shapes=[(8, 8, 3)]), "input_shapes must be two"),
        (dict(num_classes=1), "num_classes must be an integer of at least 2, got 1"),
        (dict(attention_on="hars"), "attention_on must be one of ('aars', 'both'), got 'hars'"),
        (dict(inception_filters=()), "inception_filters must name at least one block, got ()"),
        (dict(inception_filters=(2, 0)), "filters must be a positive integer, got 0"),
        (dict(dense_units=0), "dense_units must be a positive integer, got 0"),
        (dict(dropout=1.0), "dropout must be in [0, 1), got 1.0"),
        (dict(cosine_weight=-0.1), "cosine_weight must be non-negative, got -0.1"),
        (dict(cbam_reduction=32), "channels (16) // reduction (32) must be at least 1"),
        (dict(input_shapes=[(8, 8, 3), (12, 12, 3)]), "must have the same width, got 64 and 144"),
        (dict(momentum=1.0), "momentum must be in [0, 1), got 1.0"),
    ],
)
def test_invalid_arguments(arguments, message):
    arguments = {"input_shapes": TINY_SHAPES, "num_classes": 3, **TINY, **arguments}
    with pytest.raises(ValueError) as error:
        build_dual_atme_model(**arguments)
    assert message in str(error.value)


def test_negative_focal_gamma_is_refused():
    with pytest.raises(ValueError, match="gamma must be non-negative, got -1"):
        focal_loss(gamma=-1)


JAX_SCRIPT = textwrap.dedent(
    """
    import sys, numpy as np, keras
    from mer.models.dual_atme import build_dual_atme_model, focal_loss
    assert keras.backend.backend() == "jax", keras.backend.backend()
    model = build_dual_atme_model([(8, 8, 3)] * 2, 3, attention_on="both", **{tiny})
    model.compile("adam", focal_loss())
    rng = np.random.default_rng(0)
    x = tuple(rng.uniform(-1, 1, size=(4, 8, 8, 3)).astype("float32") for _ in range(2))
    y = np.eye(3)[[0, 1, 2, 0]]
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    loss = model.evaluate(x, y, batch_size=4, verbose=0)
    names = ("aars_embedding", "hars_embedding")
    probe = keras.Model(model.inputs, [model.output, *(model.get_layer(n).output for n in names)])
    probabilities, first, second = probe.predict(x, verbose=0)
    np.savez(sys.argv[1], loss=loss, labels=y, count=model.count_params(),
             probabilities=probabilities, first=first, second=second)
    """
)


@pytest.mark.slow
def test_model_trains_under_jax(tmp_path):
    """Fit and evaluate under JAX, whose trainer collects the cosine term in a stateless scope."""
    pytest.importorskip("jax", reason="jax (in requirements.txt) is missing")
    environment = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        # a third less compile time on CPU, for a model this small
        "XLA_FLAGS": "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true",
    }
    result = tmp_path / "jax.npz"
    done = subprocess.run([sys.executable, "-c", JAX_SCRIPT.format(tiny=TINY), str(result)],
                          capture_output=True, text=True, env=environment, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    saved = np.load(result)
    expected = build_dual_atme_model(TINY_SHAPES, 3, attention_on="both", **TINY).count_params()
    assert int(saved["count"]) == expected
    np.testing.assert_allclose(
        float(saved["loss"]),
        _focal_plus_cosine(*(saved[key] for key in ("labels", "probabilities", "first", "second")),
                           0.01),
        rtol=1e-5,
    )

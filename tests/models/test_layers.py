"""The custom layers: maths against NumPy, config round trips, symbolic/eager calls, training."""

import keras
import numpy as np
import pytest

from mer.models.layers import ChannelAttention, MultiScaleMultiHeadAttention, SpatialAttention

RANDOM = np.random.default_rng(0)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _mlp(layers, x, slope=None):
    hidden, _, output = layers
    kernel, bias = (np.asarray(v) for v in hidden.weights)
    h = x @ kernel + bias
    h = np.where(h > 0, h, h * slope) if slope is not None else np.maximum(h, 0)
    kernel, bias = (np.asarray(v) for v in output.weights)
    return h @ kernel + bias


@pytest.mark.parametrize("mode", ["difference", "sum", "cbam"])
def test_channel_attention_matches_numpy(mode):
    x = RANDOM.normal(size=(2, 3, 4, 4, 16)).astype("float32")
    layer = ChannelAttention(reduction=4, mode=mode, negative_slope=0.1)
    result = np.asarray(layer(x))
    assert result.shape == (2, 1, 1, 1, 16)
    slope = None if mode == "cbam" else 0.1
    from_max = _mlp(layer.max_mlp, x.max(axis=(1, 2, 3)), slope)
    from_avg = _mlp(layer.avg_mlp, x.mean(axis=(1, 2, 3)), slope)
    logits = 0.5 * (from_max - from_avg) if mode == "difference" else from_max + from_avg
    np.testing.assert_allclose(result[:, 0, 0, 0], _sigmoid(logits), rtol=1e-5, atol=1e-6)


def test_channel_attention_parameters_per_mode():
    counts = {}
    for mode in ("difference", "sum", "cbam"):
        layer = ChannelAttention(mode=mode)
        layer.build((None, 2, 15, 15, 32))
        counts[mode] = layer.count_params()
    assert counts == {"difference": 584, "sum": 584, "cbam": 292}  # unshared vs shared MLP


def test_spatial_attention_matches_numpy():
    x = RANDOM.normal(size=(1, 3, 5, 5, 4)).astype("float32")
    layer = SpatialAttention(filters=2, kernel_size=1)
    result = np.asarray(layer(x))
    kernel, bias = (np.asarray(v) for v in layer.conv.weights)
    descriptors = np.concatenate([x.max(-1, keepdims=True), x.mean(-1, keepdims=True)], -1)
    expected = _sigmoid(descriptors @ kernel.reshape(2, 2) + bias)
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-6)


def test_msmh_matches_numpy():
    x = RANDOM.normal(size=(2, 5, 16)).astype("float32")
    layer = MultiScaleMultiHeadAttention(heads=3)
    result = np.asarray(layer(x))
    assert result.shape == (2, 8 + 4 + 2)
    expected = []
    for head in layer.projections:
        (wq, bq), (wk, bk), (wv, bv), (wo, bo) = (
            [np.asarray(v) for v in dense.weights] for dense in head
        )
        q, k, v = x @ wq + bq, x @ wk + bk, x @ wv + bv
        scores = q @ k.transpose(0, 2, 1) / np.sqrt(q.shape[-1])
        pooled_scores = scores.max(axis=1)
        weights = np.exp(pooled_scores - pooled_scores.max(-1, keepdims=True))
        weights /= weights.sum(-1, keepdims=True)
        expected.append((weights[:, :, None] * v).sum(1) @ wo + bo)
    np.testing.assert_allclose(result, np.concatenate(expected, -1), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize(
    "layer, shape",
    [
        (ChannelAttention(reduction=2, mode="sum", l2=0.05, negative_slope=0.3), (4, 3, 3, 8)),
        (SpatialAttention(filters=5, kernel_size=1), (4, 3, 3, 8)),
        (MultiScaleMultiHeadAttention(heads=2), (4, 8)),
    ],
)
def test_config_round_trip_symbolic_eager_and_training(layer, shape):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    inputs = keras.Input(shape)
    outputs = clone(inputs)
    eager = clone(np.ones((2, *shape), "float32"))
    assert tuple(outputs.shape[1:]) == tuple(eager.shape[1:])
    flat = keras.layers.Flatten()(outputs)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(flat))
    model.compile("adam", "categorical_crossentropy")
    before = [np.array(w) for w in clone.weights]
    model.fit(RANDOM.normal(size=(4, *shape)), np.eye(2)[[0, 1, 0, 1]], epochs=1, verbose=0)
    after = [np.asarray(w) for w in clone.weights]
    assert any(not np.allclose(a, b) for a, b in zip(before, after, strict=True))


def test_invalid_arguments_raise_value_errors():
    with pytest.raises(ValueError, match="'max'"):
        ChannelAttention(mode="max")
    with pytest.raises(ValueError, match="0"):
        SpatialAttention(filters=0)
    with pytest.raises(ValueError, match="divisible"):
        MultiScaleMultiHeadAttention(heads=4)(np.ones((1, 2, 24), "float32"))

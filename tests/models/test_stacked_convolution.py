"""The stacked-frame Conv3D (mer.models.layers.Conv3D) equals keras.layers.Conv3D: outputs and
gradients to 1e-5; the weights load both ways; the config round-trips; the model keeps its
counts and the layers Grad-CAM reads; `auto` follows whether TensorFlow runs oneDNN."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from mer.inference.explain import default_layers
from mer.models import builders, layers
from mer.models.builders import build_mlsp_model
from mer.models.flops import forward_flops, training_flops
from mer.models.layers import Conv3D as StackedFrameConv3D

RANDOM = np.random.default_rng(0)
TINY = dict(branch_filters=4, merge_filters=4, dense_units=(8,), gru_units=8, heads=2,
            head_units=(4,))


def _pair(kernel_size, padding, shape, filters=4):
    """A Keras Conv3D and a stacked-frame one holding the same random (nonzero-bias) weights."""
    plain = keras.layers.Conv3D(filters, kernel_size, padding=padding, bias_initializer="he_normal")
    plain.build(shape)
    stacked = StackedFrameConv3D(filters, kernel_size, padding=padding)
    stacked.build(shape)
    stacked.set_weights(plain.get_weights())
    return plain, stacked


def _output_and_gradients(layer, clip, weights):
    """The layer's output and the gradients of sum(output * weights) w.r.t. the input, the
    kernel and the bias."""
    clip = tf.constant(clip)
    with tf.GradientTape() as tape:
        tape.watch(clip)
        output = layer(clip)
        loss = tf.reduce_sum(output * weights)
    gradients = tape.gradient(loss, [clip, layer.kernel, layer.bias])
    return [np.asarray(value) for value in (output, *gradients)]


@pytest.mark.parametrize("kernel_size", [3, 5, (2, 3, 4)])
@pytest.mark.parametrize(
    "padding, shape",
    [("same", (2, 6, 9, 8, 3)), ("same", (1, 3, 7, 10, 2)), ("valid", (2, 7, 11, 10, 3))],
)
def test_outputs_and_gradients_equal_conv3d(kernel_size, padding, shape):
    """Odd and even sizes; fewer frames than the kernel is deep (3 for 5); an even kernel, whose
    odd padding cell Conv3D puts at the end."""
    plain, stacked = _pair(kernel_size, padding, shape)
    clip = RANDOM.normal(size=shape).astype("float32")
    weights = RANDOM.normal(size=plain.compute_output_shape(shape)).astype("float32")
    expected = _output_and_gradients(plain, clip, weights)
    found = _output_and_gradients(stacked, clip, weights)
    for name, want, got in zip(("output", "input", "kernel", "bias"), expected, found,
                               strict=True):
        assert got.shape == want.shape, name
        # to 1e-5 of the largest value: a kernel gradient sums hundreds of products, and the
        # two forms sum them in different orders (oneDNN's Conv3D: 2e-5 apart at values of 25)
        scale = max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * scale, err_msg=name)


def test_config_round_trip_symbolic_eager_and_training():
    layer = StackedFrameConv3D(
        3, (3, 2, 1), padding="valid", activation="relu", use_bias=False,
        kernel_initializer="ones", kernel_regularizer=keras.regularizers.L2(0.1),
        name="stacked",
    )
    config = layer.get_config()
    clone = StackedFrameConv3D.from_config(config)
    assert clone.get_config() == config
    assert keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(layer)
    ).get_config() == config
    inputs = keras.Input((4, 6, 5, 2))
    outputs = clone(inputs)
    eager = clone(np.ones((2, 4, 6, 5, 2), "float32"))
    assert tuple(outputs.shape[1:]) == tuple(eager.shape[1:]) == (2, 5, 5, 3)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(
        keras.layers.Flatten()(outputs)))
    model.compile("adam", "categorical_crossentropy")
    before = np.array(clone.kernel)
    model.fit(RANDOM.normal(size=(4, 4, 6, 5, 2)), np.eye(2)[[0, 1, 0, 1]], verbose=0)
    assert not np.allclose(before, np.asarray(clone.kernel))


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(strides=2), "strides must be 1, got (2, 2, 2)"),
        (dict(dilation_rate=(1, 2, 1)), "dilation_rate must be 1, got (1, 2, 1)"),
        (dict(groups=3, filters=3), "groups must be 1, got 3"),
        (dict(data_format="channels_first"), "data_format must be 'channels_last', got"),
    ],
)
def test_what_it_does_not_compute_is_a_value_error(arguments, message):
    with pytest.raises(ValueError) as error:
        StackedFrameConv3D(**{"filters": 4, "kernel_size": 3, **arguments})
    assert message in str(error.value)


def test_unknown_number_of_frames_is_a_value_error():
    with pytest.raises(ValueError, match=r"frames must be known, got shape \(None, None, 8"):
        StackedFrameConv3D(4, 3)(keras.Input((None, 8, 8, 3)))


@pytest.mark.slow
@pytest.mark.parametrize("saved_with, loaded_into", [("conv3d", "stacked"), ("stacked", "conv3d")])
def test_weights_load_both_ways_and_predict_alike(saved_with, loaded_into, tmp_path):
    """A weights file of one form loads into a model of the other; a .keras file reloads with
    the form it was saved with."""
    clip = RANDOM.normal(size=(2, 4, 12, 12, 3)).astype("float32")
    source = build_mlsp_model((4, 12, 12, 3), 3, convolution=saved_with, **TINY)
    source.save_weights(tmp_path / "source.weights.h5")
    expected = np.asarray(source(clip))
    target = build_mlsp_model((4, 12, 12, 3), 3, convolution=loaded_into, **TINY)
    target.load_weights(tmp_path / "source.weights.h5")
    np.testing.assert_allclose(np.asarray(target(clip)), expected, rtol=1e-5, atol=1e-6)
    if saved_with == "stacked":
        source.save(tmp_path / "source.keras")
        reloaded = keras.saving.load_model(tmp_path / "source.keras")
        assert isinstance(reloaded.get_layer("branch5_conv"), StackedFrameConv3D)
        np.testing.assert_array_equal(np.asarray(reloaded(clip)), expected)


def test_the_model_keeps_its_counts_and_the_layers_grad_cam_reads():
    """Same parameters and FLOPs, the merge conv a Conv3D either way, and explain's default
    layers of the two-stream model are still the branch convs."""
    models = {
        convolution: build_mlsp_model((4, 12, 12, 3), 3, streams=2, convolution=convolution,
                                      **TINY)
        for convolution in ("conv3d", "stacked")
    }
    plain, stacked = models["conv3d"], models["stacked"]
    assert isinstance(stacked.get_layer("branch5_conv"), StackedFrameConv3D)
    assert isinstance(stacked.get_layer("branch3_conv"), StackedFrameConv3D)
    assert type(stacked.get_layer("merge_conv")) is keras.layers.Conv3D
    assert stacked.count_params() == plain.count_params()
    assert forward_flops(stacked) == forward_flops(plain)
    assert training_flops(stacked) == training_flops(plain)
    assert default_layers(stacked) == default_layers(plain) == ["branch5_conv", "branch3_conv"]


@pytest.mark.parametrize("faster", [True, False])
def test_auto_builds_the_form_that_is_faster_here(faster, monkeypatch):
    monkeypatch.setattr(builders, "stacked_is_faster", lambda: faster)
    model = build_mlsp_model((4, 12, 12, 3), 3, **TINY)
    assert isinstance(model.get_layer("branch5_conv"), StackedFrameConv3D) is faster


@pytest.mark.parametrize("onednn", [True, False])
def test_stacked_is_faster_where_tensorflow_runs_without_onednn(onednn, monkeypatch):
    """What TensorFlow says of its oneDNN kernels decides (off by default on CPUs without
    AVX512_VNNI, AVX512_BF16, AVX-VNNI or AMX, and with TF_ENABLE_ONEDNN_OPTS=0)."""
    from tensorflow.python.util import _pywrap_util_port

    monkeypatch.setattr(_pywrap_util_port, "IsMklEnabled", lambda: onednn)
    assert layers.tensorflow_onednn() is onednn
    assert layers.stacked_is_faster() is not onednn


def test_invalid_convolution_is_a_value_error():
    with pytest.raises(ValueError, match="convolution must be one of .* got 'conv2d'"):
        build_mlsp_model((4, 12, 12, 3), 3, convolution="conv2d", **TINY)

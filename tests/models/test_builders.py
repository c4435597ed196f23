"""The published networks: parameter counts (either form of the first convs), shapes, pooling,
save/load, other backends."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import mer  # noqa: F401  (registers the custom layers for loading)
from mer.config import PROJECT_ROOT
from mer.models.builders import build_mlsp_model

TINY = dict(branch_filters=4, merge_filters=4, dense_units=(8, 8), gru_units=16, heads=2,
            head_units=(8, 4))


@pytest.mark.parametrize("convolution", ["conv3d", "stacked"])
def test_mlsp_parameter_count_is_the_published_one(convolution):
    model = build_mlsp_model((10, 128, 128, 3), 3, convolution=convolution)
    assert model.count_params() == 2_836_759
    assert tuple(model.get_layer("merge_pool").output.shape[1:]) == (2, 15, 15, 32)
    assert tuple(model.get_layer("msmh").output.shape[1:]) == (510,)


@pytest.mark.parametrize("convolution", ["conv3d", "stacked"])
def test_dual_branch_au_parameter_count_and_shapes(convolution):
    model = build_mlsp_model((30, 128, 128, 3), 3, streams=2, merge_filters=64, dropout=0.5,
                             convolution=convolution)
    assert model.count_params() == 3_817_055
    assert tuple(model.get_layer("branch5_pool").output.shape[1:]) == (10, 43, 43, 32)
    assert tuple(model.get_layer("merge_pool").output.shape[1:]) == (4, 15, 15, 64)
    assert tuple(model.get_layer("flatten").output.shape[1:]) == (4, 14400)
    assert tuple(model.get_layer("gru").output.shape[1:]) == (4, 512)


def test_thirty_frames_pool_to_four_steps():
    model = build_mlsp_model((30, 128, 128, 3), 3)
    assert tuple(model.get_layer("merge_pool").output.shape[1:]) == (4, 15, 15, 32)


def _same_max_pool_reference(x, size):
    """TensorFlow's 'same' max pooling: extra padding at the end, padded cells ignored."""
    out = x
    for axis in (1, 2, 3):
        length = out.shape[axis]
        steps = -(-length // size)
        total = max(0, (steps - 1) * size + size - length)
        before = total // 2
        padding = [(0, 0)] * out.ndim
        padding[axis] = (before, total - before)
        padded = np.pad(out, padding, constant_values=-np.inf)
        windows = [
            np.take(padded, range(step * size, step * size + size), axis=axis).max(axis=axis)
            for step in range(steps)
        ]
        out = np.stack(windows, axis=axis)
    return out


def test_same_pooling_pads_at_the_end_like_tensorflow():
    x = np.random.default_rng(1).normal(size=(1, 10, 7, 8, 2)).astype("float32")
    pooled = keras.layers.MaxPooling3D(3, strides=3, padding="same")(x)
    np.testing.assert_allclose(np.asarray(pooled), _same_max_pool_reference(x, 3))


@pytest.mark.slow
def test_keras_file_reloads_with_identical_outputs(tmp_path):
    model = build_mlsp_model((4, 16, 16, 3), 3, cam="sum", **TINY)
    x = np.random.default_rng(2).normal(size=(2, 4, 16, 16, 3)).astype("float32")
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(model.predict(x, verbose=0), reloaded.predict(x, verbose=0))


def test_invalid_builder_arguments():
    with pytest.raises(ValueError, match="streams"):
        build_mlsp_model((4, 16, 16, 3), 3, streams=3)
    with pytest.raises(ValueError, match="num_classes"):
        build_mlsp_model((4, 16, 16, 3), 1)


def test_variants_have_the_layers_they_name():
    single = build_mlsp_model((4, 16, 16, 3), 3, branches=1, cam="none", temporal="lstm",
                              pooling="none", **TINY)
    names = {layer.name for layer in single.layers}
    assert "branch3_conv" not in names and "channel_attention" not in names
    assert tuple(single.get_layer("lstm").output.shape[1:]) == (16,)  # last output only
    flat = build_mlsp_model((4, 16, 16, 3), 3, branches=1, temporal="none", pooling="none",
                            **{**TINY, "dense_units": ()})
    assert tuple(flat.get_layer("flatten_time").output.shape[1:]) == (1 * 2 * 2 * 4,)  # T=1
    multi = build_mlsp_model((4, 16, 16, 3), 3, pooling="multi_head", cam="cbam", **TINY)
    assert tuple(multi.get_layer("multi_head_pool").output.shape[1:]) == (16,)
    assert multi.get_layer("multi_head_attention").num_heads == 2
    causal = build_mlsp_model((4, 16, 16, 3), 2, streams=2, causal_attention_heads=3,
                              head_dropout=0.2, **TINY)
    assert tuple(causal.get_layer("pooled").output.shape[1:]) == (8 + 4 + 16,)  # MSMH + causal
    assert causal.get_layer("causal_attention").num_heads == 3
    assert causal.get_layer("head_dropout1").rate == 0.2


def test_causal_attention_is_causal_inside_the_model():
    """Step 0 of the causal attention must not see frames that only later steps see (the two
    convs reach 3 frames ahead of step 0 here), while the last step does."""
    model = build_mlsp_model((8, 8, 8, 3), 3, pool_size=1, cam="none", temporal="none",
                             causal_attention_heads=1, **{**TINY, "heads": 1})
    probe = keras.Model(model.input, model.get_layer("causal_attention").output)
    clip = np.random.default_rng(3).normal(size=(1, 8, 8, 8, 3)).astype("float32")
    changed = clip.copy()
    changed[:, 4:] += 1.0
    before, after = np.asarray(probe(clip)), np.asarray(probe(changed))
    np.testing.assert_allclose(before[:, 0], after[:, 0], rtol=1e-5, atol=1e-6)
    assert not np.allclose(before[:, -1], after[:, -1])


def test_variant_keras_file_reloads_with_identical_outputs(tmp_path):
    model = build_mlsp_model((4, 16, 16, 3), 2, streams=2, temporal="lstm",
                             causal_attention_heads=2, head_dropout=0.3, **TINY)
    x = np.random.default_rng(4).normal(size=(2, 4, 16, 16, 3)).astype("float32")
    path = tmp_path / "variant.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(np.asarray(model((x, x))), np.asarray(reloaded((x, x))))


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(branches=3), "branches must be 1 or 2, got 3"),
        (dict(streams=2, branches=1), "streams=2 needs branches=2"),
        (dict(cam="max"), "cam must be one of"),
        (dict(temporal="rnn"), "temporal must be one of"),
        (dict(pooling="mean"), "pooling must be one of"),
        (dict(pooling="none", causal_attention_heads=2), "causal_attention_heads needs"),
        (dict(causal_attention_heads=-1), "causal_attention_heads must be >= 0, got -1"),
        (dict(head_dropout=1.0), "head_dropout must be in [0, 1), got 1.0"),
    ],
)
def test_invalid_variant_arguments(arguments, message):
    with pytest.raises(ValueError) as error:
        build_mlsp_model((4, 16, 16, 3), 3, **{**TINY, **arguments})
    assert message in str(error.value)


# The 'same' max pools of mer/models on odd sizes: MaxPool3D with pool = stride (3, the published
# one, and 2), where TensorFlow puts the odd padding cell at the end (11 for 3; every size for
# 2), and the stride-1 MaxPool2D of 3 (one cell each side). Padding cells count as -inf.
POOLINGS = [
    ("MaxPooling3D", dict(pool_size=3, strides=3, padding="same"), (2, 11, 13, 7, 3)),
    ("MaxPooling3D", dict(pool_size=2, strides=2, padding="same"), (2, 11, 13, 7, 3)),
    ("MaxPooling2D", dict(pool_size=3, strides=1, padding="same"), (2, 11, 13, 3)),
]
TORCH_MISSING = "PyTorch is optional: pip install -r requirements-torch.txt; CI installs it"

BACKEND_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np, keras
    from mer.models.builders import build_mlsp_model
    from mer.models.layers import Conv3D as StackedFrameConv3D, stacked_is_faster
    from mer.models.losses import WeightedCategoricalCrossentropy
    assert keras.backend.backend() == "{backend}", keras.backend.backend()
    model = build_mlsp_model((4, 16, 16, 3), 3, streams=2, convolution="stacked", **{tiny})
    x = np.random.default_rng(0).normal(size=(4, 4, 16, 16, 3)).astype("float32")
    model.compile("adam", WeightedCategoricalCrossentropy([0.3, 0.35, 0.35]))
    history = model.fit((x, x), np.eye(3)[[0, 1, 2, 0]], epochs=2, batch_size=2, verbose=0)
    inputs = np.load(sys.argv[1])
    pooled = [
        keras.ops.convert_to_numpy(getattr(keras.layers, layer)(**options)(inputs[str(index)]))
        for index, (layer, options, _) in enumerate({poolings})
    ]
    clip = inputs["clip"]
    plain = keras.layers.Conv3D(4, 5, padding="same", bias_initializer="he_normal")
    plain.build(clip.shape)
    stacked = StackedFrameConv3D(4, 5, padding="same")
    stacked.build(clip.shape)
    stacked.set_weights(plain.get_weights())
    convolved = [keras.ops.convert_to_numpy(layer(clip)) for layer in (plain, stacked)]
    np.savez(sys.argv[2], *pooled, *convolved)
    print("COUNT", model.count_params(), "LOSS", history.history["loss"][-1])
    print("AUTO", "stacked" if stacked_is_faster() else "conv3d")
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_model_trains_and_pools_like_tensorflow_on_other_backends(backend, tmp_path):
    """The model (with the stacked-frame convs) builds, counts and trains under the backend; its
    'same' pooling equals TensorFlow's (tf.nn.max_pool) to 1e-6 on the odd sizes of POOLINGS;
    the stacked-frame 5x5x5 conv equals the backend's Conv3D to 1e-5 on an odd-sized clip; and
    model.convolution=auto picks the form measured faster on the backend's CPU (issue 15)."""
    if backend == "torch":
        pytest.importorskip("torch", reason=TORCH_MISSING)
    random = np.random.default_rng(5)
    # All negative: a backend that pads with zeros instead of ignoring the padding shows.
    inputs = [random.normal(-3.0, 1.0, shape).astype("float32") for _, _, shape in POOLINGS]
    clip = random.normal(size=(2, 3, 9, 7, 3)).astype("float32")
    np.savez(tmp_path / "inputs.npz", **{str(index): x for index, x in enumerate(inputs)},
             clip=clip)
    script = BACKEND_SCRIPT.format(backend=backend, tiny=TINY, poolings=POOLINGS)
    environment = {**os.environ, "KERAS_BACKEND": backend}
    if backend == "jax":  # a third less compile time on CPU, for a model this small
        environment["XLA_FLAGS"] = (
            "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
        )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "inputs.npz"), str(tmp_path / "out.npz")],
        capture_output=True, text=True, env=environment, timeout=300, cwd=PROJECT_ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    pooled = np.load(tmp_path / "out.npz")
    for index, ((layer, options, _), x) in enumerate(zip(POOLINGS, inputs, strict=True)):
        expected = tf.nn.max_pool(x, options["pool_size"], options["strides"], "SAME").numpy()
        np.testing.assert_allclose(pooled[f"arr_{index}"], expected, rtol=0, atol=1e-6,
                                   err_msg=f"{backend} {layer} {options}")
    plain, stacked = (pooled[f"arr_{len(POOLINGS) + index}"] for index in (0, 1))
    assert plain.shape == (2, 3, 9, 7, 4)
    np.testing.assert_allclose(stacked, plain, rtol=1e-5, atol=1e-5, err_msg=backend)
    count_line = next(line for line in done.stdout.splitlines() if line.startswith("COUNT"))
    expected = build_mlsp_model((4, 16, 16, 3), 3, streams=2, **TINY).count_params()
    assert int(count_line.split()[1]) == expected
    assert np.isfinite(float(count_line.split()[3]))
    auto = {"jax": "stacked", "torch": "conv3d"}[backend]
    assert f"AUTO {auto}" in done.stdout.splitlines()

"""FMER: the authors' parameter counts per part, the layers against NumPy, the loss by hand,
the published schedule, config round trips, one training step and a .keras reload.

The counts were read off the authors' PyTorch modules (`FMER(num_classes)` of their
`PythonCodes/models/`, instantiated with PyTorch 2.13 on a CPU); with their weights copied in,
our network gave their probabilities to 1e-6 at 144 px (a scratch check, not repeated here).
"""

import keras
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from mer.config import ConfigError, ExperimentConfig, build_typed
from mer.models import model_family
from mer.models.flops import forward_flops
from mer.models.fmer import (
    AU_CODES,
    DEFAULTS,
    FAMILY,
    AUBinaryCrossentropy,
    FMERConfig,
    au_targets,
    build_fmer_model,
    fmer_loss,
    learning_rate_schedule,
)
from mer.models.fmer_layers import (
    AUFusion,
    AUGraph,
    FlowStepConvolution,
    LandmarkConvolution,
    MagnificationChoice,
    MultiHeadSelfAttention,
    P3DBottleneck,
    TokenSplit,
    TransformerEncoder,
)
from mer.specs import InputSpec
from mer.training.schedules import step_decay

RANDOM = np.random.default_rng(0)
FULL_SPECS = [
    InputSpec("fmer_patches", (10, 9, 2, 30, 7, 7), "float16", "none"),
    InputSpec("au_frames", (16, 144, 144, 3)),
]
# frames first, 3 factors, 16 px frames and a P3D of widths 2-16: about 1.1 M weights
TINY_SPECS = [
    InputSpec("au_frames", (16, 16, 16, 3)),
    InputSpec("fmer_patches", (3, 9, 2, 30, 7, 7), "float16", "none"),
]
TINY = FMERConfig(
    alpha_per_step=True, shared_step_convolution=False, p3d_filters=2, encoder_dropout=0.05,
    dropout=0.25, au_loss_weight=0.5, momentum=0.8, epsilon=1e-3,
)


def _count(weights) -> int:
    return sum(int(np.prod(weight.shape)) for weight in weights)


def _trainable(model, prefix: str) -> int:
    return sum(_count(layer.trainable_weights) for layer in model.layers
               if layer.name.startswith(prefix))


@pytest.fixture(scope="module")
def full():
    """The published network at 4 classes, built once and never run."""
    return build_fmer_model(FULL_SPECS, 4)


@pytest.fixture(scope="module")
def tiny():
    keras.utils.set_random_seed(5)
    return FAMILY.build(TINY, TINY_SPECS, 3)


def _outputs(model, inputs):
    """Probabilities and AU logits in inference, called eagerly (predict would trace)."""
    return [np.asarray(output) for output in model(inputs, training=False)]


def _tiny_inputs(batch: int = 4):
    frames = RANDOM.uniform(size=(batch, 16, 16, 16, 3)).astype("float32")
    patches = RANDOM.normal(size=(batch, 3, 9, 2, 30, 7, 7)).astype("float16")
    return [frames, patches]


@pytest.mark.slow
def test_parameter_counts_are_the_authors(full):
    assert _count(full.trainable_weights) == 26_026_861
    assert _count(full.non_trainable_weights) == 57_720  # BatchNormalization moving statistics
    assert full.count_params() == 26_084_581
    assert _trainable(full, "p3d_") == 24_944_073
    assert _trainable(full, "graph_") == 1_033_558
    assert _trainable(full, "au_graph") == 49_172
    assert _trainable(full, "fusion_norm") + _trainable(full, "logits") == 18 + 10 * 4
    assert _count(full.get_layer("graph_brow_encoder1").trainable_weights) == 38_054
    assert _count(full.get_layer("au_graph").adjacency_encoders[0].trainable_weights) == 5_422


@pytest.mark.slow
def test_three_classes_count(full, tiny):
    """At 3 classes (the tiny model's) only the fusion part changes: 26,026,851 in all."""
    fusion = _trainable(tiny, "fusion_norm") + _trainable(tiny, "logits")
    assert fusion == 18 + 10 * 3
    parts = sum(_trainable(full, prefix) for prefix in ("p3d_", "graph_", "au_graph"))
    assert parts + fusion == 26_026_851


def test_published_structure(full):
    assert [tensor.name for tensor in full.inputs] == ["fmer_patches", "au_frames"]
    assert [tuple(output.shape) for output in full.outputs] == [(None, 4), (None, 9)]
    assert [output.dtype for output in full.outputs] == ["float32", "float32"]
    blocks = [layer for layer in full.layers if isinstance(layer, P3DBottleneck)]
    units = "".join(block.unit[0] for block in blocks)
    assert units == "ABC" "ABCA" "BCABCA" "222"  # cycling over the 3-D blocks, res4 from B
    assert [block.projection for block in blocks].count(True) == 4
    assert tuple(full.get_layer("p3d_res4_pool").output.shape[1:]) == (1, 9, 9, 1024)
    assert tuple(full.get_layer("p3d_res5_block3").output.shape[1:]) == (5, 5, 2048)
    assert tuple(full.get_layer("graph_tokens").output.shape[1:]) == (30, 49)
    assert len(full.get_layer("graph_step_convolution").convolutions) == 1  # shared
    norms = [sub for layer in full.layers for sub in layer._flatten_layers()
             if isinstance(sub, keras.layers.BatchNormalization)]
    assert len(norms) == 2 + 1 + 13 * 4 + 3 * 3 + 4  # graph, stem, 3-D, 2-D, shortcuts
    assert {(norm.momentum, norm.epsilon) for norm in norms} == {(0.9, 1e-5)}
    layer_norms = [sub for layer in full.layers for sub in layer._flatten_layers()
                   if isinstance(sub, keras.layers.LayerNormalization)]
    assert len(layer_norms) == 2 * 18 + 1
    assert {norm.epsilon for norm in layer_norms} == {1e-6}


def test_forward_flops_are_the_authors(full):
    """13,834,235,270 from forward hooks on the authors' Conv3d/Conv2d/Linear (and their
    attention products), plus what the hooks miss: their graph convolutions (288,720) and
    adjacency products (45,360), and the fusion Dense they call per sample (54 more)."""
    assert forward_flops(full) == 13_834_569_404


def test_step_convolutions_one_shared_or_one_per_step():
    shape = (None, 9, 2, 30, 7, 7)
    shared, separate = FlowStepConvolution(), FlowStepConvolution(shared=False)
    shared.build(shape)
    separate.build(shape)
    assert _count(shared.trainable_weights) == 30 * 2 * 3 * 3 + 30 + 60  # conv, bias, BN
    assert _count(separate.trainable_weights) == 9 * _count(shared.trainable_weights)


def _batch_norm(tensor, norm, training=False):
    gamma, beta, mean, variance = (np.asarray(weight) for weight in norm.weights)
    if training:
        axes = tuple(range(tensor.ndim - 1))
        mean, variance = tensor.mean(axes), tensor.var(axes)
    return (tensor - mean) / np.sqrt(variance + norm.epsilon) * gamma + beta


def _landmark_convolution(x, layer, training=False):
    """(batch, depth, H, W, landmarks) -> (batch, H, W, landmarks), in NumPy."""
    kernel, bias = np.asarray(layer.kernel), np.asarray(layer.bias)
    margin = kernel.shape[1] // 2
    padded = np.pad(x, ((0, 0), (0, 0), (margin, margin), (margin, margin), (0, 0)))
    windows = sliding_window_view(padded, kernel.shape[1:3], axis=(2, 3))  # b d H W L i j
    summed = np.einsum("bdhwlij,dijl->bhwl", windows, kernel[:, :, :, 0]) + bias
    return np.maximum(_batch_norm(summed, layer.batch_norm, training), 0)


def _shift_statistics(layer):
    """Moving statistics and affine away from 0 and 1, so that a wrong BatchNorm shows."""
    for norm in [sub for sub in layer._flatten_layers()
                 if isinstance(sub, keras.layers.BatchNormalization)]:
        ranges = [(0.5, 1.5), (-0.2, 0.2), (-0.2, 0.2), (0.5, 1.5)]  # gamma, beta, mean, var
        norm.set_weights([RANDOM.uniform(low, high, weight.shape)
                          for (low, high), weight in zip(ranges, norm.weights, strict=True)])


@pytest.mark.parametrize("shared", [True, False])
def test_step_convolution_matches_numpy(shared):
    """Per step, the authors' depthwise Conv3D over u/v on (landmarks, 2, 7, 7); in training
    the shared module normalises each step with that step's batch statistics, as theirs."""
    x = RANDOM.normal(size=(3, 4, 2, 5, 6, 6)).astype("float32")  # authors' layout
    layer = FlowStepConvolution(shared=shared, epsilon=0.1)
    layer.build(x.shape)
    _shift_statistics(layer)
    for training in (False, True):
        result = np.asarray(layer(x, training=training))
        assert result.shape == (3, 4, 6, 6, 5)
        for step in range(4):
            convolution = layer.convolutions[0 if shared else step]
            expected = _landmark_convolution(x[:, step].transpose(0, 1, 3, 4, 2), convolution,
                                             training)
            np.testing.assert_allclose(result[:, step], expected, rtol=1e-4, atol=1e-5)


def _layer_norm(x, norm):
    gamma, beta = (np.asarray(weight) for weight in norm.weights)
    normalised = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + norm.epsilon)
    return normalised * gamma + beta


def _dense(x, dense):
    weights = [np.asarray(weight) for weight in dense.weights]
    return x @ weights[0] + (weights[1] if len(weights) > 1 else 0)


def _attention(x, layer):
    def heads(tensor):
        return tensor.reshape(*tensor.shape[:2], layer.heads, layer.head_size).transpose(0, 2, 1, 3)

    query, key, value = (heads(_dense(x, dense)) for dense in (layer.query, layer.key, layer.value))
    scores = query @ key.transpose(0, 1, 3, 2) / np.sqrt(layer.head_size)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    attended = (weights @ value).transpose(0, 2, 1, 3).reshape(*x.shape[:2], -1)
    return _dense(attended, layer.projection)


def test_transformer_encoder_matches_numpy():
    x = RANDOM.normal(size=(2, 5, 7)).astype("float32")
    layer = TransformerEncoder(feed_forward=6, heads=3, head_size=4, dropout=0.5)
    result = np.asarray(layer(x, training=False))
    assert _count(layer.attention.query.weights) == 7 * 12  # no bias
    tensor = _layer_norm(x + _attention(x, layer.attention), layer.attention_norm)
    hidden = np.maximum(_dense(tensor, layer.hidden), 0)
    expected = _layer_norm(tensor + _dense(hidden, layer.output_dense), layer.feed_forward_norm)
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-5)
    encoder_flops = 2 * 5 * (3 * 7 * 12 + 12 * 7) + 2 * 2 * 3 * 5 * 5 * 4 + 2 * 5 * 2 * 7 * 6
    assert layer.forward_flops((None, 5, 7)) == encoder_flops


@pytest.mark.parametrize(
    "unit, strides, projection, shape",
    [("A", 2, True, (2, 3, 6, 6, 8)), ("B", 1, False, (2, 3, 5, 5, 8)),
     ("C", 1, True, (2, 2, 5, 5, 4)), ("2D", 2, True, (2, 5, 5, 8))],
)
def test_p3d_units(unit, strides, projection, shape):
    """A = T(S(x)), B = S(x) + T(x), C = S(x) + T(S(x)); 2D one 3x3 conv; then expand, plus
    the shortcut (identity without projection), ReLU. Checked against the block's own
    sublayers, in inference."""
    x = RANDOM.normal(size=shape).astype("float32")
    block = P3DBottleneck(2, strides=strides, unit=unit, projection=projection)
    block.build(x.shape)
    _shift_statistics(block)

    def unit_of(conv, norm, tensor):
        return np.maximum(np.asarray(norm(conv(tensor), training=False)), 0)

    reduced = unit_of(block.reduce, block.reduce_norm, x)
    spatial = unit_of(block.spatial, block.spatial_norm, reduced)
    if unit == "A":
        tensor = unit_of(block.temporal, block.temporal_norm, spatial)
    elif unit == "B":
        tensor = spatial + unit_of(block.temporal, block.temporal_norm, reduced)
    elif unit == "C":
        tensor = spatial + unit_of(block.temporal, block.temporal_norm, spatial)
    else:
        tensor = spatial
        assert block.temporal is None
    expanded = np.asarray(block.expand_norm(block.expand(tensor), training=False))
    shortcut = x
    if block.projection:
        shortcut = np.asarray(block.shortcut_norm(block.shortcut(x), training=False))
    expected = np.maximum(expanded + shortcut, 0)
    result = np.asarray(block(x, training=False))
    assert result.shape == expected.shape
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-5)


def test_p3d_kernels_are_3d_with_the_authors_initialisation():
    block = P3DBottleneck(16, unit="B", projection=True)
    block.build((None, 2, 4, 4, 8))
    assert tuple(block.spatial.kernel.shape) == (1, 3, 3, 16, 16)
    assert tuple(block.temporal.kernel.shape) == (3, 1, 1, 16, 16)
    assert not any(conv.use_bias for conv in (block.reduce, block.spatial, block.expand))
    # normal(0, sqrt(2 / (k_t * k_h * filters))): (1, 3, 3) and 16 filters -> sqrt(2 / 48)
    np.testing.assert_allclose(np.std(np.asarray(block.spatial.kernel)), np.sqrt(2 / 48), rtol=0.1)


def test_au_graph_and_fusion_match_numpy():
    logits = RANDOM.normal(size=(2, 4)).astype("float32")
    graph = AUGraph(encoders=2, feed_forward=5, heads=2, head_size=3, widths=(3, 6))
    result = np.asarray(graph(logits, training=False))
    diagonal = logits[:, :, None] * np.eye(4, dtype="float32")
    adjacency = diagonal
    for encoder in graph.adjacency_encoders:
        adjacency = np.asarray(encoder(adjacency, training=False))
    nodes = logits[:, :, None]
    for convolution in graph.graph_convolutions:
        nodes = adjacency @ (nodes @ np.asarray(convolution.kernel))
        nodes = np.where(nodes > 0, nodes, 0.2 * nodes)
    np.testing.assert_allclose(result, nodes, rtol=1e-4, atol=1e-5)
    assert _count(graph.unused_embedding.weights) == 15 * 3  # the authors' unused Embedding

    brows, mouth = (RANDOM.normal(size=(2, 6)).astype("float32") for _ in range(2))
    scores = np.asarray(AUFusion(brow_aus=1)([brows, mouth, result]))
    expected = np.concatenate(
        [np.einsum("bf,baf->ba", brows, result[:, :1]), np.einsum("bf,baf->ba", mouth,
                                                                  result[:, 1:])], axis=-1
    )
    np.testing.assert_allclose(scores, expected, rtol=1e-5)


def test_magnification_choice():
    x = np.arange(4 * 3 * 5 * 2, dtype="float32").reshape(4, 3, 5, 2)  # (batch, alphas, ...)
    for per_step in (False, True):
        layer = MagnificationChoice(per_step=per_step, seed=1)
        np.testing.assert_array_equal(np.asarray(layer(x)), x[:, 0])  # inference: the first
        drawn = np.asarray(layer(x, training=True))
        index = (drawn[..., 0] - x[:, 0, :, 0]) / (x[0, 1, 0, 0] - x[0, 0, 0, 0])
        np.testing.assert_array_equal(index, np.round(index))
        assert set(np.unique(index)) <= {0, 1, 2}
        for clip in range(4):  # each step is one factor's patch
            for step in range(5):
                np.testing.assert_array_equal(drawn[clip, step], x[clip, int(index[clip, step]),
                                                                   step])
        if not per_step:
            assert (index == index[:, :1]).all()  # one factor per clip


LAYERS = [
    (MagnificationChoice(per_step=True, seed=3), [(2, 4, 3)]),
    (LandmarkConvolution(kernel_size=5, momentum=0.8, epsilon=1e-3), [(2, 6, 6, 3)]),
    (FlowStepConvolution(shared=False, kernel_size=5, momentum=0.8, epsilon=1e-3),
     [(2, 2, 3, 6, 6)]),
    (TokenSplit(sizes=(2, 3)), [(5, 4)]),
    (MultiHeadSelfAttention(heads=2, head_size=4), [(5, 6)]),
    (TransformerEncoder(feed_forward=16, heads=2, head_size=4, dropout=0.2, epsilon=1e-5),
     [(5, 6)]),
    (P3DBottleneck(2, strides=2, unit="C", projection=True, momentum=0.8, epsilon=1e-3),
     [(2, 6, 6, 4)]),
    (AUGraph(encoders=2, feed_forward=8, heads=2, head_size=4, dropout=0.2, widths=(4, 6),
             negative_slope=0.1, epsilon=1e-5), [(5,)]),
    (AUFusion(brow_aus=2), [(6,), (6,), (5, 6)]),
]


@pytest.mark.parametrize("layer, shapes", LAYERS, ids=[type(layer).__name__ for layer, _ in LAYERS])
def test_layer_config_round_trip_symbolic_and_eager(layer, shapes):
    """Non-default values for every argument; each layer trains in the model's training step."""
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    inputs = [keras.Input(shape) for shape in shapes]
    arrays = [RANDOM.normal(size=(3, *shape)).astype("float32") for shape in shapes]
    symbolic = clone(inputs if len(inputs) > 1 else inputs[0])
    eager = clone(arrays if len(arrays) > 1 else arrays[0], training=True)
    symbolic, eager = (keras.tree.flatten(outputs) for outputs in (symbolic, eager))
    assert [tuple(t.shape[1:]) for t in symbolic] == [tuple(t.shape[1:]) for t in eager]


@pytest.mark.slow
def test_tiny_forward(tiny):
    assert [tensor.name for tensor in tiny.inputs] == ["au_frames", "fmer_patches"]  # specs' order
    assert tiny.output_names == ["probabilities", "au_logits"]
    inputs = _tiny_inputs()
    probabilities, au_logits = _outputs(tiny, inputs)
    assert probabilities.shape == (4, 3) and au_logits.shape == (4, len(AU_CODES))
    assert probabilities.dtype == au_logits.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, rtol=1e-5)
    others = inputs[1].copy()
    others[:, 1:] = 0  # inference reads the first factor (the test factor) only
    np.testing.assert_array_equal(_outputs(tiny, [inputs[0], others])[0], probabilities)


def _cross_entropy(labels, probabilities):
    return np.mean(-np.log(np.clip((labels * probabilities).sum(-1), 1e-7, 1)))


def _binary_cross_entropy(targets, logits):
    return np.mean(np.maximum(logits, 0) - logits * targets + np.log1p(np.exp(-np.abs(logits))))


@pytest.mark.slow
def test_loss_by_hand(tiny):
    """The compiled loss of y = (one-hot classes, AU targets) is CE(classes) + 0.5 BCE(AU
    logits); without the AU term, CE alone, whatever the AU targets."""
    outputs = _outputs(tiny, _tiny_inputs())
    labels = np.eye(3, dtype="float32")[[0, 1, 2, 1]]
    targets = np.stack([au_targets({1, 4, 12}), au_targets({25}), au_targets(()),
                        au_targets({2, 17})])
    cross_entropy = _cross_entropy(labels, outputs[0])
    for au_loss, expected in (
        (True, cross_entropy + 0.5 * _binary_cross_entropy(targets, outputs[1])),
        (False, cross_entropy),
    ):
        tiny.compile(loss=fmer_loss(au_loss, 0.5), metrics={"probabilities": ["accuracy"]})
        loss = tiny.compute_loss(y=(labels, targets), y_pred=outputs, training=False)
        np.testing.assert_allclose(float(loss), expected, rtol=1e-5)


def test_au_binary_cross_entropy_is_pytorchs_mean():
    targets = np.array([[1, 0, 1], [0, 0, 1]], "float32")
    logits = np.array([[2.0, -1.0, 0.5], [30.0, -30.0, -0.2]], "float32")
    result = float(AUBinaryCrossentropy(weight=2.0)(targets, logits))
    np.testing.assert_allclose(result, 2 * _binary_cross_entropy(targets, logits), rtol=1e-5)


@pytest.mark.slow
def test_training_step_and_reload(tiny, tmp_path):
    inputs = _tiny_inputs()
    labels = np.eye(3, dtype="float32")[[0, 1, 2, 0]]
    targets = np.stack([au_targets({1, 2}), au_targets({4, 10}), au_targets({12}),
                        au_targets({25})])
    # plain SGD: no optimiser slots to make for 600 variables; eager: no tracing
    tiny.compile("sgd", loss=fmer_loss(), metrics={"probabilities": ["accuracy"]},
                 run_eagerly=True)
    weights = tiny.trainable_weights
    before = [np.array(weight) for weight in weights]
    with pytest.warns(UserWarning, match="unused_embedding"):
        history = tiny.fit(inputs, (labels, targets), epochs=1, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    unchanged = {weight.path for weight, old in zip(weights, before, strict=True)
                 if np.allclose(np.asarray(weight), old)}
    # the unused embedding, and the graph convolutions' biases, which a BatchNormalization
    # follows: it removes them in training (gradient 0 up to rounding), in theirs as here
    biases = {f"graph_step_convolution/step{step}/bias" for step in range(1, 10)}
    biases.add("graph_landmark_convolution/bias")
    assert unchanged == {"au_graph/unused_embedding/embeddings"} | biases
    path = tmp_path / "fmer.keras"
    tiny.save(path)
    reloaded = keras.saving.load_model(path, compile=False)
    expected = _outputs(tiny, inputs)
    for output, reloaded_output in zip(expected, _outputs(reloaded, inputs), strict=True):
        np.testing.assert_array_equal(reloaded_output, output)
    assert reloaded.get_layer("graph_magnification").per_step
    assert len(reloaded.get_layer("graph_step_convolution").convolutions) == 9


def test_au_loss_serialises():
    loss = fmer_loss(au_loss_weight=0.25)["au_logits"]
    clone = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(clone, AUBinaryCrossentropy) and clone.weight == 0.25


def test_schedule_is_the_published():
    """train.py: ExponentialLR(0.987).step() after each 0-based epoch above 40, so epoch e
    (0-based) trains at 1e-4 * 0.987**max(0, e - 41); replayed against PyTorch to 5e-16."""
    schedule = learning_rate_schedule()
    rates = [schedule(epoch) for epoch in range(DEFAULTS.epochs)]
    assert rates[:42] == [1e-4] * 42
    for epoch in range(DEFAULTS.epochs):
        assert rates[epoch] == pytest.approx(1e-4 * 0.987 ** max(0, epoch - 41), rel=1e-12)
    steps = step_decay(DEFAULTS.learning_rate, DEFAULTS.decay_epochs, DEFAULTS.decay_factor)
    np.testing.assert_allclose([steps(epoch) for epoch in range(DEFAULTS.epochs)], rates,
                               rtol=1e-12)
    assert FAMILY.train_defaults == {
        "epochs": 100, "batch_size": 16, "learning_rate": 1e-4,
        "decay_epochs": list(range(42, 100)), "decay_factor": 0.987, "class_weights": None,
    }


def test_au_targets_order():
    np.testing.assert_array_equal(au_targets({4, 10, 6, 25}), [0, 0, 1, 1, 0, 0, 0, 0, 1])
    assert au_targets([]).dtype == np.float32 and not au_targets([]).any()


def _experiment(**sections) -> ExperimentConfig:
    values = {"model": {"family": "fmer"}, "data": {"inputs": ["fmer_patches", "au_frames"]},
              "train": {"class_weights": None}}
    for key, value in sections.items():
        values[key].update(value)
    return build_typed(ExperimentConfig, values)


def test_family_section_and_checks():
    assert model_family("fmer") is FAMILY
    config = _experiment(model={"shared_step_convolution": False, "au_loss": False})
    assert isinstance(config.model, FMERConfig) and not config.model.au_loss
    FAMILY.check(config)
    assert FAMILY.loss(config)["au_logits"] is None
    assert FAMILY.loss(_experiment())["au_logits"].weight == 1.0
    with pytest.raises(ConfigError, match="unknown config key"):
        _experiment(model={"heads": 4})
    with pytest.raises(ConfigError, match=r"data.inputs: \[fmer_patches, au_frames\]"):
        FAMILY.check(_experiment(data={"inputs": ["frames"]}))
    with pytest.raises(ConfigError, match="train.class_weights must be null"):
        FAMILY.check(_experiment(train={"class_weights": [1.0, 1.0, 1.0]}))
    with pytest.raises(ConfigError, match="model.dropout must be in"):
        FAMILY.check(_experiment(model={"dropout": 1.0}))


@pytest.mark.parametrize(
    "specs, arguments, message",
    [
        (TINY_SPECS, dict(num_classes=1), "num_classes must be an integer of at least 2, got 1"),
        ([InputSpec("au_frames", (8, 16, 16, 3)), TINY_SPECS[1]], {},
         "the frames must be (16, height, width, channels)"),
        ([TINY_SPECS[0], InputSpec("fmer_patches", (9, 2, 29, 7, 7))], {}, "30 landmarks"),
        ([TINY_SPECS[0], InputSpec("flow", (9, 2, 30, 7, 7))], {},
         "one input named 'fmer_patches'; the inputs are ['au_frames', 'flow']"),
        (TINY_SPECS, dict(p3d_filters=0), "p3d_filters must be a positive integer, got 0"),
        (TINY_SPECS, dict(dropout=1.0), "dropout must be in [0, 1), got 1.0"),
    ],
)
def test_invalid_arguments(specs, arguments, message):
    arguments = {"num_classes": 3, **arguments}
    with pytest.raises(ValueError) as error:
        build_fmer_model(specs, **arguments)
    assert message in str(error.value)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: P3DBottleneck(4, unit="D"), "unit must be one of ('A', 'B', 'C', '2D'), got 'D'"),
        (lambda: LandmarkConvolution(kernel_size=4), "kernel_size must be odd, got 4"),
        (lambda: TransformerEncoder(dropout=1.0), "dropout must be in [0, 1), got 1.0"),
        (lambda: AUBinaryCrossentropy(weight=-1.0), "weight must be non-negative, got -1.0"),
        (lambda: fmer_loss(au_loss_weight=-0.5), "weight must be non-negative, got -0.5"),
        (lambda: learning_rate_schedule(factor=0.0), "factor must be in (0, 1], got 0.0"),
        (lambda: learning_rate_schedule(constant_epochs=0),
         "constant_epochs must be a positive integer, got 0"),
    ],
)
def test_invalid_layer_and_loss_arguments(make, message):
    with pytest.raises(ValueError) as error:
        make()
    assert message in str(error.value)


def test_shape_errors():
    with pytest.raises(ValueError, match="without projection the block must keep the shape"):
        P3DBottleneck(2, unit="A").build((None, 2, 4, 4, 4))
    with pytest.raises(ValueError, match="brow_aus must leave the mouth at least one of 3 AUs"):
        AUFusion(brow_aus=3).build([(None, 4), (None, 4), (None, 3, 4)])

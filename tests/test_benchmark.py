"""`python -m mer bench`: runs on tiny shapes and prints every key (no timing is asserted), with
the machine's vector ISA, the oneDNN ISA and TensorFlow's op determinism as runs set it; the
analytic FLOPs checked against TensorFlow's profiler and a count by hand."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from mer.benchmark import (
    CPU_ISAS,
    KEYS,
    BenchPlan,
    RepeatedBatch,
    build_epoch,
    cpu_isa,
    second_output_targets,
)
from mer.cli import main
from mer.data import sources
from mer.data.sources import preprocess
from mer.models.builders import build_mlsp_model
from mer.models.flops import forward_flops, training_flops
from mer.step_profile import attribute_op, op_totals, part_shares, profile_training, summarize_ops
from tests.test_end_to_end import TINY
from tests.test_fmer_end_to_end import TINY_FMER

# 28x28 inputs, one Inception block (half the tracing of two), a tiny head: 4 MFLOP per clip
DUAL_ATME = ["data.flow.face_size=64", "model.inception_filters=[6]", "model.dense_units=8"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("config", "overrides", "inputs", "onednn_isa", "convolution", "profile"),
    [
        ("config/me_model.yaml", [*TINY, "model.convolution=stacked"], [["frames", [4, 16, 16, 3]]],
         None, "stacked", ["--profile"]),
        ("config/dual_atme.yaml", DUAL_ATME, [["flow", [28, 28, 3]], ["flow_puzzle", [28, 28, 3]]],
         "AVX2", "plain", []),
    ],
)
def test_bench_prints_one_json_object_with_every_key(
    config, overrides, inputs, onednn_isa, convolution, profile, tmp_path, capsys, monkeypatch
):
    """For each family; the preprocessing timed is that of the configured inputs; the oneDNN
    ISA is the one ONEDNN_MAX_CPU_ISA names, if set; the form of the first convs is named;
    with --profile, the op table of the compute steps."""
    if onednn_isa:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", onednn_isa)
    else:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    timed = []

    def recorded_preprocess(data, manifest):
        timed.append(data.input_names())
        return preprocess(data, manifest)

    monkeypatch.setattr(sources, "preprocess", recorded_preprocess)
    saved = tmp_path / "tiny.json"
    arguments = ["bench", "--quick", "--clips", "6", "--save", str(saved), "--config", config]
    arguments += profile
    for item in overrides + ["train.batch_size=2", "data.workers=3"]:
        arguments += ["--set", item]
    assert main(arguments) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(KEYS) <= set(result)
    for key in KEYS[:11]:
        assert result[key] > 0, key
    assert result["backend"] == "tensorflow" and result["dtype"] == "float32"
    assert result["device"].startswith("cpu")
    assert result["cpu_isa"] in (*CPU_ISAS, "unknown")
    assert result["onednn_isa"] == (onednn_isa or "default (all the CPU has)")
    assert isinstance(result["tensorflow_onednn"], bool)
    assert result["deterministic"] is True and result["workers"] == 3
    assert result["convolution"] == convolution
    assert result["inputs"] == inputs and result["input_shape"] == inputs[0][1]
    assert timed == [[name for name, _ in inputs]]
    parts = {(row["part"], row["pass"]) for row in result.get("step_profile", [])}
    assert bool(profile) == ({("branch5_conv", "forward"), ("branch5_conv", "backward")} <= parts)
    assert json.loads(saved.read_text()) == result
    plot = tmp_path / "bench.png"
    assert main(["bench-plot", str(plot), str(saved), str(saved)]) == 0
    assert plot.stat().st_size > 0


class _Batch:
    """A stand-in batch that counts how many of its kind are alive."""

    alive = 0
    most_alive = 0

    def __init__(self):
        _Batch.alive += 1
        _Batch.most_alive = max(_Batch.most_alive, _Batch.alive)

    def __del__(self):
        _Batch.alive -= 1


class _Batches(keras.utils.PyDataset):
    def __init__(self, count):
        super().__init__()
        self.count, self.built = count, []

    def __len__(self):
        return self.count

    def __getitem__(self, index):
        self.built.append(index)
        return _Batch()


def test_the_input_feed_builds_every_batch_and_keeps_none():
    batches = _Batches(20)
    build_epoch(batches, map)
    assert batches.built == list(range(20))
    assert (_Batch.alive, _Batch.most_alive) == (0, 1)


def test_cpu_isa_is_the_widest_flag():
    assert cpu_isa("processor : 0\nflags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512bw\n") == (
        "avx512f"
    )
    assert cpu_isa("flags : fpu sse4_2 avx avx2 fma\nflags : fpu sse4_2 avx avx2 fma\n") == "avx2"
    assert cpu_isa("Features : fp asimd sve\n") == "unknown"  # an Arm CPU


def test_bench_plan_uses_whole_batches():
    assert BenchPlan.make(True, 5, 4).clips == 8
    with pytest.raises(ValueError, match="got 0"):
        BenchPlan.make(False, 0, 8)


def test_forward_flops_of_the_published_model_by_hand():
    model = build_mlsp_model((10, 128, 128, 3), 3)
    convs = 2 * 10 * 128 * 128 * 32 * 3 * (5**3 + 3**3)  # the two branches, 'same' padding
    convs += 2 * 4 * 43 * 43 * 32 * 64 * 3**3  # the merge conv after the first pooling
    total = forward_flops(model)
    assert convs < total < 1.02 * convs  # everything else is about 1 %


def _conv_dense_model() -> keras.Model:
    """(4, 8, 8, 2) -> Conv3D(3, 3x3x3, same) -> Flatten (768) -> Dense(5)."""
    inputs = keras.Input((4, 8, 8, 2))
    features = keras.layers.Conv3D(3, 3, padding="same")(inputs)
    return keras.Model(inputs, keras.layers.Dense(5)(keras.layers.Flatten()(features)))


# The small model's multiply-adds for one clip, counted by hand.
CONV_MACS = (4 * 8 * 8) * 3 * (3 * 3 * 3 * 2)  # 256 positions x 3 filters x a 3x3x3x2 kernel
DENSE_MACS = (4 * 8 * 8 * 3) * 5  # 768 inputs x 5 units


def test_forward_flops_equal_tensorflows_profile():
    """TensorFlow's graph profiler counts the forward pass on its own; biases are left out,
    as forward_flops leaves them (element-wise)."""
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    model = _conv_dense_model()
    forward = tf.function(model).get_concrete_function(
        tf.TensorSpec((1, *model.input_shape[1:]))
    )
    graph = convert_variables_to_constants_v2(forward).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profile = tf.compat.v1.profiler.profile(graph=graph, options=options)
    kinds = {operation.name: operation.type for operation in graph.get_operations()}
    counted = {kinds[node.name]: node.float_ops for node in profile.children}
    assert counted["Conv3D"] == 2 * CONV_MACS and counted["MatMul"] == 2 * DENSE_MACS
    assert forward_flops(model) == counted["Conv3D"] + counted["MatMul"]


def test_training_flops_of_a_small_model_by_hand():
    """Forward, then the weight gradients (as many multiply-adds again), then the input
    gradients, which the Dense needs (its input comes from the conv) and the conv does not
    (its input is the clip)."""
    forward = CONV_MACS + DENSE_MACS
    weight_gradients = CONV_MACS + DENSE_MACS
    input_gradients = DENSE_MACS
    model = _conv_dense_model()
    assert training_flops(model) == 2 * (forward + weight_gradients + input_gradients)


def test_profiled_ops_go_to_their_layer_and_pass():
    layers = {"branch5_conv", "gru", "gru_1x"}
    cases = {
        "StatefulPartitionedCall/mlsp_1/branch5_conv_1/convolution:_MklNativeFusedConv3D": (
            "branch5_conv", "forward", "_MklNativeFusedConv3D"),
        "StatefulPartitionedCall/gradient_tape/mlsp_1/branch5_conv_1/Conv3D/"
        "Conv3DBackpropFilterV2:_MklNativeConv3DBackpropFilterV2": (
            "branch5_conv", "backward", "_MklNativeConv3DBackpropFilterV2"),
        "StatefulPartitionedCall/mlsp_1/gru_1x/MatMul:MatMul": ("gru_1x", "forward", "MatMul"),
        "StatefulPartitionedCall/adam/Sub_190:Sub": ("adam", "forward", "Sub"),
        "StatefulPartitionedCall/compile_loss/weighted/Sum:Sum": ("compile_loss", "forward", "Sum"),
        "StatefulPartitionedCall/gradient_tape/Tile_7:Tile": ("train_step", "backward", "Tile"),
        "StatefulPartitionedCall/Square_2:Square": ("train_step", "forward", "Square"),
    }
    for name, expected in cases.items():
        assert attribute_op(name, layers) == expected, name
    for outside in ("ExecutorState::Process", "EagerExecute", "Iterator::Root::Prefetch"):
        assert attribute_op(outside, layers) is None


def test_the_op_table_is_largest_first_with_the_small_ops_in_one_row():
    conv = "StatefulPartitionedCall/m/conv/Conv3D:Conv3D"
    events = [(conv, 0.5), (conv, 0.4), ("StatefulPartitionedCall/m/dense/MatMul:MatMul", 0.096),
              ("StatefulPartitionedCall/adam/Sub:Sub", 0.004), ("EagerExecute", 9.0)]
    totals = op_totals(events, {"conv", "dense"})
    rows = summarize_ops(totals, steps=2)
    assert [(row["part"], row["op"]) for row in rows] == [
        ("conv", "Conv3D"), ("dense", "MatMul"), ("other", "below 0.5 % each"),
    ]
    assert [row["ms_per_step"] for row in rows] == [450.0, 48.0, 2.0]
    assert [row["share"] for row in rows] == [0.9, 0.096, 0.004]
    assert part_shares(totals) == {"conv": 0.9, "dense": 0.096, "adam": 0.004}
    with pytest.raises(ValueError, match="no op of the training step"):
        op_totals([("EagerExecute", 1.0)], {"conv"})


@pytest.mark.slow
def test_a_profiled_fit_times_each_layers_forward_and_weight_gradient_ops():
    model = _conv_dense_model()
    model.compile(optimizer="adam", loss="mse")
    rng = np.random.default_rng(0)
    batches = RepeatedBatch(
        rng.standard_normal((2, 4, 8, 8, 2), dtype=np.float32), np.zeros((2, 5), np.float32), 3
    )
    model.fit(batches, epochs=1, verbose=0)  # traced before the profile, as bench does
    result = profile_training(model, batches, 3)
    rows = result["step_profile"]
    conv = model.layers[1].name
    assert {row["pass"] for row in rows if row["part"] == conv} >= {"forward", "backward"}
    assert any("Conv3DBackpropFilter" in row["op"] for row in rows if row["part"] == conv)
    assert abs(sum(row["share"] for row in rows) - 1) < 1e-3
    assert abs(sum(result["profile_parts"].values()) - 1) < 1e-3 and conv in result["profile_parts"]
    assert all(row["share"] > 0 for row in rows) and result["profile_wall_ms_per_step"] > 0


def test_profile_needs_tensorflow(monkeypatch, capsys):
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    assert main(["bench", "--profile", "--quick"]) == 2
    assert "bench --profile reads TensorFlow's profiler: run it with KERAS_BACKEND" in (
        capsys.readouterr().err
    )


def test_the_bench_trains_a_second_output_on_targets_of_its_width():
    """FMER's AU logits get a target row per clip (the bench once fed them nothing, and
    Keras refused the fit); a one-output family gets none."""
    from mer.config import PROJECT_ROOT, load_config
    from mer.data.inputs import input_specs
    from mer.training.loso import build_model

    fmer = load_config(PROJECT_ROOT / "config" / "fmer.yaml", TINY_FMER)
    model = build_model(fmer, input_specs(fmer.data))
    targets = second_output_targets(fmer, 5)
    assert len(model.outputs) == 2 and targets.shape == (5, model.outputs[1].shape[-1])
    assert not np.isnan(targets).any()  # every clip counts in the AU term
    mlsp = load_config(PROJECT_ROOT / "config" / "me_model.yaml", TINY)
    assert second_output_targets(mlsp, 5) is None

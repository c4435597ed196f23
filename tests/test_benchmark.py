"""`python -m mer bench`: runs on tiny shapes and prints every key (no timing is asserted)."""

import json

import pytest

from mer.benchmark import KEYS, BenchPlan
from mer.cli import main
from mer.models.builders import build_mlsp_model
from mer.models.flops import forward_flops, training_flops
from tests.test_end_to_end import TINY


def test_bench_prints_one_json_object_with_every_key(tmp_path, capsys):
    saved = tmp_path / "tiny.json"
    arguments = ["bench", "--quick", "--clips", "6", "--save", str(saved)]
    for item in TINY + ["train.batch_size=2"]:
        arguments += ["--set", item]
    assert main(arguments) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(KEYS) <= set(result)
    for key in KEYS[:9]:
        assert result[key] > 0, key
    assert result["backend"] == "tensorflow" and result["dtype"] == "float32"
    assert result["device"].startswith("cpu")
    assert result["input_shape"] == [4, 16, 16, 3]
    assert json.loads(saved.read_text()) == result
    plot = tmp_path / "bench.png"
    assert main(["bench-plot", str(plot), str(saved), str(saved)]) == 0
    assert plot.stat().st_size > 0


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


def test_training_flops_skip_the_input_gradient_of_the_first_layers():
    model = build_mlsp_model((10, 128, 128, 3), 3)
    first = 2 * 10 * 128 * 128 * 32 * 3 * (5**3 + 3**3)  # the branches read the model input
    forward = forward_flops(model)
    assert training_flops(model) == 3 * forward - first

"""Scale-out end to end: Ray fold tasks, and `--folds` parts merged, each give the predictions
of one local run. A 2-subject replica and a flat tiny model (no attention, recurrence or
pooling layer: the orchestration is under test, not the network) keep every run to seconds."""

import contextlib
import io
import json
import shutil
import signal
from pathlib import Path

import pandas as pd
import pytest

from mer.cli import main, run_script
from tests.data.replicas import class_folder_dataset
from tests.test_end_to_end import FLAT, TINY, as_arguments, workspace

pytestmark = pytest.mark.slow  # training runs through the entry points


@pytest.fixture(scope="module")
def arguments(tmp_path_factory):
    """`arguments(runs, *options)`: the tiny experiment's command line, writing to `runs`."""
    root = tmp_path_factory.mktemp("scale_out")
    sheet = class_folder_dataset(root / "dataset", subjects=2)
    overrides = (
        TINY
        + FLAT
        + [
            "run.tensorboard=false",
            f"data.root={root / 'dataset'}",
            f"data.sheet={sheet}",
        ]
    )

    def make(runs: str, *options: str) -> list[str]:
        return as_arguments([*overrides, *workspace(root, runs)]) + list(options)

    make.root = root
    return make


def _last_path(output: str, label: str) -> Path:
    line = output.strip().splitlines()[-1]
    assert line.startswith(label), output[-2000:]
    return Path(line.removeprefix(label))


@pytest.fixture(scope="module")
def local_run(arguments):
    """The reference: one full run with the local executor."""
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        assert run_script("ME_model", "me_model.yaml", "test", arguments("local")) == 0
    return _last_path(output.getvalue(), "Results: ")


def test_ray_executor_gives_the_local_predictions(arguments, local_run, monkeypatch, capsys):
    ray = pytest.importorskip(
        "ray", reason="ray is optional: pip install -r requirements-ray.txt; CI installs it"
    )
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # a loopback-only test cluster
    sigterm = signal.getsignal(signal.SIGTERM)  # ray.init replaces it
    # a new cluster of one CPU, so one fold task at a time: this test then took 24-25 s of CPU
    # time against 32-33 s with two CPUs (2-core Zen 4 EPYC, all of its CPU), where the
    # suite's other workers want the cores too
    ray.init("local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        code = run_script(
            "ME_model", "me_model.yaml", "test", arguments("ray", "--set", "run.executor=ray")
        )
    finally:
        ray.shutdown()
        signal.signal(signal.SIGTERM, sigterm)
    output = capsys.readouterr().out
    assert code == 0, output[-2000:]
    assert "Ray: 2 fold tasks submitted (1 CPU, 0 GPU each)" in output
    run_dir = _last_path(output, "Results: ")
    for subject in ("1", "2"):  # the tasks' files, written by the driver
        for name in ("fold_result.json", "history.json", "model.weights.h5"):
            assert (run_dir / "folds" / subject / name).is_file()
    assert (run_dir / "predictions.csv").read_text() == (local_run / "predictions.csv").read_text()


def test_folds_in_parts_then_merge_equal_a_full_run(arguments, local_run, capsys):
    typo = run_script("ME_model", "me_model.yaml", "test", arguments("typo", "--folds", "1,x"))
    assert typo == 2 and "no fold holds out x; the folds are 1, 2" in capsys.readouterr().err
    assert not (arguments.root / "typo").exists()  # checked before the run folder is made

    assert run_script("ME_model", "me_model.yaml", "test", arguments("a", "--folds", "1")) == 0
    output = capsys.readouterr().out
    part_a = _last_path(output, "Fold results: ")
    assert "Folds done: 1 of 2; missing: 2." in output
    assert not (part_a / "predictions.csv").exists()
    assert run_script("ME_model", "me_model.yaml", "test", arguments("b", "--folds", "2")) == 0
    part_b = _last_path(capsys.readouterr().out, "Fold results: ")
    assert [path.name for path in (part_b / "folds").iterdir()] == ["2"]

    assert main(["merge", str(part_a)]) == 2
    assert "no fold result for 2 in" in capsys.readouterr().err
    other = arguments.root / "other_seed"
    shutil.copytree(part_b, other)
    config = other / "config.yaml"
    config.write_text(config.read_text().replace("seed: 42", "seed: 7"))
    assert main(["merge", str(part_a), str(other)]) == 2
    assert "seed is 7 there, 42 here" in capsys.readouterr().err

    assert main(["merge", str(part_a), str(part_b)]) == 0
    merged = _last_path(capsys.readouterr().out, "Results: ")
    assert merged.parent == part_a.parent and merged.name.startswith("merge-dataset-")
    for name in ("predictions.csv", "per_subject.csv"):
        assert (merged / name).read_text() == (local_run / name).read_text(), name
    summary = json.loads((merged / "summary.json").read_text())
    full = json.loads((local_run / "summary.json").read_text())
    for key in ("uf1", "uar", "acc", "protocol", "dataset", "parameters", "seed"):
        assert summary[key] == full[key], key
    assert summary["merged_from"] == [str(part_a), str(part_b)]
    for name in ("confusion_matrix.png", "training_curves.png", "per_subject_uf1.png"):
        assert (merged / name).stat().st_size > 0
    for subject in ("1", "2"):  # a complete run folder: merging it again needs nothing else
        assert (merged / "folds" / subject / "fold_result.json").is_file()
    assert len(pd.read_csv(merged / "per_subject.csv")) == 2

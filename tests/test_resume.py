"""Interruption and resume: a run killed (SIGKILL), resumed, interrupted (SIGINT) and resumed
again equals an uninterrupted run; a resume that would change the run stops in one line.

One uninterrupted run of a flat tiny network (the orchestration is under test, not the network;
tests/training/test_loso.py shows a reused MLSP network predicts as a new one) is the reference
of the first test, and its copies are what the second one tries to resume."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from mer.cli import run_script
from mer.config import PROJECT_ROOT
from mer.training import executors
from tests.data.replicas import class_folder_dataset
from tests.test_end_to_end import FLAT, TINY, as_arguments, workspace


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """`experiment(runs)`: the 3-subject run's command line, writing to `runs` under
    `experiment.root`."""
    root = tmp_path_factory.mktemp("resume")
    sheet = class_folder_dataset(root / "dataset")
    overrides = TINY + FLAT + [
        "train.epochs=2",
        "run.tensorboard=false",
        f"data.root={root / 'dataset'}",
        f"data.sheet={sheet}",
    ]

    def arguments(runs: str) -> list[str]:
        return as_arguments([*overrides, *workspace(root, runs)])

    arguments.root = root
    return arguments


@pytest.fixture(scope="module")
def whole_run(experiment):
    """The uninterrupted run's folder."""
    assert run_script("ME_model", "me_model.yaml", "test", experiment("whole")) == 0
    (run_dir,) = (experiment.root / "whole").iterdir()
    return run_dir


def _run_dir(output):
    return output.strip().splitlines()[-1].split("Results: ")[1]


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_predictions(
    experiment, whole_run, tmp_path, monkeypatch, capsys
):
    cut_runs = experiment.root / "cut"
    command = [sys.executable, str(PROJECT_ROOT / "ME_model.py"), *experiment("cut")]
    log = tmp_path / "cut.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.monotonic() + 300
    try:
        while not list(cut_runs.glob("*/folds/*/fold_result.json")):
            assert process.poll() is None, log.read_text()[-3000:]  # ended before the kill
            assert time.monotonic() < deadline, "no fold finished in time"
            time.sleep(0.02)  # a fold takes far longer: the kill lands in the second one
    finally:
        process.kill()  # SIGKILL: no clean-up at all
        process.wait()
    (cut,) = cut_runs.iterdir()
    assert len(list(cut.glob("folds/*/fold_result.json"))) == 1
    assert not (cut / "predictions.csv").exists()

    # Resumed here, then Ctrl-C once the resumed run is in its second fold (the run's third):
    # the guard stops it at the next batch, the two finished folds kept.
    train_fold = executors.train_fold
    trained = []

    def interrupted_in_the_second(*arguments, **keywords):
        trained.append(arguments[0].subject)
        if len(trained) == 2:
            os.kill(os.getpid(), signal.SIGINT)  # lands mid-fold: only a flag is set
        return train_fold(*arguments, **keywords)

    monkeypatch.setattr(executors, "train_fold", interrupted_in_the_second)
    assert run_script("ME_model", "me_model.yaml", "test", ["--resume", str(cut)]) == 130
    error = capsys.readouterr().err
    assert f"python ME_model.py --resume {cut}" in error and "Traceback" not in error
    assert trained == ["2", "3"]
    assert len(list(cut.glob("folds/*/fold_result.json"))) == 2
    monkeypatch.undo()

    assert run_script("ME_model", "me_model.yaml", "test", ["--resume", str(cut)]) == 0
    output = capsys.readouterr().out
    assert output.count("completed earlier, result reused") == 2
    assert _run_dir(output) == str(cut)
    assert (cut / "predictions.csv").read_text() == (whole_run / "predictions.csv").read_text()


def test_resume_needs_a_run_folder(tmp_path, capsys):
    assert run_script("ME_model", "me_model.yaml", "test", ["--resume", str(tmp_path)]) == 2
    assert "config.yaml" in capsys.readouterr().err


@pytest.mark.slow
def test_resume_refuses_other_settings_changed_data_and_old_seeding(
    experiment, whole_run, tmp_path, capsys
):
    """A copy of the finished run; each resume below must stop before training, in one
    line."""
    run = tmp_path / whole_run.name
    shutil.copytree(whole_run, run)

    def resume(*extra):
        code = run_script("ME_model", "me_model.yaml", "test", ["--resume", str(run), *extra])
        error = capsys.readouterr().err.strip()
        return code, error

    code, error = resume("--set", "train.epochs=50", "--set", "model.dropout=0.1")
    assert code == 2 and len(error.splitlines()) == 1
    assert "model.dropout 0.3 -> 0.1; train.epochs 2 -> 50" in error
    where_and_threads = ("--set", "run.tensorboard=true", "--set", "data.workers=3")
    assert resume(*where_and_threads, "--folds", "1")[0] == 0

    video = experiment.root / "dataset" / "positive" / "s2_positive.avi"  # the run's data
    status = video.stat()
    os.utime(video, ns=(status.st_atime_ns, status.st_mtime_ns + 10**9))  # an edited clip
    try:
        code, error = resume()
    finally:
        os.utime(video, ns=(status.st_atime_ns, status.st_mtime_ns))
    assert code == 2 and "the data changed since the run started: 1 sample" in error
    assert "s2_positive" in error and "Traceback" not in error

    result_file = run / "folds" / "1" / "fold_result.json"
    stored = json.loads(result_file.read_text())
    old = {key: value for key, value in stored.items() if key not in ("seed", "seed_scheme")}
    result_file.write_text(json.dumps(old))  # as an earlier version wrote it
    (run / "folds" / "3" / "fold_result.json").unlink()  # a fold left to train
    code, error = resume()
    assert code == 2 and "seeded as 'seed + fold index'" in error

    (run / "data_fingerprint.json").unlink()  # an older run folder, whose fold held other clips
    result_file.write_text(json.dumps({**stored, "test": [0]}))
    code, error = resume()
    assert code == 2 and "Traceback" not in error
    assert error.splitlines()[-1].startswith("ME_model: data error: ")  # one line after tqdm's
    assert "the fold's clips differ from the current data" in error.splitlines()[-1]

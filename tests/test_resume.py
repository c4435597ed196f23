"""Interruption and resume: a run killed (SIGKILL), resumed, interrupted (SIGINT) and resumed
again equals an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time

from mer.cli import run_script
from mer.config import PROJECT_ROOT
from tests.data.replicas import class_folder_dataset
from tests.test_end_to_end import TINY, as_arguments, workspace


def _arguments(tmp_path, runs):
    sheet = tmp_path / "dataset" / "coding.xlsx"
    if not sheet.exists():
        class_folder_dataset(tmp_path / "dataset")
    overrides = TINY + [
        "train.epochs=2",
        "run.tensorboard=false",
        f"data.root={tmp_path / 'dataset'}",
        f"data.sheet={sheet}",
        *workspace(tmp_path, runs),
    ]
    return as_arguments(overrides)


def _run_dir(output):
    return output.strip().splitlines()[-1].split("Results: ")[1]


def _interrupt_after_next_fold(command, folds_dir, done, signal_number):
    """Starts `command`, waits until fold number `done` + 1 is saved, then sends the signal."""
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 300
    try:
        while len(list(folds_dir().glob("*/fold_result.json"))) <= done:
            assert process.poll() is None, "the run ended before it could be interrupted"
            assert time.monotonic() < deadline, "no fold finished in time"
            time.sleep(0.2)
    finally:
        process.send_signal(signal_number)  # mid-way through the next fold
        _, error = process.communicate()
    return process.returncode, error


def test_killed_run_resumes_to_the_same_predictions(tmp_path, capsys):
    assert run_script("ME_model", "me_model.yaml", "test", _arguments(tmp_path, "whole")) == 0
    whole = _run_dir(capsys.readouterr().out)

    def folds_dir():
        return next((tmp_path / "cut").glob("*/folds"), tmp_path / "cut")

    script = str(PROJECT_ROOT / "ME_model.py")
    command = [sys.executable, script, *_arguments(tmp_path, "cut")]
    _interrupt_after_next_fold(command, folds_dir, 0, signal.SIGKILL)  # no clean-up at all
    (cut,) = (tmp_path / "cut").iterdir()
    assert len(list(cut.glob("folds/*/fold_result.json"))) == 1
    assert not (cut / "predictions.csv").exists()

    command = [sys.executable, script, "--resume", str(cut)]
    code, error = _interrupt_after_next_fold(command, folds_dir, 1, signal.SIGINT)  # Ctrl-C
    assert code == 130, error
    assert f"--resume {cut}" in error and "Traceback" not in error
    assert len(list(cut.glob("folds/*/fold_result.json"))) == 2

    assert run_script("ME_model", "me_model.yaml", "test", ["--resume", str(cut)]) == 0
    output = capsys.readouterr().out
    assert output.count("completed earlier, result reused") == 2
    assert _run_dir(output) == str(cut)
    resumed = (cut / "predictions.csv").read_text()
    assert resumed == (tmp_path / "whole" / whole.split("/")[-1] / "predictions.csv").read_text()


def test_resume_needs_a_run_folder(tmp_path, capsys):
    assert run_script("ME_model", "me_model.yaml", "test", ["--resume", str(tmp_path)]) == 2
    assert "config.yaml" in capsys.readouterr().err


def test_resume_refuses_other_settings_changed_data_and_old_seeding(tmp_path, capsys):
    """One fold of a run is trained; each resume below must stop before training, in one line."""
    arguments = _arguments(tmp_path, "runs")
    assert run_script("ME_model", "me_model.yaml", "test", [*arguments, "--folds", "1"]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    capsys.readouterr()

    def resume(*extra):
        code = run_script("ME_model", "me_model.yaml", "test", ["--resume", str(run), *extra])
        error = capsys.readouterr().err.strip()
        return code, error

    code, error = resume("--set", "train.epochs=50", "--set", "model.dropout=0.1")
    assert code == 2 and len(error.splitlines()) == 1
    assert "model.dropout 0.3 -> 0.1; train.epochs 2 -> 50" in error
    assert resume("--set", "run.tensorboard=true", "--folds", "1")[0] == 0  # where it writes

    video = tmp_path / "dataset" / "positive" / "s2_positive.avi"
    status = video.stat()
    os.utime(video, ns=(status.st_atime_ns, status.st_mtime_ns + 10**9))  # an edited clip
    code, error = resume()
    assert code == 2 and "the data changed since the run started: 1 sample" in error
    assert "s2_positive" in error and "Traceback" not in error
    os.utime(video, ns=(status.st_atime_ns, status.st_mtime_ns))

    result_file = run / "folds" / "1" / "fold_result.json"
    stored = json.loads(result_file.read_text())
    old = {key: value for key, value in stored.items() if key not in ("seed", "seed_scheme")}
    result_file.write_text(json.dumps(old))  # as an earlier version wrote it
    code, error = resume()
    assert code == 2 and "seeded as 'seed + fold index'" in error

    (run / "data_fingerprint.json").unlink()  # an older run folder, whose fold held other clips
    result_file.write_text(json.dumps({**stored, "test": [0]}))
    code, error = resume()
    assert code == 2 and "Traceback" not in error
    assert error.splitlines()[-1].startswith("ME_model: data error: ")  # one line after tqdm's
    assert "the fold's clips differ from the current data" in error.splitlines()[-1]

"""A tiny LOSO run of ME_model.py: 3 subjects, tiny frames, 1 epoch, every output checked.

The tiny MLSP network (attention, GRU, MSMH) costs most of a run on TensorFlow: tracing its
training step takes seconds on 2 cores, a flat network's a fraction of that. So the first test
trains the tiny MLSP network; the tests of protocols, layouts and errors, whose subject is the
pipeline around the network, train a flat one (FLAT). Keras's steps run eagerly here
(`eager_keras_steps`): at these sizes tracing costs more than the few steps it would speed up
(this file took 21 s of CPU instead of 28 s on 2 cores); the demos, tests/test_golden.py and
tests/test_resume.py train in graph mode, as runs do.
"""

import errno
import json
import logging
import shutil

import pandas as pd
import pytest

from mer.cli import main, run_script
from mer.config import load_config
from mer.data.sources import preprocess
from tests.data.replicas import class_folder_dataset

pytestmark = pytest.mark.usefixtures("eager_keras_steps")

TINY_MODEL = [
    "model.branch_filters=4",
    "model.merge_filters=4",
    "model.gru_units=32",
    "model.heads=4",
    "model.dense_units=[8, 8]",
    "model.head_units=[8, 4]",
]
TINY = [
    "data.frames=4",
    "data.size=16",
    "data.sampler=even",
    "train.epochs=1",
    "train.batch_size=4",
    *TINY_MODEL,
]
# No attention, recurrence or pooling layer: for the tests of the pipeline around the network
FLAT_LAYERS = ["model.temporal=none", "model.pooling=none", "model.cam=none"]
FLAT = [*FLAT_LAYERS, "model.branches=1"]  # and one branch, where one input allows it


def workspace(tmp_path, runs: str = "runs") -> list[str]:
    """Overrides that keep a test run's cache, run folders and split lists under tmp_path."""
    return [
        f"data.cache_dir={tmp_path / 'cache'}",
        f"run.output_dir={tmp_path / runs}",
        f"run.split_lists_dir={tmp_path / 'txt'}",
    ]


def as_arguments(overrides) -> list[str]:
    """`--set KEY=VALUE` for each override, as a script's command line."""
    return [argument for item in overrides for argument in ("--set", item)]


@pytest.fixture
def tiny_run_arguments(tmp_path):
    sheet = class_folder_dataset(tmp_path / "dataset")
    overrides = TINY + [f"data.root={tmp_path / 'dataset'}", f"data.sheet={sheet}"]
    return as_arguments(overrides + workspace(tmp_path))


@pytest.mark.slow
def test_tiny_loso_run_writes_every_output(tiny_run_arguments, tmp_path, capsys, caplog):
    assert run_script("ME_model", "me_model.yaml", "test", tiny_run_arguments) == 0
    output = capsys.readouterr().out.strip().splitlines()
    assert output[-1].startswith("Results: ")
    run_dir = tmp_path / "runs" / output[-1].split("Results: ")[1].split("/")[-1]
    assert run_dir.name.startswith("ME_model-dataset-")
    assert any(line.startswith("Overall (MEGC2019 pooled, 9 clips)") for line in output)

    predictions = pd.read_csv(run_dir / "predictions.csv", dtype={"subject": str})
    assert list(predictions.columns) == [
        "subject",
        "sample",
        "y_true",
        "y_pred",
        "prob_negative",
        "prob_positive",
        "prob_surprise",
    ]
    assert sorted(predictions["sample"]) == sorted(
        f"s{s}_{c}" for s in (1, 2, 3) for c in ("negative", "positive", "surprise")
    )  # every clip predicted exactly once
    sums = predictions[["prob_negative", "prob_positive", "prob_surprise"]].sum(axis=1)
    assert (abs(sums - 1) < 1e-4).all()

    summary = json.loads((run_dir / "summary.json").read_text())
    for key in ("uf1", "uar", "acc", "mean_over_subjects", "versions", "seed", "timings"):
        assert key in summary
    assert summary["clips"] == 9 and summary["subjects"] == 3
    assert (summary["family"], summary["inputs"]) == ("mlsp", ["frames"])
    assert summary["seed_scheme"].startswith("SeedSequence(seed")
    assert summary["caveats"] == [] and summary["annotated_test_inputs"] == []
    assert summary["test_inputs_use_annotations"] is False
    assert "annotation_only_reference" not in summary  # a run without regions
    per_subject = pd.read_csv(run_dir / "per_subject.csv")
    assert list(per_subject["subject"]) == [1, 2, 3]
    for name in (
        "config.yaml",
        "manifest.csv",
        "confusion_matrix.png",
        "training_curves.png",
        "class_distribution.png",
        "per_subject_uf1.png",
    ):
        assert (run_dir / name).stat().st_size > 0, name
    for subject in ("1", "2", "3"):
        fold = run_dir / "folds" / subject
        assert (fold / "model.weights.h5").is_file()
        assert json.loads((fold / "history.json").read_text())["loss"]
        assert list((fold / "tensorboard").rglob("events.out.tfevents.*"))

    # Preprocessing again (a second run, another fold) takes every clip from the cache.
    config = load_config(run_dir / "config.yaml")
    manifest = pd.read_csv(run_dir / "manifest.csv", dtype={"subject": str})
    with caplog.at_level(logging.INFO, logger="mer.data.sources"):
        hits = preprocess(config.data, manifest).hits
    assert hits == 9 and "9 of 9 clips came from the cache" in caplog.text


def test_unwritable_output_folder_is_a_one_line_error(tiny_run_arguments, tmp_path, capsys):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    arguments = tiny_run_arguments + ["--set", f"run.output_dir={blocker / 'runs'}"]
    assert run_script("ME_model", "me_model.yaml", "test", arguments) == 2
    error = capsys.readouterr().err
    assert "cannot write" in error and "not-a-folder" in error and "Traceback" not in error


def test_a_full_disk_is_a_one_line_error(tiny_run_arguments, monkeypatch, capsys):
    def disk_full(descriptor: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("mer.io.os.fsync", disk_full)
    assert run_script("ME_model", "me_model.yaml", "test", tiny_run_arguments) == 2
    error = capsys.readouterr().err
    assert "No space left on device" in error and "config.yaml" in error
    assert "Traceback" not in error


@pytest.mark.slow
def test_paper_protocol_outputs_are_labelled_optimistic(tiny_run_arguments, tmp_path, capsys):
    arguments = tiny_run_arguments + as_arguments(
        ["eval.protocol=paper", "run.tensorboard=false", *FLAT]
    )
    assert run_script("ME_model", "me_model.yaml", "test", arguments) == 0
    output = capsys.readouterr().out
    assert "FOR COMPARISON ONLY (optimistic: epoch chosen on the test subject)" in output
    assert output.index("NOT A CLEAN LOSO ESTIMATE") < output.index("Subject  Clips")
    run_dir = tmp_path / "runs" / output.strip().splitlines()[-1].split("/")[-1]
    assert "paper-optimistic" in run_dir.name
    summary = json.loads((run_dir / "summary.json").read_text())
    assert "optimistic: epoch chosen on the test subject" in summary["protocol"]
    assert [caveat["label"] for caveat in summary["caveats"]] == ["paper-optimistic"]
    assert summary["optimistic"] and not summary["test_inputs_use_annotations"]
    for name in ("predictions.csv", "per_subject.csv"):
        assert set(pd.read_csv(run_dir / name)["caveats"]) == {"paper-optimistic"}


def test_dry_run_summary_and_config_errors(tiny_run_arguments, tmp_path, capsys):
    """What the script answers without training: run_script's, all that the script calls
    (tests/test_resume.py runs the script itself in a new interpreter)."""

    def run(*arguments):
        code = run_script("ME_model", "me_model.yaml", "test", list(arguments))
        return code, capsys.readouterr()

    code, dry = run(*tiny_run_arguments, "--dry-run")
    assert code == 0, dry.err[-2000:]
    assert "9 clips, 3 subjects" in dry.out and "LOSO, 3 folds" in dry.out
    assert not (tmp_path / "runs").exists()  # a dry run writes nothing
    code, too_many = run(*tiny_run_arguments, "--set", "train.validation_subjects=2", "--dry-run")
    assert code == 2 and "train.validation_subjects must be in [0, 1] for 3 subjects, got 2" in (
        too_many.err
    )
    code, summary = run("--set", "data.root=x", "--set", "data.sheet=y", "--summary")
    assert code == 0 and "Total parameters: 2,836,759" in summary.out
    code, bad = run("--set", "train.epoch=3")
    assert code == 2 and "unknown config key train.'epoch'" in bad.err
    missing = ["--set", f"data.root={tmp_path}/none", "--set", f"data.sheet={tmp_path}/none.xlsx"]
    code, missing = run(*missing, "--dry-run")
    assert code == 2 and "not found" in missing.err
    assert "Traceback" not in missing.err


def _casme2_replica(root):
    """Two CASME II subjects as released (Cropped: reg_imgN.jpg), one clip per class."""
    import cv2
    import numpy as np

    from tests.data.replicas import write_sheet

    rows, random = [], np.random.default_rng(1)
    emotions = ["disgust", "happiness", "surprise", "others"]
    for subject in (1, 2):
        for index, emotion in enumerate(emotions):
            name = f"EP0{index + 1}_0{subject}f"
            folder = root / f"sub{subject:02d}" / name
            folder.mkdir(parents=True)
            for number in range(40, 52):
                image = random.integers(0, 255, (20, 20, 3), dtype=np.uint8)
                cv2.imwrite(str(folder / f"reg_img{number}.jpg"), image)
            rows.append([f"{subject:02d}", name, None, 41, 45, 50, None, "4+L10", emotion])
    sheet = root / "coding.xlsx"
    write_sheet(
        sheet,
        rows,
        header=[
            "Subject",
            "Filename",
            "",
            "OnsetFrame",
            "ApexFrame",
            "OffsetFrame",
            "",
            "Action Units",
            "Estimated Emotion",
        ],
    )
    return sheet


@pytest.mark.slow
def test_a_dataset_layout_trains_and_writes_split_lists(tmp_path, capsys):
    sheet = _casme2_replica(tmp_path / "casme2")
    overrides = TINY + [
        "data.layout=casme2",
        "data.sampler=onset_offset",
        f"data.root={tmp_path / 'casme2'}",
        f"data.sheet={sheet}",
        "run.tensorboard=false",
        *FLAT,
        *workspace(tmp_path),
    ]
    arguments = as_arguments(overrides)
    assert run_script("ME_model", "me_model.yaml", "test", arguments) == 0
    run_dir = tmp_path / "runs" / capsys.readouterr().out.strip().splitlines()[-1].split("/")[-1]
    predictions = pd.read_csv(run_dir / "predictions.csv")
    assert len(predictions) == 6  # "others" is outside the MEGC2019 table
    assert set(predictions["subject"]) == {"sub01", "sub02"}
    splits = run_dir / "splits"
    assert (splits / "subName.txt").read_text().split() == ["sub01", "sub02"]
    test_lines = (splits / "sub02_test.txt").read_text().splitlines()
    assert len(test_lines) == 3 and all("sub02" in line for line in test_lines)
    assert not any("sub02" in line for line in (splits / "sub02_train.txt").read_text().split())
    shared = tmp_path / "txt" / "casme2"
    assert (shared / "sub01_test.txt").read_text() == (splits / "sub01_test.txt").read_text()

    # A missing clip folder stops the run with its name, or is skipped and listed on request.
    shutil.rmtree(tmp_path / "casme2" / "sub02" / "EP03_02f")
    assert run_script("ME_model", "me_model.yaml", "test", arguments + ["--dry-run"]) == 2
    assert "EP03_02f" in capsys.readouterr().err
    skip = arguments + ["--set", "data.on_bad=skip"]
    assert run_script("ME_model", "me_model.yaml", "test", skip) == 0
    run_dir = tmp_path / "runs" / capsys.readouterr().out.strip().splitlines()[-1].split("/")[-1]
    skipped = pd.read_csv(run_dir / "skipped.csv")
    assert list(skipped["sample"]) == ["sub02/EP03_02f"]
    assert len(pd.read_csv(run_dir / "predictions.csv")) == 5


def test_manifest_command(tmp_path, capsys):
    out = tmp_path / "manifest.csv"
    arguments = ["manifest", "--dataset", "casme2", "--sheets-only", "--out", str(out)]
    assert main(arguments) == 0
    printed = capsys.readouterr().out
    assert "casme2: 147 samples, 24 subjects" in printed
    assert "negative 90, positive 32, surprise 25" in printed
    assert "row 31" in printed
    # the AU region alone, LOSO, ties to the first class (README "The dual-branch AU model")
    assert "147 clips): UF1 0.698  UAR 0.696  ACC 0.680" in printed
    assert "(regions: eyes 63, mouth 61, brows 22, face 1)" in printed
    assert len(pd.read_csv(out)) == 147
    assert main(["manifest", "--dataset", "casme9"]) == 2
    assert "known: casme2" in capsys.readouterr().err


def _deception_replica(root):
    """Clips/Deceptive and Clips/Truthful, three short videos each, two speakers."""
    import numpy as np

    from tests.data.replicas import write_video

    random = np.random.default_rng(2)
    for folder, stem in (("Deceptive", "trial_lie"), ("Truthful", "trial_truth")):
        for index in range(1, 4):
            clip = random.integers(0, 255, (8, 20, 20, 3), dtype=np.uint8)
            write_video(root / "Clips" / folder / f"{stem}_{index:03d}.mp4", clip)


@pytest.mark.slow
def test_deception_set_with_and_without_speakers(tmp_path, capsys):
    _deception_replica(tmp_path / "deception")
    overrides = TINY + [
        "data.layout=deception",
        f"data.root={tmp_path / 'deception'}",
        "train.class_weights=[0.5, 0.5]",
        "train.kfold=2",
        "run.tensorboard=false",
        *FLAT,
        *workspace(tmp_path),
    ]
    arguments = as_arguments(overrides)
    assert run_script("ME_model", "me_model.yaml", "test", arguments) == 0
    output = capsys.readouterr().out
    assert "stratified 2-fold" in output and "not subject-independent" in output
    run_dir = tmp_path / "runs" / output.strip().splitlines()[-1].split("/")[-1]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["protocol"].startswith("stratified 2-fold")
    predictions = pd.read_csv(run_dir / "predictions.csv")
    assert len(predictions) == 6 and set(predictions["subject"]) == {"fold01", "fold02"}
    assert predictions.groupby("subject")["y_true"].nunique().eq(2).all()  # stratified

    speakers = tmp_path / "speakers.csv"
    speakers.write_text(
        "Subject,Filename\nA,trial_lie_001.mp4\nA,trial_truth_001\n"
        "B,trial_lie_002\nB,trial_truth_002\nB,trial_lie_003\nA,trial_truth_003\n"
    )
    grouped = arguments + ["--set", f"data.sheet={speakers}"]
    assert run_script("ME_model", "me_model.yaml", "test", grouped) == 0
    output = capsys.readouterr().out
    assert "Folds: loso" in output
    run_dir = tmp_path / "runs" / output.strip().splitlines()[-1].split("/")[-1]
    predictions = pd.read_csv(run_dir / "predictions.csv")
    assert set(predictions["subject"]) == {"A", "B"}
    assert set(predictions.loc[predictions["subject"] == "B", "sample"]) == {
        "trial_lie_002",
        "trial_truth_002",
        "trial_lie_003",
    }

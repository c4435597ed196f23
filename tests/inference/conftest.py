"""Made once for the package: a two-stream run whose final model trains (1 epoch, a tiny
two-branch network without attention, recurrence or pooling: what predict and explain do with a
saved bundle is under test), and a tiny one-stream model saved as a bundle without training."""

import dataclasses

import keras
import numpy as np
import pandas as pd
import pytest

from mer import experiment
from mer.bundle import save_bundle
from mer.cli import run_script
from mer.config import PROJECT_ROOT, load_config
from mer.data.batches import Normalizer
from mer.data.synthetic import DemoSpec, generate_demo
from mer.training.loso import FoldResult, build_model
from tests.data.replicas import class_folder_dataset, write_video
from tests.test_end_to_end import FLAT_LAYERS, TINY, TINY_MODEL, as_arguments, workspace


@dataclasses.dataclass
class TrainedRun:
    run_dir: object
    manifest: pd.DataFrame  # the run's manifest.csv


def _untrained_folds(folds, streams, labels, config, run_dir, targets=None, regions=None):
    """Stands in for the LOSO training (covered by the end-to-end tests): fixed predictions."""
    random = np.random.default_rng(0)
    return [
        FoldResult(
            fold.subject,
            fold.test,
            random.dirichlet(np.ones(len(config.data.classes)), len(fold.test)),
            {"loss": [1.1, 0.9], "accuracy": [0.3, 0.5]},
            0.0,
        )
        for fold in folds
    ]


@pytest.fixture(scope="package")
def trained_run(tmp_path_factory):
    """The dual-branch AU script with train.final_model=true on 2 synthetic subjects
    (real-looking faces, so landmarks run): the folds are stubbed, the final model (a tiny
    flat two-branch network) trains 1 epoch on both subjects."""
    tmp_path = tmp_path_factory.mktemp("trained")
    root = tmp_path / "demo"
    sheet = generate_demo(root, DemoSpec(subjects=2, clips_per_class=1, frames=16, size=96))
    overrides = [
        f"data.root={root}",
        f"data.sheet={sheet}",
        "data.frames=6",
        "data.size=32",
        *workspace(tmp_path),
        "train.epochs=1",
        "train.batch_size=3",
        "train.final_model=true",
        *TINY_MODEL,
        *FLAT_LAYERS,
    ]
    arguments = ["--config", str(PROJECT_ROOT / "config" / "dual_branch_au.yaml")]
    arguments += as_arguments(overrides)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(experiment, "run_loso", _untrained_folds)
        assert run_script("dual_branch_3dcnn_au", "dual_branch_au.yaml", "test", arguments) == 0
    run_dir = next((tmp_path / "runs").iterdir())
    manifest = pd.read_csv(run_dir / "manifest.csv", dtype={"subject": str})
    return TrainedRun(run_dir, manifest)


def _untrained_bundle(folder, overrides=()):
    """An untrained tiny MLSP model (4 frames of 16x16) with train_fold normalisation, saved
    as a bundle under folder."""
    config = load_config(
        PROJECT_ROOT / "config" / "me_model.yaml",
        [*TINY, "data.normalization=train_fold", *overrides],
    )
    keras.utils.set_random_seed(0)
    model = build_model(config)
    random = np.random.default_rng(0)
    normalizer = Normalizer.fit(
        "train_fold", [random.integers(0, 255, (4, 16, 16, 3), dtype=np.uint8)]
    )
    return save_bundle(folder / "model" / "final_model.keras", model, config, [normalizer])


@pytest.fixture(scope="package")
def one_stream_bundle(tmp_path_factory):
    """An untrained tiny one-stream bundle, and the class-folder clips it reads (videos of
    24x24, 12 frames)."""
    tmp_path = tmp_path_factory.mktemp("one_stream")
    class_folder_dataset(tmp_path / "dataset", subjects=1)
    clips = sorted((tmp_path / "dataset").rglob("*.avi"))
    return _untrained_bundle(tmp_path), clips


SLIDE_SPAN = (9, 17)  # the frames (1-based) from the last still one to the first still again


@pytest.fixture(scope="package")
def onset_offset_bundle(tmp_path_factory):
    """An untrained tiny bundle whose data config says data.sampler=onset_offset, and a
    24-frame video whose one movement, a bright square sliding 1 px a frame, spans
    SLIDE_SPAN; elsewhere only faint noise (+-1 grey level) changes."""
    tmp_path = tmp_path_factory.mktemp("onset_offset")
    random = np.random.default_rng(0)
    clip = 100 + random.integers(-1, 2, (24, 32, 32, 3)).astype(np.uint8)
    first, last = SLIDE_SPAN
    for position in range(24):  # 0-based: still until position first-1, moving to last-1
        left = 4 + int(np.clip(position - (first - 1), 0, last - first))
        clip[position, 10:20, left : left + 10] = 220
    video = tmp_path / "slide.avi"
    write_video(video, clip)
    return _untrained_bundle(tmp_path, ["data.sampler=onset_offset"]), video

"""data.regions.aus=predicted: the held-out clips' au_regions crop chosen by an AU detector
trained in each fold on the training subjects, never by their own AU cells; the final model's
own AU detector chooses a new clip's region in `python -m mer predict`.

Fast: the config (values, errors, the detector's settings), the caveats, the annotation-only
reference from predicted regions, `choose_regions` with its detector's predictions fixed, and
the region inputs on real landmarks. One tiny end-to-end run (2 demo subjects, a flat
two-branch network, P3D at width 1 on 16-pixel frames, Keras steps run eagerly as in
tests/test_au_detector_end_to_end.py). The black-box leakage test on a predicted run is in
tests/test_leakage_black_box.py.
"""

import json

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import mer.training.loso as loso
from mer.bundle import load_bundle
from mer.caveats import ANNOTATED_AUS, ANNOTATED_WINDOW, run_caveats
from mer.cli import main, run_script
from mer.config import PROJECT_ROOT, ConfigError, load_config, region_detector_config
from mer.data.regions import detected_aus, region_for_aus
from mer.data.sources import load_manifest, preprocess, preprocess_region_inputs, resolve_source
from mer.data.synthetic import DemoSpec, generate_demo
from mer.evaluation.annotation_only import region_majority_predictions
from mer.inference.predict import clip_manifest, predict_streams, preprocess_clips
from tests.test_end_to_end import FLAT_LAYERS, TINY_MODEL, as_arguments, workspace

DUAL = PROJECT_ROOT / "config" / "dual_branch_au.yaml"
DEMO = PROJECT_ROOT / "config" / "demo_dual_branch.yaml"
# P3D-63's 16 bottlenecks at the tiniest width, on 16 frames of 16 pixels, one step a fold
TINY_DETECTOR = """base: {config}/demo_au_detector.yaml
data:
  flow:
    face_size: 32
  fmer:
    au_size: 16
model:
  p3d_filters: 1
train:
  epochs: 1
  batch_size: 6
"""


def tiny_detector(directory) -> str:
    """A tiny AU detector preset written into `directory`; its path."""
    path = directory / "tiny_detector.yaml"
    path.write_text(TINY_DETECTOR.format(config=PROJECT_ROOT / "config"))
    return str(path)


def test_annotated_is_the_default_and_bad_values_are_refused(tmp_path):
    assert load_config(DUAL).data.regions.aus == "annotated"
    with pytest.raises(ConfigError, match="data.regions.aus: 'guessed' is not one of annotated"):
        load_config(DUAL, ["data.regions.aus=guessed"])
    with pytest.raises(ConfigError, match=r"au_regions crop, and data.inputs \['frames'\]"):
        load_config(PROJECT_ROOT / "config" / "me_model.yaml", ["data.regions.aus=predicted"])
    with pytest.raises(ConfigError, match="must name an au_detector preset, got 'me_model.yaml'"):
        load_config(DUAL, ["data.regions.aus=predicted", "data.regions.detector=me_model.yaml"])
    with pytest.raises(ConfigError, match="config file not found: .*nothing.yaml"):
        load_config(DUAL, ["data.regions.aus=predicted", "data.regions.detector=nothing.yaml"])


def test_the_detector_takes_its_preset_on_the_runs_dataset(tmp_path):
    config = load_config(
        DEMO,
        ["data.regions.aus=predicted", "data.regions.au_codes=[1, 4, 12]", "seed=7",
         f"data.cache_dir={tmp_path}"],
    )
    detector = region_detector_config(config)
    assert detector.model.family == "au_detector" and detector.model.aus == [1, 4, 12]
    assert detector.model.p3d_filters == 16 and detector.train.epochs == 20  # the demo preset
    assert detector.data.fmer.au_size == 64 and detector.data.flow.algorithm == "farneback"
    assert detector.data.inputs == ["au_frames"] and detector.train.class_weights is None
    assert (detector.seed, detector.data.cache_dir, detector.data.root) == (7, str(tmp_path), None)
    assert detector.data.size == config.data.size and not detector.train.final_model


def test_a_predicted_run_is_not_labelled_annotated_aus():
    annotated = run_caveats(load_config(DUAL, ["data.sampler=even"]))
    predicted = run_caveats(load_config(DUAL, ["data.sampler=even", "data.regions.aus=predicted"]))
    assert annotated == (ANNOTATED_AUS,)
    assert predicted == (ANNOTATED_WINDOW,)  # the detector's au_frames span onset..offset


def test_the_reference_tests_each_clip_with_its_predicted_region():
    labels = [0, 1, 0, 1]
    annotated = ["eyes", "mouth", "eyes", "mouth"]
    folds = [([2, 3], [0, 1]), ([0, 1], [2, 3])]
    assert region_majority_predictions(labels, annotated, folds, 2).tolist() == labels
    swapped = ["mouth", "eyes", "mouth", "eyes"]  # tested where the other class trained
    assert region_majority_predictions(labels, annotated, folds, 2, swapped).tolist() == [
        1, 0, 1, 0,
    ]
    with pytest.raises(ValueError, match="4 labels but 3 test regions"):
        region_majority_predictions(labels, annotated, folds, 2, swapped[:3])


def test_choose_regions_gives_only_the_held_out_clips_their_predicted_crop(monkeypatch, tmp_path):
    """The detector's probabilities fixed: AU 12 alone -> mouth, 4 and 12 -> eyes (first rule),
    none -> face; the training clips' crops are left as they are."""
    codes = [4, 12]
    detector = load_config(PROJECT_ROOT / "config" / "au_detector.yaml", ["model.aus=[4, 12]"])
    crops = {
        name: [np.full(2, 10 * index + row, np.uint8) for row in range(5)]
        for index, name in enumerate(["eyes", "mouth", "face"])
    }
    regions = loso.PredictedRegions(detector, [None] * 5, np.zeros((5, 2)), crops, 1)
    fold = loso.Fold("s", 0, np.array([0, 1]), np.array([], int), np.array([2, 3, 4]))
    seen = {}

    def trained(fold, streams, labels, config, fold_dir, callbacks, models, targets):
        seen.update(config=config, train=fold.train, dir=fold_dir)
        probabilities = np.array([[0.2, 0.5], [0.9, 0.7], [0.49, 0.1]])
        return loso.FoldResult("s", fold.test, probabilities, {}, 0.0)

    monkeypatch.setattr(loso, "train_fold", trained)
    own = [np.full(2, 100 + row, np.uint8) for row in range(5)]
    frames = [np.zeros(1)] * 5
    streams, aus, names = loso.choose_regions(fold, [frames, own], np.zeros(5), regions, tmp_path)
    assert seen["config"] is detector and seen["dir"] == tmp_path / "au_detector"
    assert aus == [[12], [4, 12], []] and names == ["mouth", "eyes", "face"]
    assert names == [region_for_aus(clip, codes).name for clip in aus]
    assert streams[0] is frames and own[2][0] == 102  # the run's streams are not changed
    assert [int(crop[0]) for crop in streams[1]] == [100, 101, 12, 3, 24]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """Two synthetic subjects with real-looking faces, one clip per class."""
    root = tmp_path_factory.mktemp("predicted")
    sheet = generate_demo(root, DemoSpec(subjects=2, clips_per_class=1, frames=16, size=96))
    return root, sheet


def test_region_inputs_hold_each_clips_own_crop_and_ignore_its_cell(demo, tmp_path):
    root, sheet = demo
    config = load_config(
        DUAL,
        [f"data.root={root}", f"data.sheet={sheet}", "data.frames=4", "data.size=16",
         "data.sampler=even", "data.regions.aus=predicted",
         f"data.regions.detector={tiny_detector(tmp_path)}", *workspace(tmp_path)],
    )
    detector = region_detector_config(config)
    manifest = load_manifest(config.data, resolve_source(config.data)).samples
    prepared = preprocess(config.data, manifest)
    kept, inputs = preprocess_region_inputs(config.data, detector.data, manifest, prepared)
    assert kept.rows == prepared.rows and kept.keys != prepared.keys  # the detector's key too
    assert sorted(inputs.crops) == ["brows", "cheeks", "eyes", "face", "mouth"]
    assert [frames.shape for frames in inputs.frames] == [(16, 16, 16, 3)] * 6
    for row, cell in enumerate(manifest["aus"]):  # the demo's cells: eyes or mouth
        own = inputs.crops[region_for_aus([int(au) for au in cell.split("+")]).name][row]
        np.testing.assert_array_equal(own, prepared.streams[1][row])
    assert not np.array_equal(inputs.crops["eyes"][0], inputs.crops["mouth"][0])
    _, blank = preprocess_region_inputs(
        config.data, detector.data, manifest.assign(aus=None), prepared
    )
    for name, crops in inputs.crops.items():  # made without the clips' AU cells
        assert all(np.array_equal(a, b) for a, b in zip(crops, blank.crops[name], strict=True))


@pytest.mark.slow
def test_a_tiny_predicted_run_records_its_regions(demo, tmp_path, capsys):
    root, sheet = demo
    detector = tiny_detector(tmp_path)
    overrides = [
        f"data.root={root}",
        f"data.sheet={sheet}",
        "data.frames=4",
        "data.size=16",
        "train.epochs=1",
        "train.batch_size=3",
        "run.tensorboard=false",
        "train.final_model=true",
        *TINY_MODEL,
        *FLAT_LAYERS,
        "data.regions.aus=predicted",
        f"data.regions.detector={detector}",
        *workspace(tmp_path),
    ]
    tf.config.run_functions_eagerly(True)  # tracing P3D takes half a minute
    try:
        arguments = as_arguments(overrides)
        assert run_script("dual_branch_3dcnn_au", "dual_branch_au.yaml", "t", arguments) == 0
        output = capsys.readouterr().out
        (run_dir,) = (tmp_path / "runs").iterdir()
        clip = root / "positive" / "sub01_positive_01.avi"
        assert main(["predict", "--model", str(run_dir), str(clip), "--json"]) == 0
        (record,) = json.loads(capsys.readouterr().out)
        command = ["predict", "--model", str(run_dir), str(clip), "--json"]
        assert main([*command, "--aus", record["predicted_aus"]]) == 0
        (given,) = json.loads(capsys.readouterr().out)
        assert main(["explain", "--model", str(run_dir), str(clip), "--out", str(tmp_path)]) == 0
        explained = json.loads(capsys.readouterr().out)
        bundle = load_bundle(run_dir)  # the detector beside the final model, run on the clip
        own = bundle.detector
        (expected,) = predict_streams(own, preprocess_clips(own, clip_manifest(bundle, [clip])))
    finally:
        tf.config.run_functions_eagerly(False)
    assert run_dir.name.startswith("dual_branch_3dcnn_au-") and "-annotated-window-" in run_dir.name
    assert "annotated-aus" not in run_dir.name and "[annotated-aus]" not in output
    assert "Regions: from predicted AUs: in each fold an AU detector" in output
    predictions = pd.read_csv(
        run_dir / "predictions.csv", dtype={"subject": str}, keep_default_na=False
    )
    assert len(predictions) == 6 and set(predictions["caveats"]) == {"annotated-window"}
    for row in predictions.itertuples():  # the region its recorded AUs choose
        aus = [int(au) for au in row.predicted_aus.split("+") if au]
        assert row.region == region_for_aus(aus).name
        assert f"{row.sample}: {row.predicted_aus or 'none'} -> {row.region}" in output
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [caveat["label"] for caveat in summary["caveats"]] == ["annotated-window"]
    assert summary["annotated_test_inputs"] == ["onset_offset window"]
    counts = predictions["region"].value_counts().to_dict()
    assert summary["regions"] == {"aus": "predicted", "detector": detector, "held_out": counts}
    reference = summary["annotation_only_reference"]
    assert reference["held_out_regions"] == "predicted" and reference["regions"] == counts
    assert "majority class of its predicted AU region" in output
    for subject in ("1", "2"):
        fold = run_dir / "folds" / subject
        stored = json.loads((fold / "fold_result.json").read_text())
        held_out = predictions[predictions["subject"] == subject]
        assert stored["regions"] == held_out["region"].tolist()
        history = json.loads((fold / "au_detector" / "history.json").read_text())
        assert list(history) == ["loss", "learning_rate"]
    # the final model's AU detector, trained on every subject, chooses a new clip's region
    side = json.loads((run_dir / "final_au_detector.json").read_text())
    assert side["family"] == "au_detector"
    assert side["aus"] == load_config(DUAL).data.regions.au_codes
    assert "Final model's final_au_detector: training on all 6 clips of 2 subjects" in output
    aus = [int(au) for au in record["predicted_aus"].split("+") if au]
    assert aus == detected_aus(side["aus"], expected) and own.info == side
    assert "predicted_aus" not in given  # --aus given: no detector
    assert given["probabilities"] == record["probabilities"]  # its AUs chose the crop
    # explain without --aus: the same detector's AUs choose the region it draws
    assert explained["predicted_aus"] == record["predicted_aus"]
    assert explained["region"] == region_for_aus(aus).name
    assert explained["probabilities"] == pytest.approx(record["probabilities"], abs=1e-6)

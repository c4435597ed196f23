"""One list of caveats per run (mer.caveats), said the same way in the report, summary.json,
`compare`, and the report `merge` writes; summaries written before them still load."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import yaml

from mer import experiment
from mer.caveats import (
    ANNOTATED_AUS,
    ANNOTATED_WINDOW,
    DATASET_GLOBAL,
    PAPER_PROTOCOL,
    folder_suffix,
    recorded_caveats,
    run_caveats,
    summary_entries,
)
from mer.config import PROJECT_ROOT, ConfigError, load_config
from mer.evaluation.compare import (
    compare_runs,
    format_comparison,
    format_seed_summary,
    seed_summary,
)
from mer.evaluation.report import format_report, per_subject_table, summarize
from mer.experiment import run_seeds
from mer.merge import merge_runs
from mer.training.loso import FoldResult, save_fold_result
from tests.test_end_to_end import TINY_MODEL

CLASSES = ["negative", "positive", "surprise"]


def test_each_setting_that_uses_the_test_subject_is_one_caveat():
    plain = load_config(None)
    assert run_caveats(plain) == () and folder_suffix(()) == ""
    assert run_caveats(load_config(None, ["eval.protocol=paper"])) == (PAPER_PROTOCOL,)
    for spelling in ("data.regions.enabled=true", "data.inputs=[frames, au_regions]"):
        assert run_caveats(load_config(None, [spelling])) == (ANNOTATED_AUS,)
    every = load_config(None, ["eval.protocol=paper", "data.regions.enabled=true"])
    every = dataclasses.replace(
        every, data=dataclasses.replace(every.data, normalization="dataset_global")
    )
    caveats = run_caveats(every)
    assert caveats == (PAPER_PROTOCOL, DATASET_GLOBAL, ANNOTATED_AUS)
    assert folder_suffix(caveats) == "-paper-optimistic-dataset-global-optimistic-annotated-aus"
    entries = summary_entries(caveats)
    assert [entry["optimistic"] for entry in entries["caveats"]] == [True, True, False]
    assert entries["optimistic"] and entries["test_inputs_use_annotations"]
    assert entries["annotated_test_inputs"] == ["au_regions"]
    assert summary_entries(())["test_inputs_use_annotations"] is False
    for window in ("data.sampler=onset_offset", "data.sampler=max_motion",
                   "data.inputs=[flow, flow_puzzle]"):  # the flow reads onset and apex
        overrides = [window, "data.sampler=first"] if "inputs" in window else [window]
        assert run_caveats(load_config(None, overrides)) == (ANNOTATED_WINDOW,), window


def test_summaries_written_before_caveats_read_as_their_protocol_says():
    assert recorded_caveats({"protocol": "loso: fixed epochs"}) == []
    old_paper = recorded_caveats({"protocol": "paper (optimistic: ...); loso folds"})
    assert [caveat["label"] for caveat in old_paper] == ["paper-optimistic"]
    new = summary_entries([ANNOTATED_AUS])
    assert recorded_caveats(new) == new["caveats"]


def _predictions() -> pd.DataFrame:
    rows = [("s1", "a", "negative", "negative"), ("s1", "b", "positive", "surprise"),
            ("s2", "c", "surprise", "surprise"), ("s2", "d", "negative", "positive")]
    return pd.DataFrame(rows, columns=["subject", "sample", "y_true", "y_pred"])


def test_the_report_says_the_caveats_above_the_table_and_the_reference_below():
    predictions = _predictions()
    summary = summarize(predictions, CLASSES)
    plain = format_report(per_subject_table(predictions, CLASSES), summary, color=False)
    assert plain.startswith("Subject") and "CLEAN" not in plain and "reference" not in plain
    summary.update(summary_entries([PAPER_PROTOCOL, ANNOTATED_AUS]))
    summary["annotation_only_reference"] = {
        "uf1": 0.5, "uar": 0.25, "acc": 0.75, "clips": 4, "regions": {"eyes": 3, "face": 1}
    }
    lines = format_report(per_subject_table(predictions, CLASSES), summary, color=False)
    lines = lines.splitlines()
    assert lines[:3] == [
        "NOT A CLEAN LOSO ESTIMATE:",
        "  [paper-optimistic] FOR COMPARISON ONLY (optimistic: epoch chosen on the test subject)",
        f"  [annotated-aus] {ANNOTATED_AUS.text}",
    ]
    assert lines[4].startswith("Subject")
    (reference,) = [line for line in lines if line.startswith("Annotation-only reference")]
    assert "4 clips): UF1 0.500  UAR 0.250  ACC 0.750  (regions: eyes 3, face 1)" in reference


def _summary(uf1: float, **keys) -> dict:
    scores = {"uf1": uf1, "uar": uf1, "acc": uf1}
    return {**scores, "mean_over_subjects": scores, "dataset": "d", **keys}


def test_compare_shows_each_runs_caveats_old_summaries_included(tmp_path):
    reference = {"uf1": 0.71, "uar": 0.7, "acc": 0.7, "clips": 4, "regions": {"eyes": 4}}
    runs = {
        "regions": _summary(
            0.9, **summary_entries([ANNOTATED_AUS]), annotation_only_reference=reference
        ),
        "old-paper": _summary(0.8, protocol="paper (optimistic: epoch chosen ...); loso folds"),
        "old-plain": _summary(0.6, protocol="loso: fixed epochs"),
    }
    for name, summary in runs.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps(summary))
    table = compare_runs([tmp_path / name for name in runs])
    assert table["caveats"].tolist() == [["annotated-aus"], ["paper-optimistic"], []]
    assert table["optimistic"].tolist() == [False, True, False]
    lines = format_comparison(table).splitlines()
    assert "caveats" in lines[0] and "annot-only UF1" in lines[0]
    assert lines[1].split()[-2:] == ["0.710", "annotated-aus"]
    assert lines[2].split()[-1] == "paper-optimistic" and lines[3].split()[-1] == "-"
    assert lines[4:] == [
        f"[annotated-aus] {ANNOTATED_AUS.text}",
        f"[paper-optimistic] {PAPER_PROTOCOL.text}",
    ]

    _, seeds = seed_summary({1: runs["regions"], 2: {**runs["regions"], "uf1": 0.7}})
    assert seeds["caveats"] == runs["regions"]["caveats"]
    assert seeds["annotation_only_reference"] == reference
    assert format_seed_summary(seeds).startswith("NOT A CLEAN LOSO ESTIMATE:\n  [annotated-aus]")


def _fold_only_run(run_dir, config, manifest, subject: str) -> None:
    """A run folder holding one finished fold, as `--folds` leaves it."""
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    manifest.to_csv(run_dir / "manifest.csv", index=False)
    test = np.flatnonzero(manifest["subject"] == subject)
    probabilities = np.tile([0.2, 0.3, 0.5], (len(test), 1))  # every clip predicted surprise
    result = FoldResult(subject, test, probabilities, {"loss": [1.0]}, 1.0)
    save_fold_result(result, run_dir / "folds" / subject)


@pytest.mark.slow
def test_merge_labels_a_regions_run_and_writes_its_reference(tmp_path, capsys):
    overrides = ["data.name=replica", "data.frames=2", "data.size=8", "data.sampler=even",
                 *TINY_MODEL]  # even: no annotated window, the AU regions alone
    config = load_config(PROJECT_ROOT / "config" / "dual_branch_au.yaml", overrides)
    manifest = pd.DataFrame(
        {
            "sample": ["a1", "a2", "b1", "b2"],
            "subject": ["a", "a", "b", "b"],
            "label": ["negative", "positive", "negative", "positive"],
            "aus": ["4", "12", "4+7", "L12"],  # eyes, mouth, eyes, mouth
        }
    )
    _fold_only_run(tmp_path / "part_a", config, manifest, "a")
    _fold_only_run(tmp_path / "part_b", config, manifest, "b")
    merged = merge_runs([tmp_path / "part_a", tmp_path / "part_b"])
    assert merged.name.startswith("merge-replica-annotated-aus-")
    summary = json.loads((merged / "summary.json").read_text())
    assert summary["test_inputs_use_annotations"] is True
    assert summary["annotated_test_inputs"] == ["au_regions"]
    assert [caveat["label"] for caveat in summary["caveats"]] == ["annotated-aus"]
    reference = summary["annotation_only_reference"]  # the region gives the label away here
    assert (reference["acc"], reference["clips"]) == (1.0, 4)
    assert reference["uf1"] == pytest.approx(2 / 3)  # surprise, never true, scores 0
    assert summary["uf1"] == pytest.approx(0.0)  # while the folds predicted surprise
    assert set(pd.read_csv(merged / "predictions.csv")["caveats"]) == {"annotated-aus"}
    printed = capsys.readouterr().out
    assert printed.index("NOT A CLEAN LOSO ESTIMATE") < printed.index("Subject")
    assert "Annotation-only reference" in printed


def test_merge_of_another_family_names_the_family(tmp_path):
    """Two families differ in many settings (the AU detector's flow and frames among them);
    the refusal names the family."""
    manifest = pd.DataFrame(
        {"sample": ["a1", "b1"], "subject": ["a", "b"], "label": ["negative", "positive"]}
    )
    mlsp = load_config(PROJECT_ROOT / "config" / "me_model.yaml", ["data.name=replica"])
    detector = load_config(PROJECT_ROOT / "config" / "au_detector.yaml", ["data.name=replica"])
    _fold_only_run(tmp_path / "part_a", mlsp, manifest, "a")
    _fold_only_run(tmp_path / "part_b", detector, manifest, "b")
    with pytest.raises(ConfigError, match="another experiment than .*: model.family is "
                                          "'au_detector' there, 'mlsp' here"):
        merge_runs([tmp_path / "part_a", tmp_path / "part_b"])


def test_a_seeds_folder_is_named_by_the_dataset_default_sampler(tmp_path, monkeypatch):
    # the sampler left unset: CASME II's default, onset_offset, reads the held-out windows
    config = load_config(
        None, ["data.layout=casme2", f"data.root={tmp_path}", f"run.output_dir={tmp_path}"]
    )
    assert config.data.sampler is None

    def seed_run(seeded, script, *, run_dir, **options):  # a seed's run: its summary only
        run_dir.mkdir()
        (run_dir / "summary.json").write_text(json.dumps(_summary(0.5, seed=seeded.seed)))

    monkeypatch.setattr(experiment, "run_experiment", seed_run)
    parent = run_seeds(config, "ME_model", [1, 2])
    assert "-casme2-seeds-annotated-window-" in parent.name
    saved = yaml.safe_load((parent / "config.yaml").read_text())
    assert saved["data"]["sampler"] == "onset_offset"

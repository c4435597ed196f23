"""`--seeds` runs one experiment per seed into one parent folder; `compare` reads run folders.
The runs train a flat tiny network: the seeds' bookkeeping is under test, not the network."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mer.cli import main, run_script
from mer.evaluation.compare import (
    compare_runs,
    format_comparison,
    format_seed_summary,
    seed_summary,
)
from tests.data.replicas import class_folder_dataset
from tests.test_end_to_end import FLAT, TINY, as_arguments, workspace


@pytest.mark.slow
def test_seeds_then_compare(tmp_path, capsys):
    sheet = class_folder_dataset(tmp_path / "dataset", subjects=2)  # 2 folds per seed
    overrides = TINY + FLAT + [
        f"data.root={tmp_path / 'dataset'}",
        f"data.sheet={sheet}",
        "run.tensorboard=false",
        "run.save_weights=false",
        *workspace(tmp_path),
    ]
    arguments = as_arguments(overrides) + ["--seeds", "3,5"]
    assert run_script("ME_model", "me_model.yaml", "test", arguments) == 0
    output = capsys.readouterr().out
    parent = Path(output.strip().splitlines()[-1].split("Results: ")[1])
    assert "seeds" in parent.name and "Over 2 seeds (3, 5)" in output
    children = [parent / "seed3", parent / "seed5"]
    runs = [json.loads((child / "summary.json").read_text()) for child in children]
    assert [run["seed"] for run in runs] == [3, 5]
    summary = json.loads((parent / "summary.json").read_text())
    for key in ("uf1", "uar", "acc"):
        values = [run[key] for run in runs]
        assert summary[key] == pytest.approx(np.mean(values))
        assert summary["std"][key] == pytest.approx(np.std(values, ddof=1))
    assert len(pd.read_csv(parent / "seeds.csv")) == 2

    # Resuming a finished parent reuses both seeds and trains nothing.
    assert run_script("ME_model", "me_model.yaml", "test", ["--resume", str(parent)]) == 0
    assert capsys.readouterr().out.count("completed earlier") == 2

    plot = tmp_path / "compare.png"
    assert main(["compare", str(parent), *map(str, children), "--out", str(plot)]) == 0
    printed = capsys.readouterr().out
    assert parent.name in printed and "seed3" in printed and "±" in printed
    assert plot.stat().st_size > 0
    table = compare_runs([parent, *children])
    assert list(table["seeds"]) == [2, 1, 1]
    assert table["parameters"].nunique() == 1 and table["parameters"].iloc[0] > 0


def test_compare_rejects_a_folder_without_results(tmp_path, capsys):
    assert main(["compare", str(tmp_path)]) == 2
    assert "no summary.json" in capsys.readouterr().err


def test_seed_summary_and_parts():
    def run(uf1, part_uf1):
        scores = {"uf1": uf1, "uar": uf1, "acc": uf1}
        return {**scores, "mean_over_subjects": scores, "parameters": 10,
                "parts": {"smic": {**scores, "uf1": part_uf1}}, "timings": {"total_s": 60}}

    table, summary = seed_summary({1: run(0.5, 0.4), 2: run(0.7, 0.6)})
    assert summary["uf1"] == pytest.approx(0.6)
    assert summary["std"]["uf1"] == pytest.approx(0.1414, 1e-3)
    assert summary["parts"]["smic"]["uf1"] == pytest.approx(0.5)
    assert summary["timings"]["total_s"] == 120 and list(table["seed"]) == [1, 2]
    single = seed_summary({7: run(0.5, 0.4)})[1]
    assert single["std"]["uf1"] == 0.0
    with pytest.raises(ValueError, match="no seed"):
        seed_summary({})


def test_seed_summary_of_au_detectors():
    def run(f1, au4):
        per_au = {"AU1": {"f1": f1}, "AU4": {"f1": au4}}
        return {"mean_f1": f1, "mean_f1_all_present": 0.5, "per_au": per_au, "parameters": 10,
                "family": "au_detector", "timings": {"total_s": 30}}

    table, summary = seed_summary({1: run(0.5, 0.2), 2: run(0.7, 0.4)})
    assert summary["mean_f1"] == pytest.approx(0.6)
    assert summary["std"]["mean_f1"] == pytest.approx(0.1414, 1e-3)
    assert summary["per_au"]["AU4"]["f1"] == pytest.approx(0.3)
    assert summary["per_au_std"]["AU4"]["f1"] == pytest.approx(0.1414, 1e-3)
    assert (summary["mean_f1_all_present"], summary["family"]) == (0.5, "au_detector")
    assert "uf1" not in summary and summary["timings"]["total_s"] == 60
    assert list(table.columns) == ["seed", "mean_f1", "f1_AU1", "f1_AU4", "seconds"]
    text = format_seed_summary(summary)
    expected = "mean F1 over 2 AUs: 0.600 ± 0.141 (every AU called present in every clip: 0.500)"
    assert expected in text
    assert "AU4   F1 0.300 ± 0.141" in text


def test_comparison_text_marks_optimistic_runs(tmp_path):
    for name, protocol in (("loso", "loso: fixed epochs"), ("paper", "paper (optimistic...)")):
        scores = {"uf1": 0.5, "uar": 0.6, "acc": 0.7}
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps(
            {**scores, "mean_over_subjects": scores, "protocol": protocol, "dataset": "d"}))
    text = format_comparison(compare_runs([tmp_path / "loso", tmp_path / "paper"]))
    assert "0.600" in text and "optimistic" in text

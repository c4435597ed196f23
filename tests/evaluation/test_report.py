"""Tests of mer.evaluation.report."""

from __future__ import annotations

import errno
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from colorama import Fore, Style

from mer.evaluation.report import format_report, per_subject_table, summarize
from mer.io import natural_sort_key, write_csv, write_json

CLASSES = ("negative", "positive", "surprise")
# subject, sample, true, predicted, part. Hand-computed scores (K = 3) are in the tests.
CLIPS = [
    ("sub10", "EP01", "negative", "negative", "samm"),
    ("sub10", "EP02", "positive", "positive", "samm"),
    ("sub10", "EP03", "surprise", "negative", "samm"),
    ("sub2", "EP01", "negative", "negative", "casme2"),
    ("sub2", "EP02", "negative", "positive", "casme2"),
    ("sub1", "EP01", "positive", "positive", "casme2"),
    ("sub1", "EP02", "surprise", "surprise", "casme2"),
]


def make_predictions(with_part: bool = False) -> pd.DataFrame:
    frame = pd.DataFrame(CLIPS, columns=["subject", "sample", "y_true", "y_pred", "part"])
    for name in CLASSES:
        frame[f"prob_{name}"] = np.where(frame["y_pred"] == name, 0.8, 0.1)
    return frame if with_part else frame.drop(columns="part")


def test_per_subject_table_scores_and_order() -> None:
    table = per_subject_table(make_predictions(), CLASSES)
    assert list(table.columns) == [
        "subject",
        "clips",
        "uf1",
        "uar",
        "acc",
        "classes_present",
        "single_class",
    ]
    assert table["subject"].tolist() == ["sub1", "sub2", "sub10"]
    assert table["clips"].tolist() == [2, 2, 3]
    # sub1: F1 per class (0, 1, 1); sub2: (2/3, 0, 0); sub10: (2/3, 1, 0).
    np.testing.assert_allclose(table["uf1"], [2 / 3, 2 / 9, 5 / 9])
    # recalls: sub1 (0, 1, 1); sub2 (1/2, 0, 0); sub10 (1, 1, 0).
    np.testing.assert_allclose(table["uar"], [2 / 3, 1 / 6, 2 / 3])
    np.testing.assert_allclose(table["acc"], [1.0, 0.5, 2 / 3])
    assert table["classes_present"].tolist() == [2, 1, 3]
    assert table["single_class"].tolist() == [False, True, False]
    assert table["classes_present"].dtype == np.int64
    assert table["single_class"].dtype == bool


def test_natural_order_of_numeric_subject_names() -> None:
    predictions = make_predictions()
    predictions["subject"] = predictions["subject"].str.removeprefix("sub")
    assert per_subject_table(predictions, CLASSES)["subject"].tolist() == ["1", "2", "10"]
    names = ["s10", "S2", "s1", "2", "10", "02"]
    assert sorted(names, key=natural_sort_key) == ["02", "2", "10", "s1", "S2", "s10"]


def test_summarize_pooled_and_mean_over_subjects() -> None:
    summary = summarize(make_predictions(), CLASSES)
    # Pooled confusion matrix rows: negative [2, 1, 0], positive [0, 2, 0], surprise [1, 0, 1].
    assert summary["confusion_matrix"] == [[2, 1, 0], [0, 2, 0], [1, 0, 1]]
    # F1: 4/6, 4/5, 2/3; recall: 2/3, 1, 1/2.
    assert summary["uf1"] == pytest.approx(32 / 45)
    assert summary["uar"] == pytest.approx(13 / 18)
    assert summary["acc"] == pytest.approx(5 / 7)
    assert summary["mean_over_subjects"] == pytest.approx(
        {"uf1": 13 / 27, "uar": 1 / 2, "acc": 13 / 18}
    )
    assert summary["clips"] == 7
    assert summary["subjects"] == 3
    assert summary["class_names"] == list(CLASSES)
    assert summary["per_class"]["positive"] == pytest.approx(
        {"support": 2, "tp": 2, "fp": 1, "fn": 0, "f1": 0.8, "recall": 1.0}
    )
    assert summary["per_class"]["surprise"] == pytest.approx(
        {"support": 2, "tp": 1, "fp": 0, "fn": 1, "f1": 2 / 3, "recall": 0.5}
    )
    assert "parts" not in summary
    assert json.loads(json.dumps(summary)) == summary


def test_summarize_parts_are_pooled_per_part() -> None:
    summary = summarize(make_predictions(with_part=True), CLASSES)
    assert list(summary["parts"]) == ["casme2", "samm"]
    # casme2: F1 (2/3, 2/3, 1), recall (1/2, 1, 1), 3 of 4 right.
    assert summary["parts"]["casme2"] == pytest.approx(
        {"uf1": 7 / 9, "uar": 5 / 6, "acc": 3 / 4, "clips": 4}
    )
    assert summary["parts"]["samm"] == pytest.approx(
        {"uf1": 5 / 9, "uar": 2 / 3, "acc": 2 / 3, "clips": 3}
    )
    assert summary["uf1"] == pytest.approx(32 / 45)


def test_unknown_class_name_is_named() -> None:
    predictions = make_predictions()
    predictions.loc[3, "y_pred"] = "happiness"
    with pytest.raises(ValueError, match="'y_pred'.*'happiness'"):
        per_subject_table(predictions, CLASSES)
    predictions = make_predictions()
    predictions.loc[0, "y_true"] = None
    with pytest.raises(ValueError, match="'y_true'.*nan"):
        summarize(predictions, CLASSES)


def test_missing_columns_are_named() -> None:
    predictions = make_predictions().drop(columns=["sample", "y_pred"])
    with pytest.raises(ValueError, match="lacks columns: sample, y_pred"):
        summarize(predictions, CLASSES)


@pytest.mark.parametrize(
    ("class_names", "message"),
    [
        (("negative",), "at least 2 classes"),
        (("negative", "negative", "surprise"), "duplicates"),
        ("negative", "got the string"),
    ],
)
def test_bad_class_names(class_names: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        per_subject_table(make_predictions(), class_names)


def test_empty_and_duplicated_predictions_are_rejected() -> None:
    with pytest.raises(ValueError, match="no rows"):
        summarize(make_predictions().iloc[:0], CLASSES)
    doubled = pd.concat([make_predictions(), make_predictions().iloc[[4]]])
    with pytest.raises(ValueError, match="more than one row.*sub2.*EP02"):
        summarize(doubled, CLASSES)


def test_format_report_plain() -> None:
    predictions = make_predictions(with_part=True)
    table = per_subject_table(predictions, CLASSES)
    report = format_report(table, summarize(predictions, CLASSES), color=False)
    lines = report.splitlines()
    assert "\x1b" not in report
    assert lines[0].split() == ["Subject", "Clips", "UF1", "UAR", "ACC"]
    assert lines[1].split() == ["sub1", "2", "0.667", "0.667", "1.000"]
    assert lines[2].split() == ["sub2", "2", "0.222", "0.167", "0.500", "(1", "class)"]
    assert lines[3].split() == ["sub10", "3", "0.556", "0.667", "0.667"]
    assert len({len(line) for line in (lines[0], lines[1], lines[3])}) == 1
    assert lines[2].startswith(lines[2][: len(lines[1])]) and lines[2].endswith("  (1 class)")
    assert "Overall (MEGC2019 pooled, 7 clips): UF1 0.711  UAR 0.722  ACC 0.714" in lines
    assert "Mean over 3 subjects (as papers print): UF1 0.481  UAR 0.500  ACC 0.722" in lines
    assert any(line.strip().startswith("Part samm (pooled, 3 clips): UF1 0.556") for line in lines)


def test_format_report_colours_by_level() -> None:
    predictions = make_predictions()
    table = per_subject_table(predictions, CLASSES)
    summary = summarize(predictions, CLASSES)
    coloured = format_report(table, summary)
    assert f"UF1 {Fore.GREEN}0.711{Style.RESET_ALL}" in coloured
    assert f"UF1 {Fore.YELLOW}0.481{Style.RESET_ALL}" in coloured
    assert f"{Fore.RED}0.222{Style.RESET_ALL}" in coloured
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == format_report(table, summary, color=False)


def test_format_report_validates_inputs() -> None:
    predictions = make_predictions()
    table = per_subject_table(predictions, CLASSES)
    summary = summarize(predictions, CLASSES)
    with pytest.raises(ValueError, match="lacks columns: single_class"):
        format_report(table.drop(columns="single_class"), summary)
    with pytest.raises(ValueError, match="lacks keys: mean_over_subjects"):
        format_report(table, {key: summary[key] for key in ("uf1", "uar", "acc", "clips")})


def test_write_json_round_trip_and_atomic_failure(tmp_path: Path) -> None:
    path = tmp_path / "run" / "summary.json"
    write_json(path, {"uf1": np.float64(0.5), "matrix": np.eye(2, dtype=np.int64), "n": 3})
    assert json.loads(path.read_text()) == {"uf1": 0.5, "matrix": [[1, 0], [0, 1]], "n": 3}
    write_json(path, {"n": 4})
    assert json.loads(path.read_text()) == {"n": 4}
    with pytest.raises(TypeError, match="object"):
        write_json(path, {"n": object()})
    assert json.loads(path.read_text()) == {"n": 4}
    assert [entry.name for entry in path.parent.iterdir()] == ["summary.json"]


def test_a_full_disk_keeps_the_previous_file(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "summary.json"
    write_json(path, {"n": 1})

    def disk_full(descriptor: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("mer.io.os.fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_json(path, {"n": 2})
    assert json.loads(path.read_text()) == {"n": 1}  # the old file, whole; no partial one
    assert [entry.name for entry in tmp_path.iterdir()] == ["summary.json"]


def test_write_csv_round_trip(tmp_path: Path) -> None:
    table = per_subject_table(make_predictions(), CLASSES)
    path = tmp_path / "subjects.csv"
    write_csv(path, table)
    write_csv(path, table)
    assert path.read_text().splitlines()[0] == (
        "subject,clips,uf1,uar,acc,classes_present,single_class"
    )
    pd.testing.assert_frame_equal(pd.read_csv(path), table)
    assert [entry.name for entry in tmp_path.iterdir()] == ["subjects.csv"]

"""The class-folder reader: clips joined with the sheet, and the errors it must raise."""

import logging

import numpy as np
import pytest

from mer.config import DataConfig
from mer.data.manifest import MANIFEST_COLUMNS, build_manifest
from mer.data.sheets import DataError, cell_text, frame_number, read_sheet
from tests.data.replicas import class_folder_dataset, write_sheet, write_video


@pytest.fixture
def dataset(tmp_path):
    return tmp_path, class_folder_dataset(tmp_path)


def test_manifest_joins_videos_and_sheet(dataset):
    root, sheet = dataset
    manifest = build_manifest(DataConfig(), root, sheet, "replica").samples
    assert list(manifest.columns) == MANIFEST_COLUMNS
    assert len(manifest) == 9
    assert list(manifest["label"][:3]) == ["negative"] * 3  # config class order, sorted listing
    assert sorted(manifest["subject"].unique()) == ["1", "2", "3"]
    row = manifest.set_index("sample").loc["s2_positive"]
    assert (row.subject, row.onset, row.apex, row.offset, row.frames) == ("2", 2, 5, 9, 12)
    assert row.aus == "4+7"
    assert manifest.set_index("sample").loc["s1_negative", "aus"] == "12"  # number 12.0 -> "12"


def test_csv_sheet_and_class_order_from_config(dataset):
    root, _ = dataset
    sheet = root / "coding.csv"
    lines = ["Subject,Filename"] + [f"{s},s{s}_{c}" for s in (1, 2, 3)
                                    for c in ("negative", "positive", "surprise")]
    sheet.write_text("\n".join(lines) + "\n")
    data = DataConfig(classes=["surprise", "negative", "positive"])
    manifest = build_manifest(data, root, sheet, "replica").samples
    assert list(manifest["label"][:3]) == ["surprise"] * 3
    assert manifest["onset"].isna().all()


def test_clip_missing_from_sheet_is_an_error_naming_it(dataset):
    root, sheet = dataset
    write_video(root / "positive" / "stray.avi", np.zeros((4, 8, 8, 3), "uint8"))
    with pytest.raises(DataError, match="stray"):
        build_manifest(DataConfig(), root, sheet, "replica")


def test_filename_under_two_subjects_is_an_error(dataset):
    root, sheet = dataset
    rows = [[1, "s1_negative"], [2, "s1_negative"]]
    write_sheet(sheet, rows, header=["Subject", "Filename"])
    with pytest.raises(DataError, match=r"s1_negative.*subjects \['1', '2'\]"):
        build_manifest(DataConfig(), root, sheet, "replica")


def test_missing_class_folder_column_and_sheet(dataset, tmp_path):
    root, sheet = dataset
    with pytest.raises(DataError, match="class folder missing"):
        build_manifest(DataConfig(classes=["negative", "anger"]), root, sheet, "replica")
    write_sheet(sheet, [[1, "x"]], header=["Subj", "Filename"])
    with pytest.raises(DataError, match=r"missing column\(s\) \['Subject'\]"):
        build_manifest(DataConfig(), root, sheet, "replica")
    with pytest.raises(DataError, match="not found"):
        build_manifest(DataConfig(), root, tmp_path / "nope.xlsx", "replica")
    with pytest.raises(DataError, match="no worksheet 'Other'"):
        read_sheet(sheet, "Other")


def test_sheet_rows_without_media_are_reported(dataset, caplog):
    root, sheet = dataset
    rows = [[s, f"s{s}_{c}", 2, 5, 9, "", c] for s in (1, 2, 3)
            for c in ("negative", "positive", "surprise")] + [[4, "ghost", 1, 2, 3, "", "x"]]
    write_sheet(sheet, rows)
    with caplog.at_level(logging.WARNING):
        manifest = build_manifest(DataConfig(), root, sheet, "replica").samples
    assert len(manifest) == 9
    assert "ghost" in caplog.text


def test_cells():
    assert cell_text(14.0) == "14" and cell_text(" 4+7 ") == "4+7" and cell_text("") is None
    assert cell_text(float("nan")) is None
    assert frame_number("/") is None and frame_number("46") == 46 and frame_number(46.0) == 46

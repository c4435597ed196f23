"""The LOSO lists a run writes: the MEGC2019 two-column form, and for a composite also the
three-column `<path> <label> <dbtype>` form the RCN and Dual-ATME loaders read."""

import logging

import numpy as np
import pandas as pd
import pytest

from mer.data.export_flow import flow_image_path
from mer.training.loso import loso_folds, write_split_lists

COMPOSITE = pd.DataFrame(
    {
        "sample": ["casme2/sub01/EP02_01f", "samm/006/006_1_2", "smic/s01/s01_ne_01",
                   "casme2/sub02/EP03_02"],
        "subject": ["sub01", "006", "s01", "sub02"],
        "path": ["/d/casme2/sub01/EP02_01f", "/d/samm/006/006_1_2", "/d/smic/s01/s01_ne_01",
                 "/d/casme2/sub02/EP03_02"],
        "part": ["casme2", "samm", "smic", "casme2"],
    }
)
LABELS = np.array([1, 0, 2, 0])
FOLDS = loso_folds(COMPOSITE["subject"])


def _lines(path) -> list[str]:
    return path.read_text().splitlines()


def test_a_composite_run_with_flow_lists_the_exported_images_with_their_part(tmp_path):
    write_split_lists(FOLDS, COMPOSITE, LABELS, tmp_path, ["flow", "flow_puzzle"])
    assert _lines(tmp_path / "subName.txt") == ["006", "s01", "sub01", "sub02"]
    assert _lines(tmp_path / "s01_test_dbtype.txt") == ["flow/smic_s01_s01_ne_01_flow.png 2 2"]
    assert _lines(tmp_path / "s01_train_dbtype.txt") == [
        "flow/casme2_sub01_EP02_01f_flow.png 1 0",
        "flow/samm_006_006_1_2_flow.png 0 1",
        "flow/casme2_sub02_EP03_02_flow.png 0 0",
    ]
    assert _lines(tmp_path / "s01_test.txt") == ["/d/smic/s01/s01_ne_01 2"]  # as before
    names = {path.name for path in tmp_path.iterdir()}
    assert names == {"subName.txt"} | {
        f"{fold.subject}_{kind}{suffix}.txt"
        for fold in FOLDS for kind in ("train", "test") for suffix in ("", "_dbtype")
    }
    # Dual-ATME's loader turns each listed path into the puzzle image's by replacing "flow".
    trained = COMPOSITE["sample"][[0, 1, 3]]
    for sample, line in zip(trained, _lines(tmp_path / "s01_train_dbtype.txt"), strict=True):
        puzzle = line.split()[0].replace("flow", "flow_puzzle")
        assert puzzle == str(flow_image_path(sample, "flow_puzzle"))


@pytest.mark.parametrize(
    ("inputs", "listed"),
    [((), "/d/smic/s01/s01_ne_01"),
     (["frames", "au_regions"], "/d/smic/s01/s01_ne_01"),
     (["frames", "flow_puzzle"], "flow_puzzle/smic_s01_s01_ne_01_flow_puzzle.png")],
)
def test_the_listed_path_is_the_first_flow_inputs_image_else_the_clip(tmp_path, inputs, listed):
    write_split_lists(FOLDS, COMPOSITE, LABELS, tmp_path, inputs)
    assert _lines(tmp_path / "s01_test_dbtype.txt") == [f"{listed} 2 2"]


def test_no_three_column_lists_outside_a_composite_or_for_an_unknown_part(tmp_path, caplog):
    single = tmp_path / "single"
    write_split_lists(FOLDS, COMPOSITE.drop(columns="part"), LABELS, single, ["flow"])
    assert not list(single.glob("*_dbtype.txt")) and (single / "s01_test.txt").is_file()
    other = tmp_path / "other"
    with caplog.at_level(logging.WARNING):
        write_split_lists(FOLDS, COMPOSITE.assign(part="mmew"), LABELS, other, ["flow"])
    assert not list(other.glob("*_dbtype.txt")) and (other / "s01_test.txt").is_file()
    assert "['mmew']" in caplog.text

"""Clips that break only when decoded: a named error, or a listed skip with --on-bad skip."""

import dataclasses

import pytest

from mer.config import DataConfig, RegionConfig
from mer.data.manifest import build_manifest
from mer.data.sheets import DataError
from mer.data.sources import preprocess
from tests.data.replicas import SHEET_HEADER, class_folder_dataset, write_sheet


@pytest.fixture
def broken_dataset(tmp_path):
    """The replica plus a frame folder whose images are not images."""
    root = tmp_path / "dataset"
    class_folder_dataset(root)
    broken = root / "negative" / "s1_broken"
    broken.mkdir()
    for number in range(1, 13):
        (broken / f"img{number}.jpg").write_bytes(b"not a jpeg")
    rows = [[s, f"s{s}_{c}", 2, 5, 9, "", c] for s in (1, 2, 3)
            for c in ("negative", "positive", "surprise")] + [[1, "s1_broken", 2, 5, 9, "", "x"]]
    write_sheet(root / "coding.xlsx", rows, SHEET_HEADER)
    data = DataConfig(frames=4, size=16, sampler="even", cache_dir=str(tmp_path / "cache"))
    return data, build_manifest(data, root, root / "coding.xlsx", "replica").samples


def test_a_clip_that_fails_to_decode_stops_the_run_with_its_name(broken_dataset):
    data, manifest = broken_dataset
    assert len(manifest) == 10  # the manifest counts files, it does not decode them
    with pytest.raises(DataError, match=r"img\d+\.jpg.*--on-bad skip"):
        preprocess(data, manifest)


def test_on_bad_skip_leaves_it_out_and_lists_it(broken_dataset):
    data, manifest = broken_dataset
    prepared = preprocess(dataclasses.replace(data, on_bad="skip"), manifest)
    broken = int(manifest.index[manifest["sample"] == "s1_broken"][0])
    assert broken not in prepared.rows and len(prepared.rows) == 9
    assert len(prepared.streams[0]) == 9
    assert list(prepared.failures["sample"]) == ["s1_broken"]
    assert prepared.failures["excluded"].all()


def test_a_corrupt_video_is_a_manifest_problem_not_a_crash(tmp_path):
    sheet = class_folder_dataset(tmp_path)
    (tmp_path / "positive" / "s2_positive.avi").write_bytes(b"garbage")
    manifest = build_manifest(DataConfig(), tmp_path, sheet, "replica")
    assert len(manifest.samples) == 8
    assert list(manifest.excluded_problems()["sample"]) == ["s2_positive"]


def test_no_face_is_a_bad_clip_unless_a_proportional_crop_is_asked_for(tmp_path):
    root = tmp_path / "dataset"
    sheet = class_folder_dataset(root, subjects=1)  # noise clips: dlib finds no face
    regions = RegionConfig(enabled=True)
    data = DataConfig(frames=4, size=16, sampler="even", cache_dir=str(tmp_path / "cache"),
                      regions=regions)
    manifest = build_manifest(data, root, sheet, "replica").samples
    with pytest.raises(DataError, match=r"s1_negative.*no face found.*no_face=proportional"):
        preprocess(data, manifest)
    skipped = preprocess(dataclasses.replace(data, on_bad="skip"), manifest)
    assert skipped.rows == [] and skipped.failures["problem"].str.contains("no face").all()
    cropped = preprocess(
        dataclasses.replace(data, regions=dataclasses.replace(regions, no_face="proportional")),
        manifest,
    )
    assert cropped.rows == [0, 1, 2] and cropped.streams[1][0].shape == (4, 16, 16, 3)

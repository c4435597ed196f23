"""Datasets read exactly as distributed (config/datasets/*.yaml), on the real sheets shipped in
data/annotations/ and on replica trees whose frames are empty files with the released names."""

from __future__ import annotations

import re
import shutil
from collections import Counter
from pathlib import Path

import openpyxl
import pytest

from mer.config import CONFIG_DIR, ConfigError, load_config
from mer.data.datasets import (
    build_composite_manifest,
    build_dataset_manifest,
    load_dataset_spec,
    sheet_path,
)
from mer.data.sheets import DataError
from mer.data.sources import resolve_source
from tests.data.dataset_replicas import (
    CASME2_SHEET,
    CASME3_SHEET_NAME,
    SAMM_HEADER,
    SAMM_SHEET_NAME,
    SMIC_LIST,
    casme2_clip,
    casme2_rows,
    casme3_clip,
    megc2019_rows,
    samm_clip,
    samm_official_rows,
    samm_row,
    smic_clip,
    smic_rows,
    smic_tree,
    write_casme3_sheet,
    write_samm_sheet,
)

KNOWN = ["casme2", "casme3", "megc2019", "samm", "smic"]


@pytest.fixture(scope="module")
def specs():
    return {name: load_dataset_spec(name) for name in KNOWN}


def problems_of(manifest, sample: str):
    return manifest.problems[manifest.problems["sample"] == sample]


def label_counts(samples) -> dict[str, int]:
    return dict(Counter(samples["label"]))


# --- CASME II, the real sheet ---------------------------------------------------------------


def test_casme2_sheet_megc2019_protocol(specs):
    spec = specs["casme2"]
    sheet = sheet_path(spec, None, None)
    assert sheet == CASME2_SHEET
    manifest = build_dataset_manifest(spec, None, sheet, sheets_only=True)
    samples = manifest.samples
    assert len(samples) == 147
    assert label_counts(samples) == {"negative": 90, "positive": 32, "surprise": 25}
    assert samples["subject"].nunique() == 24
    assert all(re.fullmatch(r"sub\d\d", subject) for subject in samples["subject"])
    assert set(samples["megc_subject"]) == set(samples["subject"])
    assert manifest.excluded_emotions == {"others": 99, "sadness": 7, "fear": 2}
    assert samples["sample"].is_unique
    assert samples["frames"].isna().all()  # sheets only: no media looked at

    # EP02_01f is a clip of sub01 and of sub09: two samples
    twins = samples[samples["filename"] == "EP02_01f"].set_index("subject")
    assert sorted(twins.index) == ["sub01", "sub09"]
    assert twins.loc["sub01", "onset"] == 46 and twins.loc["sub09", "onset"] == 21
    assert twins.loc["sub01", "aus"] == "12" and twins.loc["sub09", "aus"] == "L12"
    assert twins.loc["sub01", "path"] != twins.loc["sub09", "path"]

    # Excel row 31: sub04 EP12_01f, apex "/" -> the middle frame, reported, kept
    slash = samples.set_index("sample").loc["sub04/EP12_01f"]
    assert (slash["onset"], slash["apex"], slash["offset"]) == (261, (261 + 321) // 2, 321)
    assert slash["label"] == "negative"
    reported = manifest.problems
    assert len(reported) == 1
    assert reported.iloc[0]["where"] == f"{CASME2_SHEET.name} row 31"
    assert reported.iloc[0]["sample"] == "sub04/EP12_01f"
    assert "'/'" in reported.iloc[0]["problem"]
    assert not reported.iloc[0]["excluded"]
    assert manifest.excluded_problems().empty

    # every kept row is the sheet's own, with canonical AUs
    by_key = {(f"sub{row['subject']}", row["filename"]): row for row in casme2_rows()}
    for record in samples.itertuples():
        row = by_key[(record.subject, record.filename)]
        assert (record.onset, record.offset) == (row["onset"], row["offset"])
        if record.sample != "sub04/EP12_01f":
            assert record.apex == row["apex"]
        assert record.aus == str(row["aus"])
        assert record.path == f"{record.subject}/{record.filename}"
    assert by_key[("sub01", "EP19_05f")]["aus"] == "4+L10"


def test_casme2_sheet_5class_protocol(specs):
    spec = specs["casme2"]
    manifest = build_dataset_manifest(spec, None, CASME2_SHEET, "casme2_5class",
                                      sheets_only=True)
    assert len(manifest.samples) == 246
    assert label_counts(manifest.samples) == {"happiness": 32, "surprise": 25, "disgust": 63,
                                              "repression": 27, "others": 99}
    assert manifest.excluded_emotions == {"sadness": 7, "fear": 2}
    # five `others` rows have AU cell "?": empty AUs, reported, not excluded
    unknown = manifest.problems[manifest.problems["problem"].str.contains("unknown")]
    assert sorted(unknown["where"]) == sorted(f"{CASME2_SHEET.name} row {row}"
                                              for row in (42, 45, 50, 186, 246))
    assert not unknown["excluded"].any()
    samples = manifest.samples.set_index("sample")
    assert samples.loc[unknown["sample"], "aus"].eq("").all()
    assert manifest.excluded_problems().empty


# --- CASME II, replica trees ----------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["img", "reg_img"], ids=["RAW", "Cropped"])
def test_casme2_replica_tree(specs, tmp_path, prefix):
    spec = specs["casme2"]
    root = tmp_path / ("CASME2-RAW" if prefix == "img" else "Cropped")
    rows = [row for row in casme2_rows() if row["subject"] in ("01", "02", "09")]
    kept = {"disgust", "repression", "happiness", "surprise"}
    frames = {}
    for row in rows:  # every clip of these subjects, `others` included, as released
        frames[f"sub{row['subject']}/{row['filename']}"] = casme2_clip(root, row, prefix)
    (root / "sub01" / "EP19_05f" / f"{prefix}400.jpg").unlink()  # inside 396..446
    shutil.rmtree(root / "sub02" / "EP02_04f")  # a repression clip, gone
    casme2_clip(root, {"subject": "01", "filename": "EP99_01", "onset": 10, "offset": 20},
                prefix)
    (root / "sub09" / "EP02_01f" / "Thumbs.db").touch()  # not a frame

    manifest = build_dataset_manifest(spec, root, sheet_path(spec, root, None))
    samples = manifest.samples.set_index("sample")
    problems = manifest.problems
    damaged = {"sub01/EP19_05f", "sub02/EP02_04f"}
    expected = {f"sub{row['subject']}/{row['filename']}" for row in rows
                if row["emotion"] in kept} - damaged
    assert set(samples.index) == expected
    for sample, count in frames.items():
        if sample in expected:
            assert samples.loc[sample, "frames"] == count, sample
            assert samples.loc[sample, "path"] == str(root / sample)
    assert samples.loc["sub09/EP02_01f", "frames"] == 91 + 2 - (21 - 2) + 1

    gap = problems_of(manifest, "sub01/EP19_05f")
    assert len(gap) == 1 and gap.iloc[0]["excluded"]
    assert gap.iloc[0]["where"] == str(root / "sub01" / "EP19_05f")
    assert "400" in gap.iloc[0]["problem"]
    gone = problems_of(manifest, "sub02/EP02_04f")
    assert len(gone) == 1 and gone.iloc[0]["excluded"]
    assert gone.iloc[0]["where"] == str(root / "sub02" / "EP02_04f")

    # the other 21 subjects' clips are all missing, each an excluded problem
    missing = manifest.excluded_problems()
    assert len(missing) == 147 - len(expected)
    assert set(missing["sample"]) == {
        f"sub{row['subject']}/{row['filename']}" for row in casme2_rows()
        if row["emotion"] in kept} - expected

    # a clip folder no row names is reported, not excluded; `others` clips are not strays
    strays = problems[problems["problem"].str.contains("not in the sheet")]
    assert strays["where"].tolist() == [str(root / "sub01" / "EP99_01")]
    assert not strays["excluded"].any()


# --- SMIC-HS --------------------------------------------------------------------------------


def test_smic_list_and_replica_tree(specs, tmp_path):
    spec = specs["smic"]
    root = tmp_path / "SMIC"
    rows = smic_tree(root)
    assert sheet_path(spec, root, None) == SMIC_LIST
    manifest = build_dataset_manifest(spec, root, sheet_path(spec, root, None))
    samples = manifest.samples
    assert len(samples) == 164
    assert label_counts(samples) == {"negative": 70, "positive": 51, "surprise": 43}
    assert samples["subject"].nunique() == 16
    assert manifest.problems.empty and manifest.excluded_emotions == {}
    by_file = {row["filename"]: row for row in rows}
    for record in samples.itertuples():
        row = by_file[record.filename]
        assert (record.onset, record.offset) == (row["onset"], row["offset"])
        assert record.apex == (row["onset"] + row["offset"]) // 2
        assert record.frames == row["offset"] - row["onset"] + 1
        assert record.subject == f"s{row['subject']}"
        assert record.megc_subject == f"s{int(row['subject']):02d}"
        assert record.aus == ""
        path = Path(record.path)
        assert path.parent.name == record.label  # the label is the emotion folder
        assert path == root / "HS" / record.subject / "micro" / record.label / record.filename
    first = samples.set_index("filename").loc["s1_ne_01"]
    assert (first["onset"], first["apex"], first["offset"]) == (559740, 559757, 559775)
    assert (Path(first["path"]) / "image559740.bmp").is_file()


def test_smic_missing_frame_is_excluded(specs, tmp_path):
    spec = specs["smic"]
    row = next(row for row in smic_rows() if row["filename"] == "s3_po_01")
    clip = smic_clip(tmp_path, row)
    (clip / f"image{row['offset']}.bmp").unlink()
    manifest = build_dataset_manifest(spec, tmp_path, SMIC_LIST)
    assert "s3/s3_po_01" not in set(manifest.samples["sample"])
    problem = problems_of(manifest, "s3/s3_po_01")
    assert problem["where"].tolist() == [str(clip)] and problem["excluded"].all()
    assert str(row["offset"]) in problem.iloc[0]["problem"]
    assert len(manifest.samples) == 0


# --- SAMM, a replica sheet ------------------------------------------------------------------

SAMM_ROWS = [
    samm_row(6, "006_1_2", 5562, 5588, 5632, "4+7", "Anger"),
    samm_row(6, "006_1_3", 3912, 3948, 3980, "(R6 or R12)+R15", "Contempt"),
    samm_row(6, "006_5_9", 1341, 1350, 1370, "1A+2A+5B", "Surprise"),
    samm_row(7, "007_6_1", 1014, 1030, 1060, 12, "Happiness"),
    samm_row(7, "007_3_1", 2204, 2209, 2240, "?", "Disgust"),  # Excel row 19
    samm_row(9, "009_3_2", 4700, 4725, 4751, "ref(7B)+43C", "Fear"),
    samm_row(9, "009_2_1", 880, 900, 920, "T18+39", "Sadness"),
    samm_row(10, "010_2_1", 3100, 3120, 3140, "10A/B", "Other"),
    samm_row(10, "010_4_1", 500, 510, 530, "15A + 17", "Other"),
    samm_row(11, "011_2_1", 2001, 2015, 2030, 14.0, "Happiness"),
]


@pytest.fixture
def samm_root(tmp_path):
    root = tmp_path / "SAMM"
    root.mkdir()
    write_samm_sheet(root / SAMM_SHEET_NAME, SAMM_ROWS)
    for row in SAMM_ROWS:
        samm_clip(root, row)
    return root


def test_samm_replica_megc2019(specs, samm_root):
    spec = specs["samm"]
    sheet = sheet_path(spec, samm_root, None)
    assert sheet == samm_root / SAMM_SHEET_NAME
    assert openpyxl.load_workbook(sheet)["MICRO_ONLY"].cell(14, 1).value == "Subject"
    manifest = build_dataset_manifest(spec, samm_root, sheet)
    samples = manifest.samples.set_index("filename")
    assert sorted(samples.index) == sorted(r["filename"] for r in SAMM_ROWS
                                           if r["emotion"] != "Other")
    assert label_counts(manifest.samples) == {"negative": 5, "positive": 2, "surprise": 1}
    assert manifest.excluded_emotions == {"other": 2}
    anger = samples.loc["006_1_2"]
    assert (anger["onset"], anger["apex"], anger["offset"]) == (5562, 5588, 5632)
    assert anger["subject"] == "006" and anger["megc_subject"] == "6"
    assert anger["sample"] == "006/006_1_2"
    assert anger["path"] == str(samm_root / "006" / "006_1_2")
    assert anger["frames"] == 5632 - 5562 + 3
    assert samples["subject"].tolist() == [f"{r['subject']:03d}" for r in SAMM_ROWS
                                           if r["emotion"] != "Other"]
    assert samples["aus"].to_dict() == {
        "006_1_2": "4+7", "006_1_3": "(R6 or R12)+R15", "006_5_9": "1A+2A+5B",
        "007_6_1": "12", "007_3_1": "", "009_3_2": "ref(7B)+43C", "009_2_1": "T18+39",
        "011_2_1": "14",
    }
    # the `?` AU cell: reported at its Excel row (header at row 14), the sample kept
    problems = manifest.problems
    assert len(problems) == 1
    assert problems.iloc[0]["where"] == f"{SAMM_SHEET_NAME} row 19"
    assert problems.iloc[0]["sample"] == "007/007_3_1"
    assert not problems.iloc[0]["excluded"]


def test_samm_replica_5class(specs, samm_root):
    spec = specs["samm"]
    manifest = build_dataset_manifest(spec, samm_root, sheet_path(spec, samm_root, None),
                                      "samm_5class")
    assert label_counts(manifest.samples) == {"anger": 1, "contempt": 1, "surprise": 1,
                                              "happiness": 2, "other": 2}
    assert manifest.excluded_emotions == {"disgust": 1, "fear": 1, "sadness": 1}
    aus = manifest.samples.set_index("filename")["aus"]
    assert aus["010_2_1"] == "10A/B" and aus["010_4_1"] == "15A+17"
    assert manifest.problems.empty  # the `?` row is a Disgust row, outside this protocol


def test_samm_subject_written_as_text(specs, tmp_path):
    rows = [dict(row, subject=f"{row['subject']:03d}") for row in SAMM_ROWS[:4]]
    sheet = write_samm_sheet(tmp_path / SAMM_SHEET_NAME, rows)
    manifest = build_dataset_manifest(specs["samm"], tmp_path, sheet, sheets_only=True)
    first = manifest.samples.iloc[0]
    assert (first["subject"], first["megc_subject"]) == ("006", "6")
    assert first["path"] == str(tmp_path / "006" / "006_1_2")


def test_samm_sheet_needs_the_root(specs):
    with pytest.raises(DataError, match="root"):
        sheet_path(specs["samm"], None, None)


# --- CAS(ME)^3, a replica sheet -------------------------------------------------------------

CASME3_ROWS = [  # Excel rows 2..
    ["spNO.1", "a", "355", "360", "370", "L12+R14", "1", "happy"],
    ["spNO.1", "a", "520", "530", "540", "AU4+AU7", "3", "disgust"],  # same clip, later onset
    ["spNO.1", "b", "100", "110", "120", "1+2", "4", "surprise"],
    ["spNO.1", "b", "200", "205", "210", "4", "7", "Others"],
    ["spNO.2", "a", "50", "55", "60", None, "7", "others"],
    ["spNO.2", "b", "300", "310", "0", "4", "3", "fear"],  # Excel row 7: offset 0
    ["spNO.2", "c", "400", "405", "380", "4", "3", "anger"],  # Excel row 8: offset < onset
    ["spNO.2", "d", "600", "650", "620", "12", "1", "happy"],  # Excel row 9: apex outside
    ["spNO.3", "a", "10", "15", "20", "R4", "3", "sad"],
]


@pytest.fixture
def casme3_root(tmp_path):
    root = tmp_path / "CASME3_A"
    root.mkdir()
    write_casme3_sheet(root / CASME3_SHEET_NAME, CASME3_ROWS)
    clips: dict[tuple[str, str], set[int]] = {}
    for subject, filename, onset, _, offset, *_ in CASME3_ROWS:
        first, last = int(onset), max(int(offset), int(onset))
        clips.setdefault((subject, filename), set()).update(range(first, last + 1))
    for (subject, filename), numbers in clips.items():
        casme3_clip(root, subject, filename, sorted(numbers))
    return root


def test_casme3_replica_3class(specs, casme3_root):
    spec = specs["casme3"]
    sheet = sheet_path(spec, casme3_root, None)
    assert sheet == casme3_root / CASME3_SHEET_NAME
    assert openpyxl.load_workbook(sheet)["label"]["C2"].data_type == "s"  # text numbers
    manifest = build_dataset_manifest(spec, casme3_root, sheet)
    samples = manifest.samples.set_index("sample")
    assert sorted(samples.index) == sorted(["spNO.1/a/355", "spNO.1/a/520", "spNO.1/b/100",
                                            "spNO.2/d/600", "spNO.3/a/10"])
    assert samples["label"].to_dict() == {
        "spNO.1/a/355": "positive", "spNO.1/a/520": "negative", "spNO.1/b/100": "surprise",
        "spNO.2/d/600": "positive", "spNO.3/a/10": "negative"}
    assert manifest.excluded_emotions == {"others": 2}  # `Others` and `others`
    first, second = samples.loc["spNO.1/a/355"], samples.loc["spNO.1/a/520"]
    assert (first["onset"], first["apex"], first["offset"]) == (355, 360, 370)
    assert (second["onset"], second["apex"], second["offset"]) == (520, 530, 540)
    assert first["path"] == second["path"] == str(casme3_root / "spNO.1" / "a" / "color")
    assert first["frames"] == second["frames"] == (370 - 355 + 1) + (540 - 520 + 1)
    assert first["aus"] == "L12+R14" and second["aus"] == "4+7"
    assert samples.loc["spNO.2/d/600", "apex"] == 610  # 650 outside 600..620

    problems = manifest.problems.set_index("where")
    name = CASME3_SHEET_NAME
    assert sorted(problems.index) == [f"{name} row 7", f"{name} row 8", f"{name} row 9"]
    assert problems.loc[f"{name} row 7", "sample"] == "spNO.2/b/300"
    assert problems.loc[f"{name} row 8", "sample"] == "spNO.2/c/400"
    assert problems.loc[f"{name} row 7", "excluded"]
    assert problems.loc[f"{name} row 8", "excluded"]
    assert not problems.loc[f"{name} row 9", "excluded"]
    assert "'650'" in problems.loc[f"{name} row 9", "problem"]


def test_casme3_replica_4class_counts_both_others(specs, casme3_root):
    spec = specs["casme3"]
    manifest = build_dataset_manifest(spec, casme3_root, sheet_path(spec, casme3_root, None),
                                      "casme3_4class")
    assert label_counts(manifest.samples) == {"positive": 2, "negative": 2, "surprise": 1,
                                              "others": 2}
    others = manifest.samples[manifest.samples["label"] == "others"]
    assert sorted(others["sample"]) == ["spNO.1/b/200", "spNO.2/a/50"]
    assert manifest.excluded_emotions == {}
    assert len(manifest.excluded_problems()) == 2


def test_casme3_repeated_key_is_a_problem(specs, tmp_path):
    rows = [CASME3_ROWS[0], CASME3_ROWS[0][:7] + ["happy"]]
    sheet = write_casme3_sheet(tmp_path / CASME3_SHEET_NAME, rows)
    manifest = build_dataset_manifest(specs["casme3"], None, sheet, sheets_only=True)
    assert manifest.samples["sample"].tolist() == ["spNO.1/a/355"]
    duplicate = manifest.excluded_problems()
    assert duplicate["where"].tolist() == [f"{CASME3_SHEET_NAME} row 3"]


# --- MEGC2019 composite ---------------------------------------------------------------------


def megc2019_roots(base: Path) -> dict[str, Path]:
    """CASME II (every clip of the real sheet), SAMM (a sheet with exactly the official SAMM
    samples plus Other rows) and SMIC-HS (the real list), frames onset..offset."""
    roots = {"casme2": base / "CASME2", "samm": base / "SAMM", "smic": base / "SMIC"}
    for row in casme2_rows():
        casme2_clip(roots["casme2"], row, "reg_img", margin=0)
    smic_tree(roots["smic"])
    roots["samm"].mkdir(parents=True)
    samm = samm_official_rows()
    write_samm_sheet(roots["samm"] / SAMM_SHEET_NAME, samm)
    for row in samm:
        samm_clip(roots["samm"], row, margin=0)
    return roots


@pytest.fixture(scope="module")
def megc2019_tree(tmp_path_factory):
    return megc2019_roots(tmp_path_factory.mktemp("megc2019"))


@pytest.mark.slow
def test_megc2019_composite_is_the_official_list(specs, megc2019_tree):
    manifest = build_composite_manifest(specs["megc2019"], megc2019_tree, {})
    samples = manifest.samples
    official = megc2019_rows()
    assert len(samples) == 442 == len(official)
    expected = {(r["part"], r["subject"], r["filename"]): r["label"] for r in official}
    written = {tuple(sample.split("/")): label
               for sample, label in zip(samples["sample"], samples["label"], strict=True)}
    assert written == expected
    assert set(zip(samples["part"], samples["subject"], strict=True)) == {
        (r["part"], r["subject"]) for r in official}
    assert samples["subject"].nunique() == 68
    assert samples.groupby("part")["subject"].nunique().to_dict() == {
        "casme2": 24, "samm": 28, "smic": 16}
    assert Counter(zip(samples["part"], samples["label"], strict=True)) == {
        ("casme2", "negative"): 88, ("casme2", "positive"): 32, ("casme2", "surprise"): 25,
        ("samm", "negative"): 92, ("samm", "positive"): 26, ("samm", "surprise"): 15,
        ("smic", "negative"): 70, ("smic", "positive"): 51, ("smic", "surprise"): 43}
    assert (samples["dataset"] == "megc2019").all()
    assert samples["frames"].gt(0).all() and samples["path"].map(lambda p: Path(p).is_dir()).all()
    smic = samples.set_index("sample").loc["smic/s01/s01_ne_01"]
    assert Path(smic["path"]).name == "s1_ne_01" and smic["apex"] == 559757
    samm = samples.set_index("sample").loc["samm/6/006_1_2"]
    assert Path(samm["path"]) == megc2019_tree["samm"] / "006" / "006_1_2"
    assert manifest.excluded_problems().empty
    assert manifest.excluded_emotions["casme2: in the protocol, not in the official list"] == 2
    assert manifest.excluded_emotions["samm: other"] == 3
    assert manifest.excluded_emotions["casme2: others"] == 99


@pytest.mark.parametrize("part, clip, sample", [
    ("smic", "HS/s1/micro/negative/s1_ne_02", "smic/s01/s01_ne_02"),
    ("samm", "006/006_1_3", "samm/6/006_1_3"),
    ("casme2", "sub09/EP02_01f", "casme2/sub09/EP02_01f"),
])
def test_megc2019_composite_reports_a_missing_clip(specs, megc2019_tree, tmp_path, part,
                                                   clip, sample):
    roots = megc2019_tree
    aside = tmp_path / "aside"
    shutil.move(roots[part] / clip, aside)  # the clip is gone (put back afterwards)
    try:
        manifest = build_composite_manifest(specs["megc2019"], roots, {})
    finally:
        shutil.move(aside, roots[part] / clip)
    assert len(manifest.samples) == 441
    assert sample not in set(manifest.samples["sample"])
    excluded = manifest.excluded_problems()
    assert sample in set(excluded["sample"])
    assert str(roots[part] / clip) in set(excluded["where"])  # the part's own report
    if part == "casme2":  # the other EP02_01f is still there
        assert "casme2/sub01/EP02_01f" in set(manifest.samples["sample"])


def test_megc2019_composite_uses_the_official_label(specs, megc2019_tree, tmp_path):
    rows = samm_official_rows()
    changed = next(row for row in rows if row["filename"] == "006_1_2")
    assert changed["emotion"] in ("Anger", "Contempt", "Disgust", "Fear", "Sadness")
    changed["emotion"] = "Happiness"  # the sheet now says positive, the list negative
    sheet = write_samm_sheet(tmp_path / SAMM_SHEET_NAME, rows)
    manifest = build_composite_manifest(specs["megc2019"], megc2019_tree, {"samm": str(sheet)})
    assert len(manifest.samples) == 442
    assert manifest.samples.set_index("sample").loc["samm/6/006_1_2", "label"] == "negative"
    reported = problems_of(manifest, "samm/6/006_1_2")
    assert len(reported) == 1 and not reported.iloc[0]["excluded"]
    assert "positive" in reported.iloc[0]["problem"]
    assert manifest.excluded_problems().empty


# --- errors ---------------------------------------------------------------------------------


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(ConfigError) as caught:
        load_dataset_spec("casme4")
    message = str(caught.value)
    assert "casme4" in message
    for name in KNOWN:
        assert name in message


def test_unknown_protocol(specs):
    with pytest.raises(ConfigError, match="no_such_protocol"):
        build_dataset_manifest(specs["casme2"], None, CASME2_SHEET, "no_such_protocol",
                               sheets_only=True)
    with pytest.raises(ConfigError, match="megc2019"):
        specs["smic"].table("casme2_5class")


def test_wrong_worksheet_names_the_sheet(specs, tmp_path):
    sheet = write_samm_sheet(tmp_path / SAMM_SHEET_NAME, SAMM_ROWS, sheet_name="Sheet1")
    with pytest.raises(DataError) as caught:
        build_dataset_manifest(specs["samm"], None, sheet, sheets_only=True)
    assert str(sheet) in str(caught.value) and "MICRO_ONLY" in str(caught.value)


def test_missing_column_names_the_sheet(specs, tmp_path):
    header = [name for name in SAMM_HEADER if name != "Estimated Emotion"]
    sheet = write_samm_sheet(tmp_path / SAMM_SHEET_NAME, SAMM_ROWS, header=header)
    with pytest.raises(DataError) as caught:
        build_dataset_manifest(specs["samm"], None, sheet, sheets_only=True)
    assert str(sheet) in str(caught.value) and "Estimated Emotion" in str(caught.value)


def test_header_row_matters(specs, tmp_path):
    """A SAMM sheet whose header is in row 1 (notes removed) is not read as SAMM."""
    sheet = tmp_path / SAMM_SHEET_NAME
    workbook = openpyxl.Workbook()
    workbook.active.title = "MICRO_ONLY"
    workbook.active.append(SAMM_HEADER)
    for clip in range(1, 21):
        workbook.active.append([6, f"006_1_{clip}", 1, 100 * clip, 100 * clip + 5,
                                100 * clip + 9, 10, "Micro", "4", "Anger"])
    workbook.save(sheet)
    with pytest.raises(DataError, match="missing column") as caught:
        build_dataset_manifest(specs["samm"], None, sheet, sheets_only=True)
    assert str(sheet) in str(caught.value)


def test_root_required_unless_sheets_only(specs, tmp_path):
    with pytest.raises(DataError, match="root"):
        build_dataset_manifest(specs["casme2"], None, CASME2_SHEET)
    with pytest.raises(DataError, match="not found"):
        build_dataset_manifest(specs["casme2"], tmp_path / "nowhere", CASME2_SHEET)


# Blank cells reach build_dataset_manifest as float NaN instead of None under pandas 3 (3.1.1
# installed), twice over: (1) mer/data/sheets.py read_sheet, `frame.map(cell_text)
# .astype(object)`: map infers the `str` dtype for text columns, where cell_text's None becomes
# NaN; (2) mer/data/datasets.py build_dataset_manifest, `frame.iterrows()`: a row of text/None
# cells becomes a `str` Series, None again NaN. `cell()` then returns nan, `subject is None`
# misses it, and `canonical_subject(nan)` / `(emotion or "").strip()` raise AttributeError.
# Both must be fixed (e.g. `frame.where(frame.notna(), None)` in read_sheet and
# `frame.to_dict("records")` instead of iterrows); with both, these three tests pass.
BLANK_CELL_BUG = ("blank sheet cells arrive as float NaN, not None (sheets.py read_sheet map + "
                  "datasets.py iterrows under pandas 3): AttributeError on nan.strip()")


def casme2_like_sheet(path: Path, rows: list[list]) -> Path:
    """A small sheet in CASME II columns (the two blank columns included)."""
    workbook = openpyxl.Workbook()
    workbook.active.title = "Sheet1"
    workbook.active.append(["Subject", "Filename", None, "OnsetFrame", "ApexFrame",
                            "OffsetFrame", None, "Action Units", "Estimated Emotion"])
    for row in rows:
        workbook.active.append(row)
    workbook.save(path)
    return path


def test_blank_emotion_cell_is_counted_not_fatal(specs, tmp_path):
    sheet = casme2_like_sheet(tmp_path / "coding.xlsx", [
        ["01", "EP02_01f", None, 46, 59, 86, None, 12, "happiness"],
        ["01", "EP03_02", None, 131, 139, 161, None, 18, None],  # emotion left blank
    ])
    manifest = build_dataset_manifest(specs["casme2"], None, sheet, sheets_only=True)
    assert manifest.samples["sample"].tolist() == ["sub01/EP02_01f"]
    assert manifest.excluded_emotions == {"(blank)": 1}


def test_blank_subject_cell_is_a_problem_not_fatal(specs, tmp_path):
    sheet = casme2_like_sheet(tmp_path / "coding.xlsx", [
        ["01", "EP02_01f", None, 46, 59, 86, None, 12, "happiness"],
        [None, "EP19_05f", None, 396, 416, 446, None, "4+L10", "disgust"],  # Excel row 3
    ])
    manifest = build_dataset_manifest(specs["casme2"], None, sheet, sheets_only=True)
    assert manifest.samples["sample"].tolist() == ["sub01/EP02_01f"]
    assert manifest.problems["where"].tolist() == ["coding.xlsx row 3"]
    assert manifest.problems["excluded"].all()


def test_csv_problem_rows_count_blank_lines(specs, tmp_path):
    sheet = tmp_path / "SMIC-HS-cropped.csv"
    sheet.write_text("Subject,Filename,OnsetFrame,OffsetFrame,Estimated Emotion\n"
                     "1,s1_ne_01,10,20,negative\n"
                     "\n"
                     "1,s1_ne_02,30,25,negative\n")  # line 4: offset before onset
    manifest = build_dataset_manifest(specs["smic"], None, sheet, sheets_only=True)
    assert manifest.samples["sample"].tolist() == ["s1/s1_ne_01"]
    assert manifest.problems["where"].tolist() == [f"{sheet.name} row 4"]


@pytest.mark.parametrize(
    "overrides, sampler",
    [
        (["data.layout=casme2"], "onset_offset"),  # 10 frames from frame 0 miss most onsets
        (["data.layout=samm"], "onset_offset"),  # 10 frames are 50 ms at 200 fps
        (["data.layout=smic"], "onset_offset"),
        (["data.layout=casme3"], "onset_offset"),
        (["data.layout=casme2", "data.sampler=first"], "first"),  # an explicit choice wins
        (["data.sheet=coding.xlsx"], "first"),  # class folders: the published framerange
    ],
)
def test_the_sampler_is_the_datasets_unless_the_config_sets_one(tmp_path, overrides, sampler):
    config = load_config(CONFIG_DIR / "me_model.yaml", [f"data.root={tmp_path}", *overrides])
    assert config.data.sampler == (None if len(overrides) == 1 else sampler)
    assert resolve_source(config.data).resolved(config.data).sampler == sampler


def test_megc2019_composite_without_a_parts_folder_names_its_setting(specs, megc2019_tree):
    roots = {part: root for part, root in megc2019_tree.items() if part != "samm"}
    with pytest.raises(DataError, match=r"set the folder of each part, data.roots.samm=DIR \("):
        build_composite_manifest(specs["megc2019"], roots, {})

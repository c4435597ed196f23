"""Replicas of released micro-expression datasets: their sheets and their folder trees.

Frames are EMPTY files with the released names (`img46.jpg`, `reg_img46.jpg`,
`006_05562.jpg`, `image559740.bmp`, `355.jpg`): a manifest counts and matches frame files by
name and never decodes them. The real CASME II sheet, SMIC-HS list and MEGC2019 list ship in
`data/annotations/` and are read here with openpyxl/csv, independently of the code under test.
SAMM and CAS(ME)^3 sheets are not redistributable, so they are written with openpyxl the way the
released files are laid out (see config/datasets/samm.yaml and casme3.yaml).
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Iterable
from pathlib import Path

import openpyxl

from mer.config import PROJECT_ROOT

ANNOTATIONS = PROJECT_ROOT / "data" / "annotations"
CASME2_SHEET = ANNOTATIONS / "CASME2-coding-20140508.xlsx"
SMIC_LIST = ANNOTATIONS / "SMIC-HS-cropped.csv"
MEGC2019_LIST = ANNOTATIONS / "MEGC2019-combined_3class_gt.csv"
MEGC2019_CLASSES = ["negative", "positive", "surprise"]

SAMM_SHEET_NAME = "SAMM_Micro_FACS_Codes_v2.xlsx"
SAMM_HEADER = ["Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame",
               "Offset Frame", "Duration", "Micro", "Action Units", "Estimated Emotion",
               "Objective Classes", "Notes"]
SAMM_NOTES = 13  # rows of notes above the header (the header is Excel row 14)
SAMM_NEGATIVE = ["Anger", "Contempt", "Disgust", "Fear", "Sadness"]
SAMM_OBJECTIVE = {"Anger": 1, "Contempt": 2, "Disgust": 2, "Fear": 5, "Sadness": 6,
                  "Happiness": 3, "Surprise": 4, "Other": 7}
SAMM_AUS = ["15A+17", "(R6 or R12)+R15", "10A/B", "ref(7B)+43C", "T18+39", 4, "4+7"]

CASME3_SHEET_NAME = "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx"
CASME3_HEADER = ["Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Objective class",
                 "emotion"]


def touch_frames(folder: Path, numbers: Iterable[int], name: str) -> int:
    """Empty frame files `name.format(n)` for each number; returns how many."""
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for number in numbers:
        (folder / name.format(number)).touch()
        count += 1
    return count


# --- CASME II -------------------------------------------------------------------------------


def casme2_rows() -> list[dict]:
    """The real CASME II sheet: subject (as written, "01"), filename, onset, apex, offset,
    aus, emotion, and its Excel row."""
    workbook = openpyxl.load_workbook(CASME2_SHEET, read_only=True)
    try:
        rows = list(workbook["Sheet1"].iter_rows(values_only=True))
    finally:
        workbook.close()
    header = rows[0][:9]
    assert header[:2] == ("Subject", "Filename") and header[2] is None and header[6] is None
    return [
        {"subject": subject, "filename": filename, "onset": onset, "apex": apex,
         "offset": offset, "aus": aus, "emotion": emotion, "row": excel_row}
        for excel_row, (subject, filename, _, onset, apex, offset, _, aus, emotion)
        in enumerate((row[:9] for row in rows[1:]), start=2)
        if subject is not None
    ]


def casme2_clip(root: Path, row: dict, prefix: str = "img", margin: int = 2) -> int:
    """`<root>/sub01/EP02_01f/img46.jpg`: frames onset-margin..offset+margin; returns the count.

    RAW frames are `img46.jpg`, Cropped ones `reg_img46.jpg`.
    """
    folder = root / f"sub{row['subject']}" / row["filename"]
    first = max(1, row["onset"] - margin)
    return touch_frames(folder, range(first, row["offset"] + margin + 1), prefix + "{}.jpg")


# --- SMIC-HS --------------------------------------------------------------------------------


def smic_rows() -> list[dict]:
    """The real SMIC-HS onset/offset list (subject "1", filename "s1_ne_01")."""
    with SMIC_LIST.open(newline="") as file:
        return [
            {"subject": row["Subject"], "filename": row["Filename"],
             "onset": int(row["OnsetFrame"]), "offset": int(row["OffsetFrame"]),
             "emotion": row["Estimated Emotion"]}
            for row in csv.DictReader(file)
        ]


def smic_clip(root: Path, row: dict) -> Path:
    """`<root>/HS/s1/micro/negative/s1_ne_01/image559740.bmp` for onset..offset."""
    folder = root / "HS" / f"s{row['subject']}" / "micro" / row["emotion"] / row["filename"]
    touch_frames(folder, range(row["onset"], row["offset"] + 1), "image{}.bmp")
    return folder


def smic_tree(root: Path) -> list[dict]:
    """Every clip of the SMIC-HS list; returns the rows."""
    rows = smic_rows()
    for row in rows:
        smic_clip(root, row)
    return rows


# --- MEGC2019 list --------------------------------------------------------------------------


def megc2019_rows() -> list[dict]:
    """The official MEGC2019 list (no header): part, subject, filename, label (class name)."""
    with MEGC2019_LIST.open(newline="") as file:
        return [
            {"part": part, "subject": subject, "filename": filename,
             "label": MEGC2019_CLASSES[int(label)]}
            for part, subject, filename, label in csv.reader(file)
        ]


# --- SAMM -----------------------------------------------------------------------------------


def samm_row(subject: int, filename: str, onset: int, apex: int, offset: int, aus,
             emotion: str) -> dict:
    return {"subject": subject, "filename": filename, "onset": onset, "apex": apex,
            "offset": offset, "aus": aus, "emotion": emotion}


def write_samm_sheet(path: Path, rows: list[dict], *, sheet_name: str = "MICRO_ONLY",
                     header: list[str] = SAMM_HEADER) -> Path:
    """SAMM_Micro_FACS_Codes_v2.xlsx as released: notes in rows 1-13 (some blank), the header
    in row 14, then one row per micro-expression, numbers stored as numbers."""
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = sheet_name
    notes = {
        1: "SAMM: Spontaneous Actions and Micro-Movements - Micro-Expression FACS Codes",
        2: "Version 2",
        4: "Inducement Code: the stimulus shown to the participant",
        5: "Onset/Apex/Offset Frame: frame numbers in the file names (006_05562.jpg)",
        6: "Duration: Offset - Onset + 1 frames at 200 fps",
        8: "Action Units: A-E intensity, L/R side; ref(x) noted for reference only",
        9: "(x or y): the coder could not tell which AU",
        11: "Estimated Emotion: the emotion the coder estimated from the AUs and the video",
        12: "Objective Classes: 1-7, Davison et al. 2018",
    }
    for row, text in notes.items():
        sheet.cell(row=row, column=1, value=text)
    for column, name in enumerate(header, start=1):
        sheet.cell(row=SAMM_NOTES + 1, column=column, value=name)
    for excel_row, row in enumerate(rows, start=SAMM_NOTES + 2):
        values = {
            "Subject": row["subject"], "Filename": row["filename"],
            "Inducement Code": int(row["filename"].split("_")[1]),
            "Onset Frame": row["onset"], "Apex Frame": row["apex"],
            "Offset Frame": row["offset"], "Duration": row["offset"] - row["onset"] + 1,
            "Micro": "Micro - 1/2", "Action Units": row["aus"],
            "Estimated Emotion": row["emotion"],
            "Objective Classes": SAMM_OBJECTIVE.get(row["emotion"], 7), "Notes": None,
        }
        for column, name in enumerate(header, start=1):
            sheet.cell(row=excel_row, column=column, value=values.get(name))
    workbook.save(path)
    return path


def samm_clip(root: Path, row: dict, margin: int = 1) -> Path:
    """`<root>/006/006_1_2/006_05562.jpg` for onset-margin..offset+margin."""
    subject = f"{int(row['subject']):03d}"
    folder = root / subject / row["filename"]
    touch_frames(folder, range(row["onset"] - margin, row["offset"] + margin + 1),
                 subject + "_{:05d}.jpg")
    return folder


def samm_official_rows() -> list[dict]:
    """A SAMM sheet covering exactly the official MEGC2019 SAMM samples (their emotions chosen
    to give the official labels), plus `Other` rows, which the 3-class protocol leaves out."""
    emotions = {"negative": itertools.cycle(SAMM_NEGATIVE),
                "positive": itertools.repeat("Happiness"),
                "surprise": itertools.repeat("Surprise")}
    aus = itertools.cycle(SAMM_AUS)
    rows = []
    for index, official in enumerate(r for r in megc2019_rows() if r["part"] == "samm"):
        onset = 1000 + 50 * index
        rows.append(samm_row(int(official["subject"]), official["filename"], onset, onset + 3,
                             onset + 6, next(aus), next(emotions[official["label"]])))
    rows += SAMM_OTHER_ROWS
    return rows


SAMM_OTHER_ROWS = [
    samm_row(6, "006_1_1", 200, 205, 210, "12", "Other"),
    samm_row(8, "008_5_14", 300, 302, 305, "R2", "Other"),  # subject 8 has no 3-class sample
    samm_row(25, "025_2_1", 400, 401, 404, "?", "Other"),
]


# --- CAS(ME)^3 ------------------------------------------------------------------------------


def write_casme3_sheet(path: Path, rows: list[list[str]], *, sheet_name: str = "label") -> Path:
    """cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx: worksheet `label`, every cell stored as TEXT
    (frame numbers included)."""
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = sheet_name
    sheet.append(CASME3_HEADER)
    for row in rows:
        assert all(value is None or isinstance(value, str) for value in row)
        sheet.append(row)
    workbook.save(path)
    return path


def casme3_clip(root: Path, subject: str, filename: str, numbers: Iterable[int]) -> Path:
    """`<root>/spNO.1/a/color/355.jpg` (and the depth frames beside, as released)."""
    numbers = list(numbers)
    clip = root / subject / filename
    touch_frames(clip / "color", numbers, "{}.jpg")
    touch_frames(clip / "depth", numbers, "{}.png")
    return clip / "color"

"""Tiny class-folder datasets written the way real ones are: cv2 videos and an openpyxl sheet."""

from pathlib import Path

import cv2
import numpy as np
import openpyxl

SHEET_HEADER = ["Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame",
                "Action Units", "Estimated Emotion"]


def write_video(path: Path, frames: np.ndarray) -> None:
    """Writes RGB uint8 frames (n, h, w, 3) as an MJPG .avi."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (width, height))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def write_sheet(path: Path, rows: list[list], header: list[str] = SHEET_HEADER) -> None:
    """An .xlsx with one worksheet `Sheet1`, numbers stored as numbers."""
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "Sheet1"
    sheet.append(header)
    for row in rows:
        sheet.append(row)
    workbook.save(path)


def class_folder_dataset(root: Path, subjects: int = 3, frames: int = 12, size: int = 24,
                         classes=("negative", "positive", "surprise")) -> Path:
    """One video per subject and class; class c brightens a distinct quadrant. Returns the sheet."""
    rows = []
    random = np.random.default_rng(0)
    for subject in range(1, subjects + 1):
        for label_index, label in enumerate(classes):
            name = f"s{subject}_{label}"
            clip = random.integers(60, 90, size=(frames, size, size, 3), dtype=np.uint8)
            half = size // 2
            top, left = divmod(label_index % 4, 2)
            clip[3:8, top * half:(top + 1) * half, left * half:(left + 1) * half] += 120
            write_video(root / label / f"{name}.avi", clip)
            rows.append([subject, name, 2, 5, 9, "4+7" if label_index else 12, label])
    sheet = root / "coding.xlsx"
    write_sheet(sheet, rows)
    return sheet

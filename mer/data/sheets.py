"""Reading annotation sheets (.xlsx, .xls, .csv) and their cells."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd


class DataError(ValueError):
    """A problem with the data on disk, naming the file or row and what to do about it."""


def read_sheet(
    path: str | Path, sheet_name: str | None = None, header_row: int = 0
) -> pd.DataFrame:
    """Reads an annotation sheet as text cells, so that ids such as `006` keep their zeros.

    Args:
        path: an .xlsx/.xls/.csv file.
        sheet_name: the worksheet of an Excel file; None takes the first.
        header_row: 0-based row of the column names (rows above it are notes).

    Returns:
        The sheet, every cell a string or None, column names stripped.

    Raises:
        DataError: the file is missing, unreadable, or has no such worksheet.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"annotation sheet not found: {path} (set data.sheet)")
    try:
        if path.suffix.lower() == ".csv":
            frame = pd.read_csv(
                path, header=header_row, dtype=str, keep_default_na=False, skip_blank_lines=False
            )
        elif path.suffix.lower() in (".xlsx", ".xlsm", ".xls"):
            with pd.ExcelFile(path) as workbook:
                name = workbook.sheet_names[0] if sheet_name is None else sheet_name
                if name not in workbook.sheet_names:
                    raise DataError(
                        f"{path}: no worksheet {name!r}; it has {workbook.sheet_names}"
                        " (set data.sheet_name)"
                    )
                frame = pd.read_excel(workbook, name, header=header_row, dtype=object)
        else:
            raise DataError(f"{path}: unsupported sheet type {path.suffix!r} (use .xlsx or .csv)")
    except DataError:
        raise
    except Exception as error:  # pandas/openpyxl raise many types for a broken file
        raise DataError(f"{path}: cannot read the sheet ({error})") from error
    frame.columns = [str(column).strip() for column in frame.columns]
    frame = frame.map(cell_text).astype(object)
    return frame.where(frame.notna(), None)  # pandas may store a None cell as NaN


def cell_text(value: Any) -> str | None:
    """A cell as trimmed text; None for blanks. Whole floats lose their `.0` (14.0 -> "14")."""
    if value is None:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            return str(int(value))
    text = str(value).strip()
    return text or None


def frame_number(value: str | None) -> int | None:
    """A frame-number cell as an int; None for a blank or a non-number such as `/`."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    if not number.is_integer():
        return None
    return int(number)


def require_columns(frame: pd.DataFrame, columns: list[str], where: str) -> None:
    """Raises DataError naming the columns of `columns` that `frame` lacks."""
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise DataError(
            f"{where}: missing column(s) {missing}; the sheet has {list(frame.columns)}"
            " (set data.columns)"
        )

"""Files every stage writes, and the order subjects are listed in: atomic writes of text, JSON and
CSV, and the natural sort key. Shared by training, evaluation and inference, so that none of them
imports another to write a file."""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def write_atomically(path: str | os.PathLike[str], content: str | bytes) -> None:
    """Writes ``content`` to a temporary sibling of ``path``, then renames it over ``path``: a
    full disk or a kill mid-write leaves the previous file (or none), never a truncated one."""
    destination = Path(path)
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = destination.with_name(f".{destination.name}.{uuid.uuid4().hex}.tmp")
    data = content.encode("utf-8") if isinstance(content, str) else content
    try:
        with open(temporary, "xb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, destination)
    except OSError as error:
        error.filename = error.filename or str(destination)  # say which file could not be written
        raise
    finally:
        temporary.unlink(missing_ok=True)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Writes ``obj`` as indented JSON, atomically.

    The text goes to a temporary file in the destination folder which then replaces
    ``path``, so readers never see a half-written file. NumPy scalars and arrays are
    converted to Python numbers and lists. Missing parent folders are created.

    Args:
        path: Destination file.
        obj: JSON-serialisable object.

    Raises:
        TypeError: If ``obj`` holds something JSON cannot represent (nothing is written).
    """
    write_atomically(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def write_csv(path: str | os.PathLike[str], frame: pd.DataFrame) -> None:
    """Writes ``frame`` as CSV without its index, atomically (as :func:`write_json`).

    Args:
        path: Destination file.
        frame: Table to write.
    """
    write_atomically(path, frame.to_csv(index=False, lineterminator="\n"))


def natural_sort_key(text: str) -> tuple[list[str | int], str]:
    """Sort key ordering digit runs by value: "sub2" before "sub10", "2" before "10".

    Args:
        text: The string to order.

    Returns:
        A key whose first part alternates text (case-folded) and integers, and whose
        second part is the text itself, to break ties such as "2" versus "02".
    """
    pieces: list[str | int] = [
        int(piece) if index % 2 else piece.casefold()
        for index, piece in enumerate(re.split(r"(\d+)", text))
    ]
    return pieces, text


def _json_default(value: Any) -> Any:
    """Converts NumPy values for ``json.dumps``; rejects anything else."""
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} as JSON: {value!r}")

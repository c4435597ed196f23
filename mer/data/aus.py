"""Facial Action Units (FACS) of a sheet cell, one parser for every dataset's notation.

CASME II writes `4+L10`, SAMM `(R6 or R12)+R15`, `10A/B` or `ref(7B)+43C`, CAS(ME)^3 `L12+R14`
or `AU4+AU7`; single AUs are often stored as numbers (14 or 14.0). All of them become a tuple of
`ActionUnit`, so region rules and reports never deal with the notation again.
"""

from __future__ import annotations

import itertools
import math
import numbers
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, replace

SIDES = ("L", "R", "T", "B")
LOWEST_AU = 1
HIGHEST_AU = 99
UNKNOWN = "?"

_INTENSITY_PATTERN = r"[A-E](?:/[A-E])*"
_INTENSITY = re.compile(_INTENSITY_PATTERN)
_UNIT = re.compile(
    r"(?P<au_first>AU\s*)?(?P<side>[LRTB])?(?P<au_second>AU\s*)?"
    rf"(?P<number>[0-9]+)(?P<intensity>{_INTENSITY_PATTERN})?",
    re.IGNORECASE,
)
_REFERENCE_OPEN = re.compile(r"REF\s*\(\s*", re.IGNORECASE)
_GROUP_OPEN = re.compile(r"\(\s*")
_GROUP_OR = re.compile(r"\s+OR\s+", re.IGNORECASE)
_CLOSE = re.compile(r"\s*\)")
_SEPARATOR = re.compile(r"\s*[+,]\s*")
_WHOLE_NUMBER_TEXT = re.compile(r"(?P<digits>[0-9]+)\.0+")


@dataclass(frozen=True)
class ActionUnit:
    """One annotated action unit.

    Attributes:
        number: FACS AU number, 1-99 (e.g. 12, lip corner puller).
        side: "L", "R", "T", "B" for a one-sided AU, None for both sides.
        intensity: "A".."E", or alternatives such as "A/B" (first one most likely); None if unrated.
        reference: written `ref(...)` (SAMM: noted for reference, not part of the expression).
        alternative: one member of an `(x or y)` group (the annotator was unsure which).
    """

    number: int
    side: str | None = None
    intensity: str | None = None
    reference: bool = False
    alternative: bool = False

    def __post_init__(self) -> None:
        """Rejects values that no sheet notation can write, so formatting always round-trips."""
        if (
            isinstance(self.number, bool)
            or not isinstance(self.number, int)
            or not LOWEST_AU <= self.number <= HIGHEST_AU
        ):
            raise ValueError(f"AU number must be an int {LOWEST_AU}-{HIGHEST_AU}: {self.number!r}")
        if self.side is not None and self.side not in SIDES:
            raise ValueError(f"AU side must be one of {SIDES} or None: {self.side!r}")
        if self.intensity is not None and (
            not isinstance(self.intensity, str) or not _INTENSITY.fullmatch(self.intensity)
        ):
            raise ValueError(f"AU intensity must be like 'A' or 'A/B': {self.intensity!r}")


class AUWarning(UserWarning):
    """An action-unit cell that says the AUs are unknown (`?`)."""


def parse_action_units(cell: object, *, where: str = "") -> tuple[ActionUnit, ...]:
    """All AUs of a sheet cell, in written order, duplicates kept only once (first wins).

    Two AUs are duplicates when they share number and side (`L12+R12` keeps both, `4+4B` keeps
    `4`). A blank, None or NaN cell has no annotation and gives (); `?` gives () with an AUWarning.

    Args:
        cell: the cell as read: text, an int, or a float such as 14.0.
        where: names the cell in messages, e.g. "CASME2 row 31".

    Returns:
        The action units.

    Raises:
        ValueError: the cell is malformed, not a whole number, or has an AU outside 1-99.
    """
    prefix = f"{where}: " if where else ""
    if cell is None:
        return ()
    if isinstance(cell, str):
        text = cell.strip()
        if not text:
            return ()
        if text == UNKNOWN:
            warnings.warn(f"{prefix}action units unknown ({text!r})", AUWarning, stacklevel=2)
            return ()
        whole_number = _WHOLE_NUMBER_TEXT.fullmatch(text)  # a number cell exported as "14.0"
        if whole_number is not None:
            units = [ActionUnit(_written_number(whole_number["digits"], text, prefix))]
        else:
            units = _parse_text(text, prefix)
    elif isinstance(cell, numbers.Integral) and not isinstance(cell, bool):
        units = [ActionUnit(_au_number(int(cell), cell, prefix))]
    elif isinstance(cell, numbers.Real) and not isinstance(cell, bool):
        if math.isnan(cell):
            return ()
        if not float(cell).is_integer():
            raise _malformed(cell, prefix, "not a whole AU number")
        units = [ActionUnit(_au_number(int(cell), cell, prefix))]
    else:
        raise _malformed(cell, prefix, "not text or a number")
    return _first_of_each(units)


def au_numbers(cell: object, *, where: str = "") -> frozenset[int]:
    """Just the set of AU numbers of a cell (what region rules need); see parse_action_units."""
    return frozenset(unit.number for unit in parse_action_units(cell, where=where))


def format_action_units(units: Iterable[ActionUnit]) -> str:
    """A canonical string such as "4+L10" or "(R6 or R12)+R15A", which parses back to `units`.

    Consecutive alternatives share one `( or )` group; an empty iterable gives "".
    """
    parts: list[str] = []
    for alternative, members in itertools.groupby(units, key=lambda unit: unit.alternative):
        texts = [_format_unit(unit) for unit in members]
        if alternative:
            parts.append("(" + " or ".join(texts) + ")")
        else:
            parts.extend(texts)
    return "+".join(parts)


def _format_unit(unit: ActionUnit) -> str:
    """One AU as written in a sheet, e.g. "R15A" or "ref(7B)"."""
    text = f"{unit.side or ''}{unit.number}{unit.intensity or ''}"
    return f"ref({text})" if unit.reference else text


def _first_of_each(units: list[ActionUnit]) -> tuple[ActionUnit, ...]:
    """Drops later AUs with the same number and side as an earlier one."""
    kept: dict[tuple[int, str | None], ActionUnit] = {}
    for unit in units:
        kept.setdefault((unit.number, unit.side), unit)
    return tuple(kept.values())


def _parse_text(text: str, prefix: str) -> list[ActionUnit]:
    """Items (AU, reference or `or` group) separated by `+` or `,`; the text is stripped."""
    units: list[ActionUnit] = []
    position = 0
    while True:
        opening = _GROUP_OPEN.match(text, position)
        if opening is not None:
            group, position = _parse_group(text, opening.end(), prefix)
            units.extend(group)
        else:
            unit, position = _parse_single(text, position, prefix)
            units.append(unit)
        if position == len(text):
            return units
        separator = _SEPARATOR.match(text, position)
        if separator is None:
            raise _malformed(text, prefix, f"expected '+' at character {position + 1}")
        position = separator.end()


def _parse_group(text: str, position: int, prefix: str) -> tuple[list[ActionUnit], int]:
    """An `(x or y ...)` group, from just inside its `(`: its AUs, marked alternative, the end."""
    members: list[ActionUnit] = []
    while True:
        unit, position = _parse_single(text, position, prefix)
        members.append(replace(unit, alternative=True))
        separator = _GROUP_OR.match(text, position)
        if separator is None:
            break
        position = separator.end()
    close = _CLOSE.match(text, position)
    if close is None:
        raise _malformed(text, prefix, f"expected 'or' or ')' at character {position + 1}")
    return members, close.end()


def _parse_single(text: str, position: int, prefix: str) -> tuple[ActionUnit, int]:
    """One AU, plain or written `ref(7B)`, and the position after it."""
    reference = _REFERENCE_OPEN.match(text, position)
    if reference is not None:
        unit, position = _parse_plain(text, reference.end(), prefix)
        close = _CLOSE.match(text, position)
        if close is None:
            raise _malformed(text, prefix, f"expected ')' at character {position + 1}")
        return replace(unit, reference=True), close.end()
    return _parse_plain(text, position, prefix)


def _parse_plain(text: str, position: int, prefix: str) -> tuple[ActionUnit, int]:
    """One AU without `ref(...)`, such as `L10`, `AU4` or `10A/B`, and the position after it."""
    match = _UNIT.match(text, position)
    if match is None:
        raise _malformed(text, prefix, f"expected an AU at character {position + 1}")
    if match["au_first"] and match["au_second"]:
        raise _malformed(text, prefix, f"'AU' written twice at character {position + 1}")
    side = match["side"].upper() if match["side"] else None
    intensity = match["intensity"].upper() if match["intensity"] else None
    number = _written_number(match["number"], text, prefix)
    return ActionUnit(number, side, intensity), match.end()


def _written_number(digits: str, cell: object, prefix: str) -> int:
    """The AU number written as `digits` (leading zeros allowed), checked to be 1-99."""
    significant = digits.lstrip("0")
    if len(significant) > len(str(HIGHEST_AU)):  # also keeps int() off huge digit strings
        raise _malformed(cell, prefix, f"AU number outside {LOWEST_AU}-{HIGHEST_AU}")
    return _au_number(int(significant or "0"), cell, prefix)


def _au_number(number: int, cell: object, prefix: str) -> int:
    """`number`, checked to be a FACS AU number (1-99)."""
    if not LOWEST_AU <= number <= HIGHEST_AU:
        raise _malformed(cell, prefix, f"AU number outside {LOWEST_AU}-{HIGHEST_AU}")
    return number


def _malformed(cell: object, prefix: str, reason: str) -> ValueError:
    """The error for a cell that cannot be parsed, quoting it and where it is."""
    return ValueError(f"{prefix}cannot parse action units {cell!r} ({reason})")

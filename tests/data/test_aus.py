"""The action-unit cell parser: every dataset's notation, the real CASME II sheet, round trips."""

import contextlib
import re
import signal
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mer.data.aus import (
    ActionUnit,
    AUWarning,
    au_numbers,
    format_action_units,
    parse_action_units,
)

CASME2_SHEET = (
    Path(__file__).resolve().parents[2] / "data" / "annotations" / "CASME2-coding-20140508.xlsx"
)

AU = ActionUnit


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        # CASME II
        ("12", (AU(12),)),
        ("4+L10", (AU(4), AU(10, "L"))),
        ("4+5+L10", (AU(4), AU(5), AU(10, "L"))),
        ("1+L2", (AU(1), AU(2, "L"))),
        ("L2+26+38", (AU(2, "L"), AU(26), AU(38))),
        ("R1+R2", (AU(1, "R"), AU(2, "R"))),
        ("R4+R10", (AU(4, "R"), AU(10, "R"))),
        ("L14+L15", (AU(14, "L"), AU(15, "L"))),
        (14, (AU(14),)),
        (14.0, (AU(14),)),
        ("14.0", (AU(14),)),
        (np.int64(14), (AU(14),)),
        (np.float64(14.0), (AU(14),)),
        # SAMM
        ("15A+17", (AU(15, intensity="A"), AU(17))),
        (
            "(R6 or R12)+R15",
            (AU(6, "R", alternative=True), AU(12, "R", alternative=True), AU(15, "R")),
        ),
        ("R6A+R12", (AU(6, "R", "A"), AU(12, "R"))),
        ("10A/B", (AU(10, intensity="A/B"),)),
        ("ref(7B)+43C", (AU(7, intensity="B", reference=True), AU(43, intensity="C"))),
        ("T18+39", (AU(18, "T"), AU(39))),
        ("4+7+43", (AU(4), AU(7), AU(43))),
        # CAS(ME)^3
        ("L12+R14", (AU(12, "L"), AU(14, "R"))),
        ("4+7", (AU(4), AU(7))),
        ("AU4+AU7", (AU(4), AU(7))),
        # tolerated spellings
        ("au4 , Au L7 +lau12", (AU(4), AU(7, "L"), AU(12, "L"))),
        ("  r6a + b25 ", (AU(6, "R", "A"), AU(25, "B"))),
        ("(l1 OR ref(R2c))", (AU(1, "L", alternative=True), AU(2, "R", "C", True, True))),
    ],
)
def test_parses_every_dataset_notation(cell, expected):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert parse_action_units(cell) == expected


def test_duplicates_are_kept_once_first_wins():
    assert parse_action_units("4+4B+L12+R12+L12A+4") == (AU(4), AU(12, "L"), AU(12, "R"))


def test_au_numbers_is_the_set_of_numbers():
    assert au_numbers("(R6 or R12)+R15+ref(6)") == frozenset({6, 12, 15})
    assert au_numbers(17.0) == frozenset({17})


@pytest.mark.parametrize("cell", ["?", " ? "])
def test_question_mark_warns_and_gives_nothing(cell):
    with pytest.warns(AUWarning, match="CASME2 row 7"):
        assert parse_action_units(cell, where="CASME2 row 7") == ()


@pytest.mark.parametrize("cell", [None, "", "  \t", float("nan"), np.float64("nan")])
def test_blank_gives_nothing_without_warning(cell):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert parse_action_units(cell) == ()
        assert au_numbers(cell) == frozenset()


@pytest.mark.parametrize(
    "cell",
    [
        "4++",
        "X5",
        "(4 or",
        "(4 or 5",
        "(4 5)",
        "()",
        "((4))",
        "0",
        "100",
        "L0",
        "R100",
        "4+",
        "+4",
        "4 7",
        "12F",
        "4AB",
        "10A/",
        "AUAU4",
        "ref(ref(4))",
        "ref(4",
        "ref4",
        "4+?",
        "14.5",
        "4.0+7",
        "1" * 5000,
        "ref(" * 5000 + "4" + ")" * 5000,
        "0.0",
        0,
        100,
        -4,
        14.5,
        float("inf"),
        True,
        [4],
    ],
)
def test_malformed_cells_raise_value_error_quoting_cell_and_place(cell):
    message = f"CASME2 row 31: cannot parse action units {cell!r}"
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_action_units(cell, where="CASME2 row 31")


def test_action_unit_rejects_values_no_sheet_can_write():
    for arguments in [{"number": 0}, {"number": 100}, {"number": True}, {"number": 4.0}]:
        with pytest.raises(ValueError, match="AU number"):
            AU(**arguments)
    with pytest.raises(ValueError, match="side"):
        AU(4, side="X")
    with pytest.raises(ValueError, match="intensity"):
        AU(4, intensity="F")


@pytest.mark.parametrize(
    ("cell", "canonical"),
    [
        ("au4 + l10", "4+L10"),
        ("(r6 OR r12) , r15a", "(R6 or R12)+R15A"),
        ("REF( 7b )+43c", "ref(7B)+43C"),
        ("10a/b", "10A/B"),
        (14.0, "14"),
    ],
)
def test_format_is_canonical(cell, canonical):
    assert format_action_units(parse_action_units(cell)) == canonical


def test_format_groups_consecutive_alternatives():
    units = [AU(1, alternative=True), AU(2, alternative=True), AU(4), AU(5, alternative=True)]
    assert format_action_units(units) == "(1 or 2)+4+(5)"
    assert format_action_units([]) == ""


def test_every_cell_of_the_real_casme2_sheet():
    sheet = pd.read_excel(CASME2_SHEET, sheet_name="Sheet1")
    cells = list(sheet["Action Units"])
    assert len(cells) == 255
    assert {type(cell) for cell in cells} == {int, str}  # single AUs are stored as numbers
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parsed = [parse_action_units(cell, where=f"row {row}") for row, cell in enumerate(cells)]
    empty_rows = [row for row, units in enumerate(parsed) if not units]
    assert [cells[row] for row in empty_rows] == ["?"] * 5
    assert list(sheet.loc[empty_rows, "Filename"]) == [
        "EP05_03",
        "EP07_01",
        "EP13_04f",
        "EP11_01f",
        "EP13_01",
    ]
    assert [warning.category for warning in caught] == [AUWarning] * 5
    assert {unit.number for units in parsed for unit in units} == {
        1,
        2,
        4,
        5,
        6,
        7,
        9,
        10,
        12,
        14,
        15,
        16,
        17,
        18,
        20,
        24,
        25,
        26,
        38,
    }
    assert Counter(unit.side for units in parsed for unit in units) == {
        None: 311,
        "L": 37,
        "R": 23,
    }
    assert not any(
        unit.intensity or unit.reference or unit.alternative for units in parsed for unit in units
    )
    for cell, units in zip(cells, parsed, strict=True):  # CASME II is already canonical
        if cell != "?":
            assert format_action_units(units) == str(cell)


# Property tests.

action_units = st.builds(
    ActionUnit,
    number=st.integers(1, 99),
    side=st.sampled_from([None, "L", "R", "T", "B"]),
    intensity=st.one_of(
        st.none(),
        st.sampled_from("ABCDE"),
        st.lists(st.sampled_from("ABCDE"), min_size=2, max_size=3).map("/".join),
    ),
    reference=st.booleans(),
    alternative=st.booleans(),
)


@given(st.lists(action_units, max_size=8, unique_by=lambda unit: (unit.number, unit.side)))
def test_format_then_parse_round_trips(units):
    assert parse_action_units(format_action_units(units)) == tuple(units)


@st.composite
def written_cells(draw: st.DrawFn) -> tuple[str, tuple[ActionUnit, ...]]:
    """A well-formed cell in loose spelling, and the AUs it means (first of each number+side)."""
    spaces = st.text(alphabet=" \t", max_size=2)
    texts: list[str] = []
    expected: dict[tuple[int, str | None], ActionUnit] = {}
    for _ in range(draw(st.integers(1, 6))):
        number = draw(st.integers(1, 99))
        side = draw(st.sampled_from(["", "L", "R", "T", "B"]))
        intensity = draw(st.sampled_from(["", "A", "C", "E", "A/B", "B/D"]))
        prefix = draw(st.sampled_from(["", "AU", "AU "]))
        token = f"{prefix}{side}{number}{intensity}"
        texts.append("".join(draw(st.sampled_from([str.upper, str.lower]))(c) for c in token))
        unit = ActionUnit(number, side or None, intensity or None)
        expected.setdefault((number, unit.side), unit)
    body = texts[0] + "".join(
        draw(spaces) + draw(st.sampled_from("+,")) + draw(spaces) + text for text in texts[1:]
    )
    cell = draw(spaces) + body + draw(spaces)
    return cell, tuple(expected.values())


@given(written_cells())
def test_well_formed_cells_parse_to_the_units_written(written):
    cell, expected = written
    assert parse_action_units(cell) == expected
    assert au_numbers(cell) == {unit.number for unit in expected}


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raises TimeoutError in the block after `seconds`, so a looping parser fails the test."""

    def expire(signal_number: int, frame: object) -> None:
        raise TimeoutError(f"parsing took over {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def check_arbitrary_text(text: str) -> None:
    """Any text either raises ValueError quickly or parses to AUs that format back stably."""
    with time_limit(1.0), warnings.catch_warnings():
        warnings.simplefilter("ignore", AUWarning)
        try:
            units = parse_action_units(text, where="fuzz")
        except ValueError as error:
            assert str(error).startswith("fuzz: cannot parse action units")
            return
        assert parse_action_units(format_action_units(units)) == units


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789LRTBAUEFCDOrefaulo()+,/?. \t", max_size=30))
def test_text_from_the_notation_alphabet_never_breaks_the_parser(text):
    check_arbitrary_text(text)


@settings(deadline=None)
@given(st.text())
def test_any_text_never_breaks_the_parser(text):
    check_arbitrary_text(text)

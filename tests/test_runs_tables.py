"""`harness.runs.tables`: tables that fit a width (short forms first, then whole columns dropped, the most
droppable first; the flexible column cut with an ellipsis), and records as JSON and CSV."""

from __future__ import annotations

import csv
import io
import json

import pytest
from rich.console import Console

from harness.runs import tables
from harness.runs.tables import Column


def columns(name: str = "a-rather-long-run-name-from-a-sweep") -> list[Column]:
    return [
        Column("id", ["abcdef12", "12345678"]),
        Column("name", [name, "short"], flex=True),
        Column("when", ["2026-12-06 19:42:01", "2026-12-06 19:43:00"], drop=2, short=["12-06 19:42", "12-06 19:43"]),
        Column("r2", ["+0.125", "-0.096"], drop=1, justify="right"),
        Column("notes", ["x" * 30, ""], drop=3),
    ]


def render(cols: list[Column], width: int) -> list[str]:
    out = io.StringIO()
    Console(file=out, width=width).print(tables.fitted_table("t", cols, width))
    return out.getvalue().splitlines()


def test_everything_fits_a_wide_terminal_untouched() -> None:
    lines = render(columns(), 200)
    assert lines[1].split() == ["id", "name", "when", "r2", "notes"]
    assert "a-rather-long-run-name-from-a-sweep" in lines[3] and "2026-12-06 19:42:01" in lines[3]


def test_short_forms_come_first_then_the_most_droppable_columns_go() -> None:
    cols = columns()  # widths 8, 8 (name: its minimum), 19 (short 11), 6, 30; 2 between columns
    assert tables.fit(cols, 79) == cols  # everything fits, the name at its minimum width
    assert [c.header for c in tables.fit(cols, 71)] == ["id", "name", "when", "r2", "notes"]
    assert tables.fit(cols, 71)[2].cells[0] == "12-06 19:42"  # the short form before anything is dropped
    assert [c.header for c in tables.fit(cols, 70)] == ["id", "name", "when", "r2"]  # notes (drop 3) went
    assert [c.header for c in tables.fit(cols, 30)] == ["id", "name", "r2"]
    assert [c.header for c in tables.fit(cols, 10)] == ["id", "name"]  # undroppable columns always stay


@pytest.mark.parametrize("width", [20, 30, 40, 50, 60, 70, 80, 100])
def test_no_line_is_wider_than_the_terminal_and_long_names_end_in_an_ellipsis(width: int) -> None:
    lines = render(columns(), width)
    assert max(len(line) for line in lines) <= width
    body = lines[3]
    assert "a-rather" in body  # the name is cut, never wrapped onto another line
    assert ("…" in body) == ("a-rather-long-run-name-from-a-sweep" not in body)
    assert len(lines) == 5  # title, header, rule, two rows: no cell wrapped


def test_records_as_json_and_csv() -> None:
    records = [{"id": "abc", "r2": 0.5, "extra": 1}, {"id": "def", "r2": None}]
    out = io.StringIO()
    tables.write_records(records, "json", ["id", "r2"], out)
    assert json.loads(out.getvalue()) == [{"id": "abc", "r2": 0.5}, {"id": "def", "r2": None}]
    out = io.StringIO()
    tables.write_records(records, "csv", ["id", "r2"], out)
    assert list(csv.reader(io.StringIO(out.getvalue()))) == [["id", "r2"], ["abc", "0.5"], ["def", ""]]
    with pytest.raises(ValueError, match="unknown format 'xml'"):
        tables.write_records(records, "xml", ["id"], out)

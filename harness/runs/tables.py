"""Tables of the run tools that fit the terminal, and the same rows as JSON or CSV for scripts.

A `Column` holds its cells and says how it gives way when the width is short (80 columns when stdout is not a
terminal, as rich assumes): first every column with a `short` form takes it, then columns are dropped, the
highest `drop` first, until the rest fit; the one `flex` column (a name) takes the room left and its cells are
cut with an ellipsis. `--format json|csv` (`write_records`) prints every field in full, never cut.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import IO, Any, Literal

from rich import box
from rich.table import Table
from rich.text import Text

FORMATS = ("table", "json", "csv")
GAP = 2  # characters between two columns (a right padding of 1 and the box's blank divider)
FLEX_MIN = 8  # a flexible column is never made narrower than this (or its header)

Cell = str | Text


@dataclass(frozen=True)
class Column:
    """One column: its header and cells, how it gives way to a short width, how its cells align."""

    header: str
    cells: Sequence[Cell]
    drop: int = 0  # 0: always shown; when the width is short, the highest drop goes first
    short: Sequence[Cell] | None = None  # narrower cells, used before any column is dropped
    flex: bool = False  # takes the width left over; cells cut with an ellipsis
    justify: Literal["left", "right"] = "left"

    @property
    def width(self) -> int:
        """The width the column needs (a flexible one: at most FLEX_MIN unless its header is wider)."""
        widest = max([_cell_len(self.header), *(_cell_len(c) for c in self.cells)])
        return min(widest, max(FLEX_MIN, _cell_len(self.header))) if self.flex else widest


def _cell_len(cell: Cell) -> int:
    return cell.cell_len if isinstance(cell, Text) else Text(cell).cell_len


def needed(columns: Sequence[Column]) -> int:
    """Characters a row of `columns` takes (the flexible ones at their minimum)."""
    return sum(c.width for c in columns) + GAP * max(0, len(columns) - 1)


def fit(columns: Sequence[Column], width: int) -> list[Column]:
    """The columns to show in `width` characters: all of them if they fit, else their short forms, then minus
    the most droppable ones (highest `drop` first) until they fit or only undroppable ones are left."""
    kept = list(columns)
    if needed(kept) <= width:
        return kept
    kept = [replace(c, cells=c.short, short=None) if c.short is not None else c for c in kept]
    while needed(kept) > width and any(c.drop for c in kept):
        victim = max((c for c in kept if c.drop), key=lambda c: c.drop)
        kept.remove(victim)
    return kept


def fitted_table(title: str, columns: Sequence[Column], width: int) -> Table:
    """A rich table of the columns that fit `width` (see `fit`); the flexible column takes what is left."""
    kept = fit(columns, width)
    spare = max(0, width - needed(kept))
    table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1, 0, 0), pad_edge=False)
    for c in kept:
        widest = max([_cell_len(c.header), *(_cell_len(x) for x in c.cells)])
        max_width = min(widest, c.width + spare) if c.flex else None
        table.add_column(c.header, justify=c.justify, no_wrap=True, overflow="ellipsis", max_width=max_width)
    for i in range(len(kept[0].cells) if kept else 0):
        table.add_row(*(c.cells[i] for c in kept))
    return table


def write_records(
    records: Sequence[Mapping[str, Any]], fmt: str, fields: Sequence[str], out: IO[str] | None = None
) -> None:
    """Print `records` as JSON (a list of objects) or CSV (a header line of `fields`, then one line each)."""
    out = out or sys.stdout
    if fmt == "json":
        out.write(json.dumps([{k: r.get(k) for k in fields} for r in records], indent=2) + "\n")
    elif fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=list(fields), extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: ("" if r.get(k) is None else r.get(k)) for k in fields} for r in records)
    else:
        raise ValueError(f"unknown format {fmt!r} (formats: {', '.join(FORMATS)})")
    out.flush()

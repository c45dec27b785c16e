"""Small events tables for tests, written once: market rows (book and trade messages in the market schema) and
scalar rows (one float column per input), so a test states its rows and nothing about Arrow."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pyarrow as pa

from harness.streams import schema

Level = tuple[float, float, float]
"""One level update of a book message: (side, price, amount); side +1 bid, -1 ask, amount 0 deletes the level."""

MARKET_ROW_SCHEMA = pa.schema([f for f in schema.SCHEMA if not f.name.startswith("quote_")])
"""The market schema without the quote columns: what book and trade rows fill (`schema.conform` adds the rest)."""


def book_row(t: int, levels: Sequence[Level], snapshot: float = 0.0) -> dict[str, Any]:
    """A book message at `t` with its level updates; `snapshot` as in the market schema (0, 1 start, 2 continue)."""
    return {
        "t": t,
        "trigger": "book",
        "book_side": [lv[0] for lv in levels],
        "book_price": [lv[1] for lv in levels],
        "book_amount": [lv[2] for lv in levels],
        "book_snapshot": snapshot,
    }


def trade_row(t: int, price: float, amount: float, side: float, te: int | None = None) -> dict[str, Any]:
    """A trade at `t`; `te` is its exchange time (`t_exchange`), left out when None."""
    row: dict[str, Any] = {"t": t, "trigger": "trade", "trade_price": price, "trade_amount": amount, "trade_side": side}
    if te is not None:
        row["t_exchange"] = te
    return row


def market_events(rows: Iterable[Mapping[str, Any]], *, exchange_clock: bool = False) -> pa.Table:
    """A market events table from book and trade rows, conformed to the market schema.

    With `exchange_clock`, a row without an exchange time gets `t_exchange = t` (for circuits on the exchange
    clock); otherwise a missing `t_exchange` stays null. The rows are not changed.
    """
    if exchange_clock:
        rows = [{"t_exchange": row["t"], **row} for row in rows]
    return schema.conform(pa.Table.from_pylist(list(rows), schema=MARKET_ROW_SCHEMA))


def scalar_events(rows: Iterable[tuple[int, str, Mapping[str, float | None]]], inputs: Sequence[str]) -> pa.Table:
    """An events table from `(t, trigger, {input: value})` rows: `t` int64, `trigger` string and one float64
    column per name in `inputs`, null where a row sets no value for it."""
    rows = list(rows)
    return pa.table(
        {
            "t": pa.array([t for t, _, _ in rows], pa.int64()),
            "trigger": pa.array([trigger for _, trigger, _ in rows], pa.string()),
            **{name: pa.array([values.get(name) for _, _, values in rows], pa.float64()) for name in inputs},
        }
    )


def one_input_events(rows: Iterable[tuple[int, str, float | None]], inputs: Sequence[str]) -> pa.Table:
    """An events table from `(t, input, value)` rows, each trigger named after the one input it sets."""
    return scalar_events([(t, name, {name: value}) for t, name, value in rows], inputs)

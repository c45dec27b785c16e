"""merge: output sorted by t, ties broken book < quote < trade, then argument order, then row order; lossless."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.errors import EventsError
from harness.streams import csvread, schema
from harness.streams import merge_by_time as merge

PRIORITY = {schema.BOOK: 0, schema.QUOTE: 1, schema.TRADE: 2}
KINDS = (schema.BOOK, schema.TRADE, schema.QUOTE)


def stream(source: int, rows: list[tuple[int, str]], style: int) -> pa.Table:
    """A market table from (t, trigger) rows with an `ident` column = source * 1000 + row.

    `style` varies the shape: 0 all schema columns, 1 only t/trigger/trade columns (the rest missing),
    2 the trigger as plain strings, 3 several chunks.
    """
    n = len(rows)
    t = pa.array([r[0] for r in rows], pa.int64())
    trig = [r[1] for r in rows]
    ident = pa.array([source * 1000 + i for i in range(n)], pa.int64())
    price = pa.array([float(source) + i / 1000 for i in range(n)], pa.float64())
    if style == 1:
        return pa.table({"t": t, "trigger": pa.array(trig, pa.string()), "trade_price": price, "ident": ident})
    trigger = schema.trigger_array(np.array([schema.CODES[k] for k in trig], dtype=np.int8))
    book = pa.array([[float(source), float(i)] if k == schema.BOOK else None for i, k in enumerate(trig)], schema.LIST)
    table = pa.table(
        {"t": t, "trigger": trigger, "t_local": t, "t_exchange": t, "book_price": book, "quote_bid_price": price}
    )
    table = schema.conform(table).append_column("ident", ident)
    if style == 2:
        table = table.set_column(1, "trigger", pa.array(trig, pa.string()))
    if style == 3 and n > 2:
        table = pa.concat_tables([table.slice(0, n // 2), table.slice(n // 2)])
    return table


streams = st.lists(
    st.tuples(
        st.lists(st.tuples(st.integers(0, 6), st.sampled_from(KINDS)), max_size=25),
        st.integers(0, 3),
        st.booleans(),
    ),
    min_size=5,
    max_size=8,
)


@given(streams)
def test_merge_sorts_stably_by_t_trigger_argument_and_row(spec: list[tuple[list[tuple[int, str]], int, bool]]) -> None:
    tables = []
    for k, (rows, style, presorted) in enumerate(spec):
        tables.append(stream(k, sorted(rows, key=lambda r: r[0]) if presorted else rows, style))
    out = merge.merge(*tables)
    assert out.schema.names[: len(schema.SCHEMA)] == schema.SCHEMA.names
    assert out.schema.field("trigger").type == schema.TRIGGER_TYPE
    t = out.column("t").to_numpy()
    assert (np.diff(t) >= 0).all()
    # the exact expected order: (t, trigger priority, argument, row)
    rows = [
        (r[0], PRIORITY[r[1]], k, i, k * 1000 + i, r[1])
        for k, (rows, style, presorted) in enumerate(spec)
        for i, r in enumerate(sorted(rows, key=lambda r: r[0]) if presorted else rows)
    ]
    expected = sorted(rows)
    assert out.column("ident").to_pylist() == [r[4] for r in expected]
    assert out.column("trigger").cast(pa.string()).to_pylist() == [r[5] for r in expected]
    # nothing lost or duplicated
    assert sorted(out.column("ident").to_pylist()) == sorted(r[4] for r in rows)
    # values travel with their rows; columns missing from a table are null in its rows
    ident = np.asarray(out.column("ident").to_pylist())
    from_style1 = np.isin(ident // 1000, [k for k, s in enumerate(spec) if s[1] == 1])
    assert out.column("book_price").null_count >= from_style1.sum()
    books = out.column("book_price").to_pylist()
    for ident_, trig, b in zip(ident, out.column("trigger").cast(pa.string()).to_pylist(), books, strict=True):
        if trig == schema.BOOK and spec[ident_ // 1000][1] != 1:
            assert b == [float(ident_ // 1000), float(ident_ % 1000)]


def test_ties_follow_the_documented_rule() -> None:
    a = stream(0, [(5, schema.TRADE), (5, schema.BOOK), (3, schema.QUOTE)], 0)
    b = stream(1, [(5, schema.QUOTE), (5, schema.BOOK), (5, schema.TRADE), (1, schema.TRADE)], 0)
    out = merge.merge(a, b)
    assert out.column("ident").to_pylist() == [1003, 2, 1, 1001, 1000, 0, 1002]
    assert "book < quote < trade" in merge.__doc__


def test_merge_adds_up_stats_and_rejects_bad_input() -> None:
    a = csvread.attach_stats(stream(0, [(1, schema.BOOK)], 0), csvread.ReadStats(["a"], 5, 1, {"x": 1}))
    b = csvread.attach_stats(stream(1, [(2, schema.BOOK)], 0), csvread.ReadStats(["b"], 7, 2, {"x": 1, "y": 1}))
    out = merge.merge(a, b, stream(2, [(0, schema.TRADE)], 1))
    assert csvread.stats(out) == {"files": ["a", "b"], "rows_read": 12, "rows_skipped": 3, "skipped": {"x": 2, "y": 1}}
    assert merge.merge().equals(schema.empty())
    with pytest.raises(EventsError, match="unknown trigger 'tick'"):
        merge.merge(pa.table({"t": [1], "trigger": ["tick"]}))
    with pytest.raises(EventsError, match="null times"):
        merge.merge(pa.table({"t": pa.array([None], pa.int64()), "trigger": ["book"]}))

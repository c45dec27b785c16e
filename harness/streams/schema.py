"""The market events schema: the columns every market-data source produces and `hs.lib.market` consumes.

One row is one event. Book rows carry one whole exchange message (all the level updates that share a
`local_timestamp`) as list columns, so a circuit sees the book only after the whole message:

    t                 int64   event time in ns (the chosen clock; non-decreasing)
    trigger           dictionary<int8, string>: "book", "trade" or "quote"
    t_local           int64   capture clock (tardis `local_timestamp`) in ns
    t_exchange        int64   exchange clock (tardis `timestamp`) in ns
    book_side         list<double>  +1 bid, -1 ask, one entry per level update of the message
    book_price        list<double>
    book_amount       list<double>  new absolute size at that price; 0 deletes the level
    book_snapshot     double  0 incremental message, 1 first message of a snapshot (the book is cleared
                              first), 2 a further message of the same snapshot block
    trade_price       double
    trade_amount      double  > 0
    trade_side        double  +1 buyer-initiated, -1 seller-initiated, 0 unknown
    quote_bid_price, quote_bid_amount, quote_ask_price, quote_ask_amount   double (top of book feeds)

Columns of a trigger are null in rows of other triggers. Extra columns are allowed and ignored by kernels.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from harness.errors import EventsError

BOOK, TRADE, QUOTE = "book", "trade", "quote"
TRIGGERS = pa.array([BOOK, TRADE, QUOTE], pa.string())
TRIGGER_TYPE = pa.dictionary(pa.int8(), pa.string())
LIST = pa.list_(pa.float64())

BID, ASK = 1.0, -1.0
BUY, SELL, UNKNOWN_SIDE = 1.0, -1.0, 0.0
SNAPSHOT_NONE, SNAPSHOT_START, SNAPSHOT_CONTINUE = 0.0, 1.0, 2.0

SCHEMA = pa.schema(
    [
        ("t", pa.int64()),
        ("trigger", TRIGGER_TYPE),
        ("t_local", pa.int64()),
        ("t_exchange", pa.int64()),
        ("book_side", LIST),
        ("book_price", LIST),
        ("book_amount", LIST),
        ("book_snapshot", pa.float64()),
        ("trade_price", pa.float64()),
        ("trade_amount", pa.float64()),
        ("trade_side", pa.float64()),
        ("quote_bid_price", pa.float64()),
        ("quote_bid_amount", pa.float64()),
        ("quote_ask_price", pa.float64()),
        ("quote_ask_amount", pa.float64()),
    ]
)
BOOK_COLUMNS = ("book_side", "book_price", "book_amount", "book_snapshot")
TRADE_COLUMNS = ("trade_price", "trade_amount", "trade_side")
QUOTE_COLUMNS = ("quote_bid_price", "quote_bid_amount", "quote_ask_price", "quote_ask_amount")
CODES = {BOOK: 0, TRADE: 1, QUOTE: 2}


def trigger_array(codes: np.ndarray) -> pa.DictionaryArray:
    """The `trigger` column from int codes (0 book, 1 trade, 2 quote)."""
    return pa.DictionaryArray.from_arrays(pa.array(np.asarray(codes, dtype=np.int8)), TRIGGERS)


def trigger_column(col: pa.ChunkedArray | pa.Array) -> pa.DictionaryArray:
    """A trigger column (strings or any dictionary of strings) with the schema's codes (0 book, 1 trade, 2 quote)."""
    names = col.cast(pa.string()) if pa.types.is_dictionary(col.type) else col
    codes = pc.index_in(names, value_set=TRIGGERS)
    if codes.null_count:
        i = int(np.flatnonzero(codes.is_null().to_numpy(zero_copy_only=False))[0])
        raise EventsError(f"trigger: row {i} has trigger {names[i].as_py()!r}, not one of {TRIGGERS.to_pylist()}")
    return trigger_array(codes.to_numpy(zero_copy_only=False))


def empty() -> pa.Table:
    """A market events table with no rows."""
    return SCHEMA.empty_table()


def conform(table: pa.Table) -> pa.Table:
    """`table` with every schema column present (missing ones all null), in schema order, extras after."""
    n = table.num_rows
    columns, names = [], []
    for field in SCHEMA:
        if field.name == "trigger" and field.name in table.column_names:
            col = trigger_column(table.column("trigger"))
        elif field.name in table.column_names:
            col = table.column(field.name)
            if col.type != field.type:
                col = col.cast(field.type)
        else:
            col = pa.nulls(n, field.type)
        columns.append(col)
        names.append(field.name)
    for name in table.column_names:
        if name not in SCHEMA.names:
            columns.append(table.column(name))
            names.append(name)
    return pa.Table.from_arrays(columns, names=names).replace_schema_metadata(table.schema.metadata)

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

Markets. A stream tagged with a market name (`tag(table, "perp")`, or a reader's `market="perp"`) names its
triggers `perp.book`, `perp.trade`, `perp.quote` and its columns `perp.<column>` (every column but `t` and
`trigger`: `perp.book_price`, `perp.trade_side`, `perp.t_exchange`, ...), so several markets share one events
table (`hs.streams.merge`) and a circuit (`hs.lib.market(c, market="perp")`) reads them as more inputs and
triggers. A stream without a market name keeps the names above.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from harness.errors import EventsError, HarnessError
from harness.names import IDENTIFIER, SEP, qualify

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
_BASE = ("t", "trigger")  # the columns a market's name does not prefix


KINDS = (BOOK, TRADE, QUOTE)  # trigger kinds in code order
MAX_MARKET_LENGTH = 64


def trigger_array(codes: np.ndarray, triggers: pa.Array = TRIGGERS) -> pa.DictionaryArray:
    """The `trigger` column from int codes into `triggers` (default 0 book, 1 trade, 2 quote)."""
    dtype = np.int8 if len(triggers) <= 127 else np.int16
    return pa.DictionaryArray.from_arrays(pa.array(np.asarray(codes, dtype=dtype)), triggers)


# ----- markets ----------------------------------------------------------------------------------------------------
def check_market(market: object, what: str = "market") -> str:
    """`market` if it is a plain identifier (it prefixes trigger and column names), else HarnessError naming it."""
    if not isinstance(market, str) or not IDENTIFIER.fullmatch(market) or len(market) > MAX_MARKET_LENGTH:
        raise HarnessError(
            f"{what} name {market!r} must be a plain identifier [A-Za-z_][A-Za-z0-9_]* of at most "
            f"{MAX_MARKET_LENGTH} characters"
        )
    return market


def split(name: str) -> tuple[str | None, str]:
    """(market or None, plain name) of a qualified trigger or column name: "perp.book" -> ("perp", "book")."""
    head, sep, tail = name.rpartition(SEP)
    return (head, tail) if sep else (None, name)


def market_triggers(markets: list[str | None]) -> pa.Array:
    """The trigger names of `markets`, in code order: book, trade, quote of the first market, then the next."""
    return pa.array([qualify(k, m) for m in markets for k in KINDS], pa.string())


def market_schema(markets: list[str | None]) -> pa.Schema:
    """The schema of an events table of `markets`: `t`, `trigger`, then each market's columns in schema order."""
    fields = [SCHEMA.field("t"), pa.field("trigger", TRIGGER_TYPE)]
    fields += [f.with_name(qualify(f.name, m)) for m in markets for f in SCHEMA if f.name not in _BASE]
    return pa.schema(fields)


def markets_of(col: pa.ChunkedArray | pa.Array) -> list[str | None]:
    """The markets a trigger column names (None: triggers without a market), in order of first appearance (of the
    dictionary's values for a dictionary column)."""
    if pa.types.is_dictionary(col.type):
        chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
        names = [v for chunk in chunks for v in chunk.dictionary.to_pylist()]
    else:
        names = pc.unique(col).to_pylist()
    return list(dict.fromkeys(split(n)[0] for n in names if n is not None))


def tag(table: pa.Table, market: str) -> pa.Table:
    """`table` (one market without a name) as the stream of `market`: triggers `market.book` ..., columns
    `market.<column>` (all but `t` and `trigger`), schema metadata kept."""
    check_market(market)
    found = [m for m in markets_of(table.column("trigger")) if m is not None]
    if found:
        raise EventsError(f"tag: the stream is already tagged with market(s) {found}; cannot tag it {market!r}")
    table = conform(table)
    names = [n if n in _BASE else qualify(n, market) for n in table.column_names]
    codes = table.column("trigger").combine_chunks().indices.to_numpy(zero_copy_only=False)
    out = table.rename_columns(names).set_column(1, "trigger", trigger_array(codes, market_triggers([market])))
    return out.replace_schema_metadata(table.schema.metadata)


def tagged(table: pa.Table, market: str | None) -> pa.Table:
    """`tag(table, market)`, or `table` itself when `market` is None (a reader's `market=` argument)."""
    return table if market is None else tag(table, market)


def conform_markets(table: pa.Table, markets: list[str | None]) -> pa.Table:
    """`table` with the columns of `markets_schema(markets)` (missing ones all null, in that order, extras after)
    and its trigger column coded into `market_triggers(markets)`; EventsError naming a trigger of another market."""
    n = table.num_rows
    target = market_schema(markets)
    columns, names = [], []
    for f in target:
        if f.name == "trigger":
            col = _coded(table.column("trigger"), market_triggers(markets))
        elif f.name in table.column_names:
            col = table.column(f.name)
            col = col.cast(f.type) if col.type != f.type else col
        else:
            col = pa.nulls(n, f.type)
        columns.append(col)
        names.append(f.name)
    for name in table.column_names:
        if name not in target.names:
            columns.append(table.column(name))
            names.append(name)
    return pa.Table.from_arrays(columns, names=names).replace_schema_metadata(table.schema.metadata)


def _coded(col: pa.ChunkedArray | pa.Array, triggers: pa.Array) -> pa.DictionaryArray:
    names = col.cast(pa.string()) if pa.types.is_dictionary(col.type) else col
    codes = pc.index_in(names, value_set=triggers)
    if codes.null_count:
        i = int(np.flatnonzero(codes.is_null().to_numpy(zero_copy_only=False))[0])
        raise EventsError(f"trigger: row {i} has trigger {names[i].as_py()!r}, not one of {triggers.to_pylist()}")
    return trigger_array(codes.to_numpy(zero_copy_only=False), triggers)


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

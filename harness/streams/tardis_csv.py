"""tardis.dev CSV(.gz) readers producing the market events schema (`harness.streams.schema`).

Column mapping (tardis timestamps are integer microseconds; output times are int64 ns):

    incremental_book_L2  exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount
        one "book" event per message: consecutive rows with one local_timestamp and one is_snapshot value
        book_side = +1 bid / -1 ask, book_price = price, book_amount = amount (lists, one entry per row)
        book_snapshot = 0 incremental, 1 first message of a block of snapshot messages, 2 a further one
        t_exchange = timestamp of the message's first row
    book_snapshot_5/25   exchange,symbol,timestamp,local_timestamp,asks[i].price,asks[i].amount,bids[i]...
        one "book" event per row with book_snapshot = 1 and every level present (asks[0], bids[0],
        asks[1], ...; empty levels are left out)
    trades               exchange,symbol,timestamp,local_timestamp,id,side,price,amount
        "trade": trade_price = price, trade_amount = amount, trade_side = +1 buy, -1 sell, 0 otherwise
    quotes, book_ticker  exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,bid_amount
        "quote": quote_{bid,ask}_{price,amount} (null where tardis leaves a side empty)

    t = local_timestamp * 1000 (clock="local", the capture clock) or timestamp * 1000 (clock="exchange");
    t_local and t_exchange are always filled. `exchange`, `symbol` and `id` are checked to exist, not kept.

Each reader takes one path or a list (several days, read in order and concatenated); timestamps of the
chosen clock must not decrease inside a file or across files (book files: local_timestamp rows, and with
clock="exchange" also the messages' exchange times). Bad input raises `DataError` naming file, row and rule,
or with on_bad_rows="skip" drops the row and counts it (`csvread.stats(table)`); see `harness.streams.csvread`.
Every value also meets the plausibility rules of `harness.streams.rules` (`rules=` relaxes them per stream):
both timestamps in range (checked in microseconds, before the conversion to ns), prices finite, > 0 and below
a bound, trade and quote prices without 10x jumps, sizes finite, >= 0 and below a bound, book sides bid/ask,
trade sides buy/sell/unknown (or empty), and a header that is the kind's columns in tardis' order.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from harness.errors import HarnessError
from harness.streams import cache, csvread, schema
from harness.streams import merge_by_time as merge
from harness.streams.csvread import Path_, ReadStats, Source
from harness.streams.rules import Rules

VERSION = 2  # bump when the output of a reader changes: cached tables of older versions are not reused
CLOCKS = ("local", "exchange")

BOOK_KIND = "tardis incremental_book_L2"
TRADES_KIND = "tardis trades"
QUOTES_KIND = "tardis quotes/book_ticker"
SNAPSHOT_KIND = "tardis book_snapshot_N"

_HEAD = ("exchange", "symbol", "timestamp", "local_timestamp")
_TIMES = {"timestamp": pa.int64(), "local_timestamp": pa.int64()}
_F64 = pa.float64()
BOOK_COLUMNS = {**_TIMES, "is_snapshot": pa.bool_(), "side": pa.string(), "price": _F64, "amount": _F64}
TRADE_COLUMNS = {**_TIMES, "side": pa.string(), "price": _F64, "amount": _F64}
QUOTE_COLUMNS = {**_TIMES, "ask_amount": _F64, "ask_price": _F64, "bid_price": _F64, "bid_amount": _F64}
_LEVEL = re.compile(r"^(asks|bids)\[(\d+)\]\.(price|amount)$")
BOOK_HEADER = (*_HEAD, "is_snapshot", "side", "price", "amount")
TRADES_HEADER = (*_HEAD, "id", "side", "price", "amount")
QUOTES_HEADER = (*_HEAD, "ask_amount", "ask_price", "bid_price", "bid_amount")
TRADE_SIDES = ("buy", "sell", "unknown")  # and empty: unknown too
US = 1000  # ns per tardis timestamp unit (microseconds)


def _check(clock: str, on_bad_rows: str, rules: Rules | Mapping[str, Any] | None, kind: str) -> tuple[Rules, ReadStats]:
    """Validate the options; the rules (a warning when some are relaxed) and fresh stats recording them."""
    if clock not in CLOCKS:
        raise HarnessError(f"clock must be 'local' or 'exchange', got {clock!r}")
    csvread.check_on_bad_rows(on_bad_rows)
    checked = Rules.of(rules)
    checked.warn_relaxed(kind)
    return checked, ReadStats(relaxed=checked.relaxed())


def _time_checks(table: pa.Table, rules: Rules) -> list[csvread.Check]:
    """Both tardis timestamps in the rules' range, checked in microseconds (before the conversion to ns)."""
    return [
        csvread.time_check(csvread.numeric(table, c), c, "microseconds", US, rules)
        for c in ("timestamp", "local_timestamp")
    ]


def _clock_column(clock: str) -> str:
    return "local_timestamp" if clock == "local" else "timestamp"


def _ns(us: np.ndarray) -> np.ndarray:
    return np.asarray(us, dtype=np.int64) * US  # in range (the time rule ran first): cannot overflow


def _rows_table(
    trigger: str, t_local_us: np.ndarray, t_exchange_us: np.ndarray, clock: str, columns: dict[str, pa.Array]
) -> pa.Table:
    """A market table with one event per entry of the time arrays (microseconds) and the given columns."""
    t_local, t_exchange = _ns(t_local_us), _ns(t_exchange_us)
    base = {
        "t": pa.array(t_local if clock == "local" else t_exchange, pa.int64()),
        "trigger": schema.trigger_array(np.full(len(t_local), schema.CODES[trigger], dtype=np.int8)),
        "t_local": pa.array(t_local, pa.int64()),
        "t_exchange": pa.array(t_exchange, pa.int64()),
    }
    return schema.conform(pa.table({**base, **columns}))


def _finish(parts: list[pa.Table], st: ReadStats) -> pa.Table:
    table = pa.concat_tables(parts) if parts else schema.empty()  # one chunk per file
    return csvread.attach_stats(table, st)


# --- incremental_book_L2 ---------------------------------------------------------------------------------


def read_book(
    paths: Path_ | Sequence[Path_],
    *,
    clock: str = "local",
    on_bad_rows: str = "error",
    rules: Rules | Mapping[str, Any] | None = None,
) -> pa.Table:
    """Read tardis `incremental_book_L2` files: one "book" event per exchange message (see the module doc)."""
    checked, st = _check(clock, on_bad_rows, rules, BOOK_KIND)
    parts = []
    prev_local: int | None = None
    prev_exchange: int | None = None
    for path in csvread.as_paths(paths):
        table, _, src = csvread.read_csv(
            path,
            kind=BOOK_KIND,
            columns=BOOK_COLUMNS,
            required=_HEAD,
            headers=[BOOK_HEADER],
            on_bad_rows=on_bad_rows,
            stats=st,
            rules=checked,
        )
        part = _book_messages(table, src, clock, on_bad_rows, st, prev_local, prev_exchange, checked)
        parts.append(part)
        if part.num_rows:
            prev_local = part["t_local"][-1].as_py() // 1000  # local times never decrease
            if clock == "exchange":
                prev_exchange = part["t_exchange"][-1].as_py() // 1000  # message exchange times never decrease
    return _finish(parts, st)


class _Rows:
    """The columns of a book file as numpy arrays, filtered together."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table
        side_col = table.column("side")
        side = pc.if_else(
            pc.equal(side_col, "bid"), schema.BID, pc.if_else(pc.equal(side_col, "ask"), schema.ASK, None)
        )
        self.side = csvread.numeric(pa.table({"s": side}), "s")  # null (unknown side) -> NaN
        self.price = csvread.numeric(table, "price")
        self.amount = csvread.numeric(table, "amount")
        self.local = csvread.numeric(table, "local_timestamp")
        self.exchange = csvread.numeric(table, "timestamp")
        self.snap = csvread.numeric(table, "is_snapshot").astype(bool)

    def keep(self, mask: np.ndarray | None) -> None:
        if mask is None:
            return
        self.table = self.table.filter(pa.array(mask))
        for name in ("side", "price", "amount", "local", "exchange", "snap"):
            setattr(self, name, getattr(self, name)[mask])


def _book_messages(
    table: pa.Table,
    src: Source,
    clock: str,
    on_bad_rows: str,
    st: ReadStats,
    prev_local: int | None,
    prev_exchange: int | None,
    rules: Rules,
) -> pa.Table:
    r = _Rows(table)
    side_col = table.column("side")
    checks = [
        *_time_checks(table, rules),
        (
            csvread.BAD_SIDE,
            np.isnan(r.side),
            lambda i: f"side {csvread.shown(side_col[i].as_py())} is neither 'bid' nor 'ask'",
        ),
        *csvread.price_check(r.price, "price", rules, jump=False),  # levels lie far apart: no jump rule
        *csvread.size_check(r.amount, "amount", rules),
    ]
    r.keep(csvread.rule_mask(r.table, src, checks, on_bad_rows, st))
    order = csvread.order_check(r.local, prev_local, "local_timestamp")
    r.keep(csvread.rule_mask(r.table, src, [order], on_bad_rows, st))
    starts = _message_starts(r.local, r.snap)
    if clock == "exchange" and len(starts):
        # t is the exchange time of a message's first row: messages (not rows) must keep it in order
        first = r.exchange[starts]
        bad_msg = csvread.decreasing(first, prev_exchange)
        if bad_msg.any():
            lengths = np.diff(np.append(starts, len(r.local)))
            at_start = np.zeros(len(r.local), dtype=bool)
            at_start[starts[bad_msg]] = True
            _, _, describe = csvread.order_check(r.exchange, prev_exchange, "timestamp")
            message = (
                csvread.DECREASING,
                at_start,
                lambda i: f"the message starting at this row: {describe(i)} (exchange times of messages)",
            )
            csvread.rule_mask(r.table, src, [message], on_bad_rows, st)  # raises under "error"
            rows_bad = np.repeat(bad_msg, lengths)
            st.skip(csvread.DECREASING, int(np.count_nonzero(rows_bad)) - int(np.count_nonzero(bad_msg)))
            r.keep(~rows_bad)
            starts = _message_starts(r.local, r.snap)

    offsets = pa.array(np.append(starts, len(r.local)).astype(np.int32), pa.int32())
    msnap = r.snap[starts]
    cont = msnap & np.concatenate([[False], msnap[:-1]])
    code = np.where(msnap, np.where(cont, schema.SNAPSHOT_CONTINUE, schema.SNAPSHOT_START), schema.SNAPSHOT_NONE)
    columns = {
        "book_side": pa.ListArray.from_arrays(offsets, pa.array(r.side, pa.float64())),
        "book_price": pa.ListArray.from_arrays(offsets, pa.array(r.price, pa.float64())),
        "book_amount": pa.ListArray.from_arrays(offsets, pa.array(r.amount, pa.float64())),
        "book_snapshot": pa.array(code, pa.float64()),
    }
    return _rows_table(schema.BOOK, r.local[starts], r.exchange[starts], clock, columns)


def _message_starts(local: np.ndarray, snap: np.ndarray) -> np.ndarray:
    """Row indices where a message starts: local_timestamp or is_snapshot changes."""
    n = len(local)
    change = np.empty(n, dtype=bool)
    if n:
        change[0] = True
        np.not_equal(local[1:], local[:-1], out=change[1:])
        change[1:] |= snap[1:] != snap[:-1]
    return np.flatnonzero(change)


# --- trades / quotes -------------------------------------------------------------------------------------


def read_trades(
    paths: Path_ | Sequence[Path_],
    *,
    clock: str = "local",
    on_bad_rows: str = "error",
    rules: Rules | Mapping[str, Any] | None = None,
) -> pa.Table:
    """Read tardis `trades` files: one "trade" event per row (the `id` column, any type, is not kept)."""
    checked, st = _check(clock, on_bad_rows, rules, TRADES_KIND)
    parts, prev = [], None
    tcol = _clock_column(clock)
    for path in csvread.as_paths(paths):
        table, _, src = csvread.read_csv(
            path,
            kind=TRADES_KIND,
            columns=TRADE_COLUMNS,
            required=(*_HEAD, "id"),
            nullable=("side",),
            headers=[TRADES_HEADER],
            on_bad_rows=on_bad_rows,
            stats=st,
            rules=checked,
        )
        price, amount = csvread.numeric(table, "price"), csvread.numeric(table, "amount")
        side_col = table.column("side")
        unknown = pc.invert(pc.or_(pc.is_null(side_col), pc.is_in(side_col, pa.array(TRADE_SIDES))))
        checks = [
            *_time_checks(table, checked),
            (
                csvread.BAD_SIDE,
                unknown.to_numpy(zero_copy_only=False),
                lambda i, side_col=side_col: (
                    f"side {csvread.shown(side_col[i].as_py())} is not one of {list(TRADE_SIDES)} (or empty)"
                ),
            ),
            *csvread.price_check(price, "price", checked),
            *csvread.size_check(amount, "amount", checked, positive=True),
        ]
        table = csvread.apply_rules(table, src, checks, on_bad_rows, st)
        table = _ordered(table, src, tcol, prev, on_bad_rows, st)
        side_col = table.column("side")
        side = pc.if_else(
            pc.equal(side_col, "buy"),
            schema.BUY,
            pc.if_else(pc.equal(side_col, "sell"), schema.SELL, schema.UNKNOWN_SIDE),
        ).fill_null(schema.UNKNOWN_SIDE)
        columns = {"trade_price": table["price"], "trade_amount": table["amount"], "trade_side": side}
        parts.append(_rows_of(table, clock, schema.TRADE, columns))
        prev = _last(table, tcol, prev)
    return _finish(parts, st)


def read_quotes(
    paths: Path_ | Sequence[Path_],
    *,
    clock: str = "local",
    on_bad_rows: str = "error",
    rules: Rules | Mapping[str, Any] | None = None,
) -> pa.Table:
    """Read tardis `quotes` or `book_ticker` files: one "quote" event per row."""
    checked, st = _check(clock, on_bad_rows, rules, QUOTES_KIND)
    parts, prev = [], None
    tcol = _clock_column(clock)
    nullable = ("ask_amount", "ask_price", "bid_price", "bid_amount")
    for path in csvread.as_paths(paths):
        table, _, src = csvread.read_csv(
            path,
            kind=QUOTES_KIND,
            columns=QUOTE_COLUMNS,
            required=_HEAD,
            nullable=nullable,
            headers=[QUOTES_HEADER],
            on_bad_rows=on_bad_rows,
            stats=st,
            rules=checked,
        )
        checks = [*_time_checks(table, checked), *_level_checks(table, nullable, checked)]
        table = csvread.apply_rules(table, src, checks, on_bad_rows, st)
        table = _ordered(table, src, tcol, prev, on_bad_rows, st)
        columns = {f"quote_{name.split('_')[0]}_{name.split('_')[1]}": table[name] for name in nullable}
        parts.append(_rows_of(table, clock, schema.QUOTE, columns))
        prev = _last(table, tcol, prev)
    return _finish(parts, st)


def _level_checks(table: pa.Table, names: Sequence[str], rules: Rules) -> list[csvread.Check]:
    """Price rules for the nullable `*price` columns among `names`, size rules for the others (nulls are fine)."""
    checks: list[csvread.Check] = []
    for name in names:
        values = csvread.numeric(table, name)
        valid = table.column(name).is_valid().to_numpy(zero_copy_only=False)
        if name.endswith("price"):
            checks.extend(csvread.price_check(values, name, rules, valid=valid))
        else:
            checks.extend(csvread.size_check(values, name, rules, valid=valid))
    return checks


def _ordered(table: pa.Table, src: Source, column: str, prev: int | None, on_bad_rows: str, st: ReadStats) -> pa.Table:
    check = csvread.order_check(csvread.numeric(table, column), prev, column)
    return csvread.apply_rules(table, src, [check], on_bad_rows, st)


def _last(table: pa.Table, column: str, prev: int | None) -> int | None:
    if not table.num_rows:
        return prev
    last = int(pc.max(table.column(column)).as_py())
    return last if prev is None else max(prev, last)


def _rows_of(table: pa.Table, clock: str, trigger: str, columns: dict[str, pa.ChunkedArray]) -> pa.Table:
    local, exch = csvread.numeric(table, "local_timestamp"), csvread.numeric(table, "timestamp")
    return _rows_table(trigger, local, exch, clock, {k: _array(v) for k, v in columns.items()})


def _array(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


# --- book_snapshot_N -------------------------------------------------------------------------------------


def _levels(path: Path_) -> int:
    """The number of levels of a book_snapshot file's header (0 if it has none)."""
    src = Source(csvread.as_paths(path)[0], SNAPSHOT_KIND, True)
    have = set(csvread.first_record(src.path, src))
    n = 0
    while all(f"{s}[{n}].{v}" in have for s in ("asks", "bids") for v in ("price", "amount")):
        n += 1
    return n


def read_snapshots(
    paths: Path_ | Sequence[Path_],
    *,
    clock: str = "local",
    on_bad_rows: str = "error",
    rules: Rules | Mapping[str, Any] | None = None,
) -> pa.Table:
    """Read tardis `book_snapshot_5` / `book_snapshot_25` files: each row is a "book" event with book_snapshot 1."""
    checked, st = _check(clock, on_bad_rows, rules, SNAPSHOT_KIND)
    parts, prev = [], None
    tcol = _clock_column(clock)
    for path in csvread.as_paths(paths):
        n_levels = max(_levels(path), 1)  # a file with no levels fails read_csv on asks[0].price etc.
        level_cols = [f"{s}[{i}].{v}" for i in range(n_levels) for s in ("asks", "bids") for v in ("price", "amount")]
        table, _, src = csvread.read_csv(
            path,
            kind=SNAPSHOT_KIND,
            columns={**_TIMES, **dict.fromkeys(level_cols, _F64)},
            required=_HEAD,
            nullable=level_cols,
            headers=[(*_HEAD, *level_cols)],
            on_bad_rows=on_bad_rows,
            stats=st,
            rules=checked,
        )
        checks = [*_time_checks(table, checked), *_level_checks(table, level_cols, checked)]
        table = csvread.apply_rules(table, src, checks, on_bad_rows, st)
        table = _ordered(table, src, tcol, prev, on_bad_rows, st)
        n = table.num_rows
        prices = np.empty((n, 2 * n_levels))
        amounts = np.empty((n, 2 * n_levels))
        present = np.empty((n, 2 * n_levels), dtype=bool)
        for j in range(2 * n_levels):
            side, level = ("asks", "bids")[j % 2], j // 2
            p, a = f"{side}[{level}].price", f"{side}[{level}].amount"
            prices[:, j], amounts[:, j] = csvread.numeric(table, p), csvread.numeric(table, a)
            valid = pc.and_(table.column(p).is_valid(), table.column(a).is_valid())
            present[:, j] = valid.to_numpy(zero_copy_only=False)
        sides = np.broadcast_to(np.tile([schema.ASK, schema.BID], n_levels), prices.shape)
        offsets = pa.array(np.concatenate([[0], np.cumsum(present.sum(axis=1))]).astype(np.int32), pa.int32())
        columns = {
            "book_side": pa.ListArray.from_arrays(offsets, pa.array(sides[present], pa.float64())),
            "book_price": pa.ListArray.from_arrays(offsets, pa.array(prices[present], pa.float64())),
            "book_amount": pa.ListArray.from_arrays(offsets, pa.array(amounts[present], pa.float64())),
            "book_snapshot": pa.array(np.full(n, schema.SNAPSHOT_START), pa.float64()),
        }
        parts.append(_rows_of(table, clock, schema.BOOK, columns))
        prev = _last(table, tcol, prev)
    return _finish(parts, st)


# --- everything at once ----------------------------------------------------------------------------------


def tardis(
    book: Path_ | Sequence[Path_] | None = None,
    trades: Path_ | Sequence[Path_] | None = None,
    quotes: Path_ | Sequence[Path_] | None = None,
    snapshots: Path_ | Sequence[Path_] | None = None,
    *,
    clock: str = "local",
    on_bad_rows: str = "error",
    cache_dir: Path_ | None = None,
    rules: Rules | Mapping[str, Any] | None = None,
    market: str | None = None,
) -> pa.Table:
    """Read the given tardis files and merge them into one market table (`merge.merge`, arguments in this order).

    `market` names the market: its triggers become `<market>.book` ... and its columns `<market>.<column>`
    (`schema.tag`), so that `hs.streams.merge` can join it with other markets. `rules` relaxes plausibility
    rules for these files (`harness.streams.rules`). With `cache_dir`, the merged table is kept as Parquet there,
    keyed by the files (path, size, mtime), the options, the rules and `VERSION`, with the sha256 of each file's
    content: a later call with the same inputs reads it instead of the CSV files once the files' content is
    verified unchanged (`harness.streams.cache.cached`).
    """
    checked = Rules.of(rules)
    if market is not None:
        schema.check_market(market)
    if clock not in CLOCKS:
        raise HarnessError(f"clock must be 'local' or 'exchange', got {clock!r}")
    csvread.check_on_bad_rows(on_bad_rows)
    readers = {"book": read_book, "trades": read_trades, "quotes": read_quotes, "snapshots": read_snapshots}
    args = zip(readers, (book, trades, quotes, snapshots), strict=True)
    given = {k: csvread.as_paths(v) for k, v in args if v is not None}
    if not given:
        raise HarnessError("tardis: give at least one of book, trades, quotes, snapshots")

    def build() -> pa.Table:
        tables = [readers[k](v, clock=clock, on_bad_rows=on_bad_rows, rules=checked) for k, v in given.items()]
        return merge.merge(*tables)

    if cache_dir is None:
        return schema.tagged(build(), market)
    options = {"clock": clock, "on_bad_rows": on_bad_rows, "rules": checked.to_dict()}
    return schema.tagged(cache.cached("tardis", VERSION, options, given, build, cache_dir, rules=checked), market)

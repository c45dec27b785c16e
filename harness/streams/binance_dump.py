"""data.binance.vision dump readers (trades, aggTrades, bookTicker) producing the market events schema.

Files are .zip archives holding one CSV (as downloaded) or the CSV itself (plain or .gz), with a header row
(USD-M futures dumps since 2022) or without (spot, older futures); a file has a header when its first line
starts with something other than a digit. Layouts (headerless files are matched by their number of fields):

    trades      id,price,qty,quote_qty,time,is_buyer_maker[,is_best_match]      6 (futures) or 7 (spot) fields
    aggTrades   agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker
                [,is_best_match]                                                7 (futures) or 8 (spot) fields
    bookTicker  update_id,best_bid_price,best_bid_qty,best_ask_price,best_ask_qty,transaction_time,event_time

Mapping: trades and aggTrades rows are "trade" events (trade_price = price, trade_amount = qty / quantity,
trade_side = -1 when is_buyer_maker (the seller took liquidity) else +1), t from time / transact_time;
bookTicker rows are "quote" events (quote_bid_price = best_bid_price, ...), t from event_time. These dumps
have one clock: t_local = t_exchange = t. Times are epoch milliseconds; a file whose first time is at least
1e14 is read as microseconds (Binance spot dumps from 2025 on). Bad input: see `harness.streams.csvread`.
Plausibility rules (`harness.streams.rules`, relaxed per stream with `rules=`): times in range (checked in the
file's unit, before the conversion to ns), prices finite, > 0, below a bound and without 10x jumps, sizes finite,
>= 0 (trades > 0) and below a bound, `is_buyer_maker` a boolean, and a header row, when there is one, that is
the dump type's columns in Binance's order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
MICROSECONDS_FROM = 10**14  # first time value from which a file's times are microseconds, not milliseconds


@dataclass(frozen=True)
class Layout:
    """One dump type: its columns, accepted field counts, and which columns hold time, price and size."""

    kind: str
    names: tuple[str, ...]
    counts: tuple[int, ...]
    time: str
    types: dict[str, pa.DataType]


_F64, _I64, _BOOL = pa.float64(), pa.int64(), pa.bool_()
TRADES = Layout(
    "binance trades",
    ("id", "price", "qty", "quote_qty", "time", "is_buyer_maker", "is_best_match"),
    (6, 7),
    "time",
    {"price": _F64, "qty": _F64, "time": _I64, "is_buyer_maker": _BOOL},
)
AGG_TRADES = Layout(
    "binance aggTrades",
    (
        "agg_trade_id",
        "price",
        "quantity",
        "first_trade_id",
        "last_trade_id",
        "transact_time",
        "is_buyer_maker",
        "is_best_match",
    ),
    (7, 8),
    "transact_time",
    {"price": _F64, "quantity": _F64, "transact_time": _I64, "is_buyer_maker": _BOOL},
)
BOOK_TICKER = Layout(
    "binance bookTicker",
    (
        "update_id",
        "best_bid_price",
        "best_bid_qty",
        "best_ask_price",
        "best_ask_qty",
        "transaction_time",
        "event_time",
    ),
    (7,),
    "event_time",
    {"best_bid_price": _F64, "best_bid_qty": _F64, "best_ask_price": _F64, "best_ask_qty": _F64, "event_time": _I64},
)


def _read_file(
    path: Path_, layout: Layout, on_bad_rows: str, st: ReadStats, prev: int | None, rules: Rules
) -> tuple[pa.Table, np.ndarray]:
    """One dump file, checked; returns the table and its event times in ns."""
    probe = Source(csvread.as_paths(path)[0], layout.kind, True)
    names = None
    if not csvread.has_header(probe.path, probe):
        fields = len(csvread.first_record(probe.path, probe))
        if fields not in layout.counts:
            expected = " or ".join(map(str, layout.counts))
            raise Source(probe.path, layout.kind, False).error(
                csvread.MISSING_COLUMNS,
                f"does not look like a {layout.kind} file: its first row has {fields} fields, expected {expected} "
                f"({','.join(layout.names[: max(layout.counts)])})",
                line=1,
            )
        names = layout.names[:fields]
    table, _, src = csvread.read_csv(
        probe.path,
        kind=layout.kind,
        columns=layout.types,
        names=names,
        headers=[layout.names[:n] for n in layout.counts],
        on_bad_rows=on_bad_rows,
        stats=st,
        rules=rules,
    )
    raw = csvread.numeric(table, layout.time)
    micro = len(raw) > 0 and raw[0] >= MICROSECONDS_FROM
    scale, unit = (1000, "microseconds") if micro else (1_000_000, "milliseconds")
    checks: list[csvread.Check] = [csvread.time_check(raw, layout.time, unit, scale, rules)]
    for name, typ in layout.types.items():
        if typ != _F64:
            continue
        values = csvread.numeric(table, name)
        if name.endswith("price"):
            checks.extend(csvread.price_check(values, name, rules))
        else:
            checks.extend(csvread.size_check(values, name, rules, positive=layout is not BOOK_TICKER))
    table = csvread.apply_rules(table, src, checks, on_bad_rows, st)
    t = csvread.numeric(table, layout.time) * scale  # in range (the time rule ran first): cannot overflow
    keep = csvread.rule_mask(table, src, [csvread.order_check(t, prev, f"{layout.time} (in ns)")], on_bad_rows, st)
    if keep is not None:
        table, t = table.filter(pa.array(keep)), t[keep]
    return table, t


def _events(trigger: str, t: np.ndarray, columns: dict[str, pa.Array]) -> pa.Table:
    t_arr = pa.array(t, pa.int64())
    base = {
        "t": t_arr,
        "trigger": schema.trigger_array(np.full(len(t), schema.CODES[trigger], dtype=np.int8)),
        "t_local": t_arr,
        "t_exchange": t_arr,
    }
    return schema.conform(pa.table({**base, **columns}))


def _read(
    paths: Path_ | Sequence[Path_], layout: Layout, on_bad_rows: str, rules: Rules | Mapping[str, Any] | None
) -> pa.Table:
    csvread.check_on_bad_rows(on_bad_rows)
    checked = Rules.of(rules)
    checked.warn_relaxed(layout.kind)
    st, parts, prev = ReadStats(relaxed=checked.relaxed()), [], None
    for path in csvread.as_paths(paths):
        table, t = _read_file(path, layout, on_bad_rows, st, prev, checked)
        if len(t):
            prev = int(t[-1]) if prev is None else max(prev, int(t[-1]))
        col = {name: table.column(name).combine_chunks() for name in layout.types}
        if layout is BOOK_TICKER:
            columns = {
                "quote_bid_price": col["best_bid_price"],
                "quote_bid_amount": col["best_bid_qty"],
                "quote_ask_price": col["best_ask_price"],
                "quote_ask_amount": col["best_ask_qty"],
            }
            parts.append(_events(schema.QUOTE, t, columns))
        else:
            size = "qty" if layout is TRADES else "quantity"
            side = pc.if_else(col["is_buyer_maker"], schema.SELL, schema.BUY)
            columns = {"trade_price": col["price"], "trade_amount": col[size], "trade_side": side}
            parts.append(_events(schema.TRADE, t, columns))
    table = pa.concat_tables(parts).combine_chunks() if parts else schema.empty()
    return csvread.attach_stats(table, st)


def read_trades(
    paths: Path_ | Sequence[Path_], *, on_bad_rows: str = "error", rules: Rules | Mapping[str, Any] | None = None
) -> pa.Table:
    """Read Binance `trades` dumps: one "trade" event per row."""
    return _read(paths, TRADES, on_bad_rows, rules)


def read_agg_trades(
    paths: Path_ | Sequence[Path_], *, on_bad_rows: str = "error", rules: Rules | Mapping[str, Any] | None = None
) -> pa.Table:
    """Read Binance `aggTrades` dumps (7 or 8 fields): one "trade" event per aggregated trade."""
    return _read(paths, AGG_TRADES, on_bad_rows, rules)


def read_book_ticker(
    paths: Path_ | Sequence[Path_], *, on_bad_rows: str = "error", rules: Rules | Mapping[str, Any] | None = None
) -> pa.Table:
    """Read Binance `bookTicker` dumps: one "quote" event per row, t from event_time."""
    return _read(paths, BOOK_TICKER, on_bad_rows, rules)


def binance(
    trades: Path_ | Sequence[Path_] | None = None,
    agg_trades: Path_ | Sequence[Path_] | None = None,
    book_ticker: Path_ | Sequence[Path_] | None = None,
    *,
    on_bad_rows: str = "error",
    cache_dir: Path_ | None = None,
    rules: Rules | Mapping[str, Any] | None = None,
    market: str | None = None,
) -> pa.Table:
    """Read the given Binance dumps and merge them into one market table (`merge.merge`, arguments in order).

    `market` names the market (triggers `<market>.trade` ..., columns `<market>.<column>`: `schema.tag`);
    `rules` relaxes plausibility rules; with `cache_dir`, the merged table is kept as Parquet there, its source
    files' content verified on every hit (see `tardis_csv.tardis`).
    """
    csvread.check_on_bad_rows(on_bad_rows)
    checked = Rules.of(rules)
    if market is not None:
        schema.check_market(market)
    readers = {"trades": read_trades, "agg_trades": read_agg_trades, "book_ticker": read_book_ticker}
    args = zip(readers, (trades, agg_trades, book_ticker), strict=True)
    given = {k: csvread.as_paths(v) for k, v in args if v is not None}
    if not given:
        raise HarnessError("binance: give at least one of trades, agg_trades, book_ticker")

    def build() -> pa.Table:
        return merge.merge(*[readers[k](v, on_bad_rows=on_bad_rows, rules=checked) for k, v in given.items()])

    if cache_dir is None:
        return schema.tagged(build(), market)
    options = {"on_bad_rows": on_bad_rows, "rules": checked.to_dict()}
    return schema.tagged(cache.cached("binance", VERSION, options, given, build, cache_dir, rules=checked), market)

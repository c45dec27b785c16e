"""Merging market tables into one stream ordered by `t`, with a stable, documented tie-break.

Rule: rows are ordered by `t`; rows with equal `t` by trigger, book < quote < trade (the book and top of
book a trade happened against come first); then by the position of their table among the arguments; then
by their row order in that table. (A stable `pyarrow.compute.sort_indices` on (t, trigger priority,
argument index) over the concatenated tables.) Each input is first conformed to the market schema
(`schema.conform`): missing columns become nulls, extra columns are kept (null in rows of tables without
them). The read stats of the inputs (`csvread.stats`) are added up into the result's.

Markets. Tables tagged with market names (`schema.tag`, a reader's `market=`) merge by the same rule: at equal
`t` the books of every market come first, then the quotes, then the trades, each in argument order. The result
has the columns of every market (`schema.market_schema`, markets in order of first appearance; a stream without
a name first if it comes first) and a trigger dictionary of all their triggers. Each market may come from one
argument only (two streams with the same market name are an error; tables without a market name merge as one
market, as before).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from harness.errors import EventsError
from harness.streams import csvread, schema

PRIORITY = (schema.BOOK, schema.QUOTE, schema.TRADE)  # tie-break order of triggers at equal t
_PRIORITY = "__merge_priority"
_SOURCE = "__merge_source"


def _priority(table: pa.Table, k: int) -> np.ndarray:
    trig = table.column("trigger")
    names = trig.cast(pa.string()) if pa.types.is_dictionary(trig.type) else trig
    prio = pc.index_in(names, value_set=pa.array(PRIORITY, pa.string()))
    if prio.null_count:
        i = int(np.flatnonzero(prio.is_null().to_numpy(zero_copy_only=False))[0])
        raise EventsError(f"merge: argument {k} row {i}: unknown trigger {names[i].as_py()!r}, not one of {PRIORITY}")
    return prio.to_numpy().astype(np.int8)


def _markets(tables: tuple[pa.Table, ...]) -> tuple[list[list[str | None]], list[str | None]]:
    """The markets of each table and of all (in order of first appearance); EventsError when two tables carry a
    market of the same name."""
    per, owner = [], {}
    for k, table in enumerate(tables):
        if "t" not in table.column_names or "trigger" not in table.column_names:
            raise EventsError(f"merge: argument {k} has no 't' or 'trigger' column: {table.column_names}")
        found = schema.markets_of(table.column("trigger"))
        for m in found:
            if m is not None and owner.setdefault(m, k) != k:
                raise EventsError(
                    f"merge: market {m!r} is in argument {owner[m]} and in argument {k}: two streams with the same "
                    f"market name; read one market's files in one reader call, or give the streams other names"
                )
        per.append(found)
    return per, list(dict.fromkeys(m for found in per for m in found))


def merge(*tables: pa.Table) -> pa.Table:
    """Merge market tables by `t` with the tie-break rule of the module docstring; stable and lossless."""
    if not tables:
        return schema.empty()
    per, markets = _markets(tables)
    if any(m is not None for m in markets):
        return _merge_markets(tables, per, markets)
    parts, total = [], csvread.ReadStats()
    has_stats = False
    for k, table in enumerate(tables):
        if "t" not in table.column_names or "trigger" not in table.column_names:
            raise EventsError(f"merge: argument {k} has no 't' or 'trigger' column: {table.column_names}")
        if table.column("t").null_count:
            raise EventsError(f"merge: argument {k} has null times in column 't'")
        if stats := csvread.stats(table):
            total.add(csvread.ReadStats.from_dict(stats))
            has_stats = True
        prio = _priority(table, k)  # before conform, so an unknown trigger is named with its argument
        conformed = schema.conform(table).replace_schema_metadata(None)
        conformed = conformed.append_column(_PRIORITY, pa.array(prio, pa.int8()))
        conformed = conformed.append_column(_SOURCE, pa.array(np.full(table.num_rows, k, dtype=np.int32)))
        parts.append(conformed)
    both = pa.concat_tables(parts, promote_options="default")
    order = pc.sort_indices(both, sort_keys=[("t", "ascending"), (_PRIORITY, "ascending"), (_SOURCE, "ascending")])
    out = both.take(order).drop_columns([_PRIORITY, _SOURCE])
    codes = np.asarray([schema.CODES[p] for p in PRIORITY], dtype=np.int8)[both.column(_PRIORITY).to_numpy()]
    out = out.set_column(out.schema.get_field_index("trigger"), "trigger", schema.trigger_array(codes[order]))
    out = out.combine_chunks()
    return csvread.attach_stats(out, total) if has_stats else out


def _merge_markets(tables: tuple[pa.Table, ...], per: list[list[str | None]], markets: list[str | None]) -> pa.Table:
    """`merge` of tables of several named markets: one trigger dictionary, every market's columns."""
    triggers = schema.market_triggers(markets)
    kinds = [schema.split(name)[1] for name in triggers.to_pylist()]
    rank = np.asarray([PRIORITY.index(k) for k in kinds], dtype=np.int8)
    parts, codes, total, has_stats = [], [], csvread.ReadStats(), False
    for k, table in enumerate(tables):
        if table.column("t").null_count:
            raise EventsError(f"merge: argument {k} has null times in column 't'")
        if stats := csvread.stats(table):
            total.add(csvread.ReadStats.from_dict(stats))
            has_stats = True
        mine = per[k] or markets[:1]  # a table without rows may name no trigger
        try:
            conformed = schema.conform_markets(table, mine)
        except EventsError as e:
            raise EventsError(f"merge: argument {k}: {e}") from None
        local = conformed.column("trigger").combine_chunks()
        to_all = pc.index_in(schema.market_triggers(mine), value_set=triggers).to_numpy(zero_copy_only=False)
        to_all = to_all.astype(np.int16)
        code = to_all[local.indices.to_numpy(zero_copy_only=False)] if len(local) else np.empty(0, np.int16)
        codes.append(code)
        conformed = conformed.drop_columns(["trigger"]).replace_schema_metadata(None)
        conformed = conformed.append_column(_PRIORITY, pa.array(rank[code], pa.int8()))
        conformed = conformed.append_column(_SOURCE, pa.array(np.full(table.num_rows, k, dtype=np.int32)))
        parts.append(conformed)
    both = pa.concat_tables(parts, promote_options="default")
    order = pc.sort_indices(both, sort_keys=[("t", "ascending"), (_PRIORITY, "ascending"), (_SOURCE, "ascending")])
    out = both.take(order).drop_columns([_PRIORITY, _SOURCE])
    out = out.add_column(1, "trigger", schema.trigger_array(np.concatenate(codes)[order.to_numpy()], triggers))
    names = schema.market_schema(markets).names
    out = out.select(names + [c for c in out.column_names if c not in names]).combine_chunks()
    return csvread.attach_stats(out, total) if has_stats else out


def merge_streams(
    streams: Sequence[Iterable[pa.RecordBatch | pa.Table]], empties: Sequence[pa.Table], batch_size: int
) -> Iterator[pa.RecordBatch]:
    """Several time-ordered streams (batches or tables) merged by `t` as `merge(*streams)` would, in batches of at
    most `batch_size` rows, holding about one batch per stream: rows before the earliest of the live streams' last
    buffered times are final (no later row can precede them). `empties[i]`: stream i without rows (its columns)."""
    its = [iter(s) for s in streams]
    pending = list(empties)
    live = set(range(len(its)))
    while live or any(p.num_rows for p in pending):
        for i in sorted(live):
            while i in live and pending[i].num_rows == 0:
                _pull(its, pending, live, i)
        cutoff = min((int(pending[i].column("t")[-1].as_py()) for i in live), default=None)
        if cutoff is None:
            ready = pending
        else:  # pending rows are in time order: the final ones are a prefix
            ready = [p.slice(0, int(np.searchsorted(p.column("t").to_numpy(), cutoff, "left"))) for p in pending]
        if not any(r.num_rows for r in ready):
            for i in [i for i in sorted(live) if int(pending[i].column("t")[-1].as_py()) == cutoff]:
                _pull(its, pending, live, i)
            continue
        pending = [p.slice(r.num_rows) for p, r in zip(pending, ready, strict=True)]
        yield from merge(*ready).to_batches(max_chunksize=batch_size)


def _pull(its: list[Iterator], pending: list[pa.Table], live: set[int], i: int) -> None:
    """Append stream i's next batch to its pending rows, or mark it finished."""
    item = next(its[i], None)
    if item is None:
        live.discard(i)
    else:
        table = pa.Table.from_batches([item]) if isinstance(item, pa.RecordBatch) else item
        pending[i] = pa.concat_tables([pending[i], table]).combine_chunks()

"""Merging market tables into one stream ordered by `t`, with a stable, documented tie-break.

Rule: rows are ordered by `t`; rows with equal `t` by trigger, book < quote < trade (the book and top of
book a trade happened against come first); then by the position of their table among the arguments; then
by their row order in that table. (A stable `pyarrow.compute.sort_indices` on (t, trigger priority,
argument index) over the concatenated tables.) Each input is first conformed to the market schema
(`schema.conform`): missing columns become nulls, extra columns are kept (null in rows of tables without
them). The read stats of the inputs (`csvread.stats`) are added up into the result's.
"""

from __future__ import annotations

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


def merge(*tables: pa.Table) -> pa.Table:
    """Merge market tables by `t` with the tie-break rule of the module docstring; stable and lossless."""
    if not tables:
        return schema.empty()
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

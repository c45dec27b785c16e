"""The events-table contract (DESIGN.md §4), checked once for every backend.

An events table has `t` (int64 ns, non-decreasing), `trigger` (string) and one float column per input,
null where the row's trigger does not set it. Extra columns are ignored. Tables arrive whole, as record
batches, or as an iterable of batches; kernels carry state across batches.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from harness.errors import EventsError


@dataclass(frozen=True)
class EventBatch:
    """One batch of checked events as numpy arrays: times, trigger codes, input values and validity."""

    t: np.ndarray  # int64 ns
    trigger: np.ndarray  # int32 index into the kernel's trigger names
    values: dict[str, np.ndarray]  # float64 per input column present (nan where null)
    valid: dict[str, np.ndarray]  # bool per input column present
    offset: int  # row number of the first row within the whole replay

    def __len__(self) -> int:
        return len(self.t)


def iter_batches(events: object) -> Iterator[pa.RecordBatch]:
    """Yield record batches from a Table, a RecordBatch, anything with an Arrow stream, or an iterable."""
    if isinstance(events, pa.RecordBatch):
        yield events
    elif isinstance(events, pa.Table):
        yield from events.to_batches()
    elif isinstance(events, dict) or hasattr(events, "__arrow_c_stream__"):
        yield from pa.table(events).to_batches()
    elif isinstance(events, Iterable) and not isinstance(events, (str, bytes)):
        for i, item in enumerate(events):
            if isinstance(item, pa.RecordBatch):
                yield item
            elif isinstance(item, pa.Table):
                yield from item.to_batches()
            else:
                raise EventsError(
                    f"events: item {i} of the iterable is a {type(item).__name__}, not a pyarrow RecordBatch"
                )
    else:
        raise EventsError(
            f"events must be a pyarrow Table, RecordBatch or an iterable of RecordBatches, got {type(events).__name__}"
        )


def check_batch(
    batch: pa.RecordBatch,
    triggers: list[str],
    trigger_inputs: dict[str, tuple[str, ...]],
    last_t: int | None,
    offset: int,
) -> EventBatch:
    """Validate one batch against a kernel's triggers and return it as numpy arrays.

    Errors name the row (counted over the whole replay), the column and the rule.
    """
    names = batch.schema.names
    for col in ("t", "trigger"):
        if col not in names:
            raise EventsError(f"events: missing column {col!r} (columns: {', '.join(names)})")
    t = _time_column(batch.column("t"), offset)
    codes = _trigger_codes(batch.column("trigger"), triggers, offset)

    if len(t):
        prev = np.empty_like(t)
        prev[0] = t[0] if last_t is None else last_t
        prev[1:] = t[:-1]
        bad = np.flatnonzero(t < prev)
        if len(bad):
            i = int(bad[0])
            raise EventsError(
                f"events: column 't' decreases at row {offset + i} ({int(t[i])} after {int(prev[i])}); "
                "events must be sorted by time (non-decreasing)"
            )

    values: dict[str, np.ndarray] = {}
    valid: dict[str, np.ndarray] = {}
    present = np.unique(codes)
    for code in present:
        trig = triggers[int(code)]
        rows = codes == code
        for inp in trigger_inputs[trig]:
            if inp not in names:
                raise EventsError(f"events: trigger {trig!r} sets input {inp!r} but the events have no column {inp!r}")
            if inp not in values:
                values[inp], valid[inp] = _input_column(batch.column(inp), inp)
            missing = np.flatnonzero(rows & ~valid[inp])
            if len(missing):
                i = int(missing[0])
                raise EventsError(
                    f"events: row {offset + i} (trigger {trig!r}) has a null in column {inp!r}; "
                    f"trigger {trig!r} must set every one of its inputs ({', '.join(trigger_inputs[trig])})"
                )
    return EventBatch(t=t, trigger=codes, values=values, valid=valid, offset=offset)


def _time_column(col: pa.Array, offset: int) -> np.ndarray:
    typ = col.type
    if pa.types.is_timestamp(typ):
        col = col.cast(pa.timestamp("ns")).cast(pa.int64())
    elif pa.types.is_integer(typ):
        col = col.cast(pa.int64())
    else:
        raise EventsError(f"events: column 't' must be int64 nanoseconds (or a timestamp), got {typ}")
    if col.null_count:
        i = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
        raise EventsError(f"events: row {offset + i} has a null in column 't'")
    return col.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


def _trigger_codes(col: pa.Array, triggers: list[str], offset: int) -> np.ndarray:
    typ = col.type
    if pa.types.is_dictionary(typ):
        col = col.cast(typ.value_type)
        typ = col.type
    if not (pa.types.is_string(typ) or pa.types.is_large_string(typ)):
        raise EventsError(f"events: column 'trigger' must hold strings (trigger names), got {typ}")
    codes = pc.index_in(col, value_set=pa.array(triggers, type=col.type))
    if codes.null_count:
        i = int(np.flatnonzero(codes.is_null().to_numpy(zero_copy_only=False))[0])
        name = col[i].as_py()
        what = "a null trigger" if name is None else f"unknown trigger {name!r}"
        raise EventsError(f"events: row {offset + i} names {what} (triggers: {', '.join(triggers)})")
    return codes.to_numpy(zero_copy_only=False).astype(np.int32, copy=False)


def _input_column(col: pa.Array, name: str) -> tuple[np.ndarray, np.ndarray]:
    typ = col.type
    if not (pa.types.is_floating(typ) or pa.types.is_integer(typ) or pa.types.is_boolean(typ)):
        raise EventsError(f"events: input column {name!r} must be numeric, got {typ}")
    valid = ~col.is_null().to_numpy(zero_copy_only=False)
    values = col.cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False)
    return values, valid

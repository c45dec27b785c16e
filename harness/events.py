"""The events-table contract (README "Events tables"), shared by every backend; it sits below them (harness/layers.py).

An events table has `t` (int64 ns, non-decreasing), `trigger` (string) and one float column per input,
null where the row's trigger does not set it. Extra columns are ignored. Tables arrive whole, as record
batches, or as an iterable of batches; kernels carry state across batches.

Checking happens in two steps. `prepare_batch` does the per-column work (types, missing columns, nulls in
`t`/`trigger`) and exposes the Arrow buffers zero-copy. The per-row rules (time never decreases, every
trigger is known, a trigger's inputs are not null) are checked by `check_rows` for the reference
interpreter, and inside the generated replay loop for C++ kernels; both report through `row_error`, so the
messages are the same. A batch that fails changes no kernel state.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from harness import _native
from harness.errors import EventsError

# row error kinds (shared with cpp/harness/kernel_abi.h)
ERR_TIME, ERR_TRIGGER, ERR_NULL, ERR_COLUMN, ERR_OPERATOR, ERR_MEMORY = 1, 2, 3, 4, 5, 6


class EventSchema:
    """What a kernel expects of events: trigger names (codes are their positions) and the inputs each sets."""

    def __init__(
        self,
        triggers: list[str],
        trigger_inputs: dict[str, tuple[str, ...]],
        inputs: list[str],
        list_inputs: frozenset[str] = frozenset(),
    ) -> None:
        self.triggers = list(triggers)
        self.trigger_inputs = dict(trigger_inputs)
        self.inputs = list(inputs)  # column order of the kernel
        self.list_inputs = frozenset(list_inputs)  # inputs that hold a list of numbers per event
        # required[code, i]: does the trigger with this code set input i?
        self.required = np.array(
            [[name in trigger_inputs[t] for name in self.inputs] for t in self.triggers], dtype=np.uint8
        ).reshape(len(self.triggers), len(self.inputs))


@dataclass(frozen=True)
class EventBatch:
    """One batch of events as zero-copy numpy views of its Arrow buffers."""

    t: np.ndarray  # int64 ns
    codes: np.ndarray  # int8/16/32: trigger codes, or dictionary indices when `remap` is set; -1 = unknown
    remap: np.ndarray | None  # int32: dictionary index -> trigger code (-1 = unknown)
    trigger_column: pa.Array  # the original column, to name an unknown trigger in an error
    values: list[np.ndarray | None]  # float64 per kernel input (None: no such column); unspecified under nulls
    offsets: list[np.ndarray | None]  # int32 list offsets (len + 1) for list inputs, None for scalar inputs
    bitmaps: list[pa.Buffer | None]  # Arrow validity bitmap per kernel input (None: no nulls)
    bit_offsets: list[int]
    offset: int  # row number of the first row within the whole replay

    def __len__(self) -> int:
        return len(self.t)

    @property
    def trigger(self) -> np.ndarray:
        """int32 trigger code of every row (-1 where unknown)."""
        if self.remap is None:
            return self.codes.astype(np.int32, copy=False)
        return self.remap[self.codes]


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


def prepare_batch(batch: pa.RecordBatch, schema: EventSchema, offset: int) -> EventBatch:
    """Column-level checks and zero-copy views of one batch (the per-row rules are checked later)."""
    names = batch.schema.names
    for col in ("t", "trigger"):
        if col not in names:
            raise EventsError(f"events: missing column {col!r} (columns: {', '.join(names)})")
    t = _time_column(batch.column("t"), offset)
    trig = batch.column("trigger")
    codes, remap = _trigger_codes(trig, schema.triggers, offset)
    values: list[np.ndarray | None] = []
    offsets: list[np.ndarray | None] = []
    bitmaps: list[pa.Buffer | None] = []
    bit_offsets: list[int] = []
    for name in schema.inputs:
        if name in names:
            col = batch.column(name)
            if name in schema.list_inputs:
                vals, offs = _list_column(col, name, offset)
            else:
                vals, offs = _input_column(col, name), None
            values.append(vals)
            offsets.append(offs)
            bitmaps.append(col.buffers()[0] if col.null_count else None)
            bit_offsets.append(col.offset)
        else:
            values.append(None)
            offsets.append(None)
            bitmaps.append(None)
            bit_offsets.append(0)
    return EventBatch(t, codes, remap, trig, values, offsets, bitmaps, bit_offsets, offset)


def check_rows(eb: EventBatch, schema: EventSchema, last_t: int | None) -> np.ndarray:
    """Check the per-row rules with numpy and one native scan; return the int32 trigger codes.

    Reports the first broken rule in row order, and within a row in the order the generated loop checks
    them (time, trigger, then the trigger's inputs by column), so both backends give the same error.
    """
    t = eb.t
    codes = eb.trigger
    found: list[tuple[int, int, int, int]] = []  # (row, order within the row, kind, column)
    if len(t):
        prev = np.empty_like(t)
        prev[0] = t[0] if last_t is None else last_t
        prev[1:] = t[:-1]
        down = t < prev
        if down.any():
            found.append((int(np.argmax(down)), 0, ERR_TIME, -1))
    known = codes >= 0
    for i, values in enumerate(eb.values):
        if values is None:
            uses = np.zeros(len(codes), dtype=bool)
            uses[known] = schema.required[codes[known], i].astype(bool)
            if uses.any():
                found.append((int(np.argmax(uses)), 2 + i, ERR_COLUMN, i))
    _, bad_row, bad_col = _native.scan_events(
        codes, len(schema.triggers), schema.required.reshape(-1), eb.bitmaps, eb.bit_offsets
    )
    if bad_row >= 0:  # the scan stops at the first unknown trigger (column -2) or null input
        found.append((bad_row, 1, ERR_TRIGGER, -1) if bad_col == -2 else (bad_row, 2 + bad_col, ERR_NULL, bad_col))
    if found:
        row, _, kind, column = min(found)
        row_error(eb, schema, last_t, kind, row, column)
    return codes


def row_error(eb: EventBatch, schema: EventSchema, last_t: int | None, kind: int, row: int, column: int) -> None:
    """Raise the EventsError for a broken per-row rule (found by numpy or by a generated loop)."""
    where = eb.offset + row
    if kind == ERR_TIME:
        prev = int(eb.t[row - 1]) if row > 0 else last_t
        raise EventsError(
            f"events: column 't' decreases at row {where} ({int(eb.t[row])} after {prev}); "
            "events must be sorted by time (non-decreasing)"
        )
    if kind == ERR_TRIGGER:
        name = eb.trigger_column[row].as_py()
        what = "a null trigger" if name is None else f"unknown trigger {name!r}"
        raise EventsError(f"events: row {where} names {what} (triggers: {', '.join(schema.triggers)})")
    trig = schema.triggers[int(eb.trigger[row])]
    name = schema.inputs[column]
    if kind == ERR_COLUMN:
        raise EventsError(f"events: trigger {trig!r} sets input {name!r} but the events have no column {name!r}")
    if kind == ERR_NULL:
        raise EventsError(
            f"events: row {where} (trigger {trig!r}) has a null in column {name!r}; "
            f"trigger {trig!r} must set every one of its inputs ({', '.join(schema.trigger_inputs[trig])})"
        )
    raise AssertionError(f"unknown row error kind {kind}")


def _first_null(col: pa.Array) -> int:
    return int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])


def _time_column(col: pa.Array, offset: int) -> np.ndarray:
    typ = col.type
    if pa.types.is_timestamp(typ):
        col = col.cast(pa.timestamp("ns")).cast(pa.int64())
    elif typ != pa.int64() and pa.types.is_integer(typ):
        col = col.cast(pa.int64())
    elif typ != pa.int64():
        raise EventsError(f"events: column 't' must be int64 nanoseconds (or a timestamp), got {typ}")
    if col.null_count:
        raise EventsError(f"events: row {offset + _first_null(col)} has a null in column 't'")
    return np.frombuffer(col.buffers()[1], dtype=np.int64, count=col.offset + len(col))[col.offset :]


def _trigger_codes(col: pa.Array, triggers: list[str], offset: int) -> tuple[np.ndarray, np.ndarray | None]:
    typ = col.type
    if col.null_count:
        raise EventsError(
            f"events: row {offset + _first_null(col)} names a null trigger (triggers: {', '.join(triggers)})"
        )
    if pa.types.is_dictionary(typ) and (pa.types.is_string(typ.value_type) or pa.types.is_large_string(typ.value_type)):
        # map the (small) dictionary once; rows keep their integer indices: no per-row string hashing
        mapping = pc.index_in(col.dictionary, value_set=pa.array(triggers, type=typ.value_type))
        remap = mapping.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32)
        indices = col.indices
        width = indices.type.bit_width
        if width > 32 or not pa.types.is_signed_integer(indices.type):
            indices = indices.cast(pa.int32())
            width = 32
        dtype = {8: np.int8, 16: np.int16, 32: np.int32}[width]
        codes = np.frombuffer(indices.buffers()[1], dtype=dtype, count=indices.offset + len(indices))[indices.offset :]
        return codes, remap
    if not (pa.types.is_string(typ) or pa.types.is_large_string(typ)):
        raise EventsError(f"events: column 'trigger' must hold strings (trigger names), got {typ}")
    codes = pc.index_in(col, value_set=pa.array(triggers, type=col.type))
    return codes.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32, copy=False), None


def _list_column(col: pa.Array, name: str, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """(float64 child values, int32 offsets of each row into them) of a list input column, zero-copy for
    list<float64> without nulls inside the lists."""
    typ = col.type
    if pa.types.is_large_list(typ):
        col = col.cast(pa.list_(typ.value_type))
        typ = col.type
    if not pa.types.is_list(typ):
        raise EventsError(f"events: input column {name!r} must hold lists of numbers, got {typ}")
    child = col.values
    if child.null_count:
        starts = col.offsets.to_numpy()
        null_at = int(np.flatnonzero(child.is_null().to_numpy(zero_copy_only=False))[0])
        row = int(np.searchsorted(starts, null_at, side="right") - 1)
        raise EventsError(f"events: row {offset + row} has a null inside the list in column {name!r}")
    values = _input_column(child, name)
    offs = col.offsets.to_numpy()
    if offs.dtype != np.int32:
        offs = offs.astype(np.int32)
    return values, offs


def _input_column(col: pa.Array, name: str) -> np.ndarray:
    """float64 values of an input column (unspecified under nulls); zero-copy for float64 columns."""
    typ = col.type
    if pa.types.is_list(typ) or pa.types.is_large_list(typ):
        raise EventsError(f"events: input column {name!r} must be numeric, got {typ} (a list)")
    if typ == pa.float64():
        return np.frombuffer(col.buffers()[1], dtype=np.float64, count=col.offset + len(col))[col.offset :]
    if not (pa.types.is_floating(typ) or pa.types.is_integer(typ) or pa.types.is_boolean(typ)):
        raise EventsError(f"events: input column {name!r} must be numeric, got {typ}")
    # integers beyond 2^53 (e.g. exchange timestamps in ns) round to the nearest double, as C would convert them
    return col.cast(pa.float64(), safe=False).fill_null(0.0).to_numpy(zero_copy_only=False)

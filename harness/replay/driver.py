"""The replay driver: events chunk by chunk through a kernel, yielding the rows each chunk produced.

Recording (`hs.replay.record`), fitting (its leaves and the parity slice) and evaluation all replay through
`chunks`, so there is one loop that carries the kernel's state across batches, records timer rows when the
circuit has timers, shows progress, and can stop after a number of events (a bounded slice of the stream).
"""

from __future__ import annotations

import contextlib
import ctypes
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from harness.errors import EventsError
from harness.replay.events import iter_batches
from harness.streams.schema import markets_of, split

if TYPE_CHECKING:
    from harness.kernel import Kernel


@dataclass
class Chunk:
    """The rows one batch of events produced: `t`, `source` (string), the kernel's outputs."""

    rows: pa.Table
    offset: int  # position of the first row in the whole replay (events and timer rows)
    events: int  # events of the batch
    seconds: float  # time in the kernel's replay


def chunks(
    kernel: Kernel,
    events: object,
    *,
    progress: bool | None = None,
    total: int | None = None,
    max_events: int | None = None,
    label: str = "replay",
) -> Iterator[Chunk]:
    """Replay `events` (a table or an iterable of record batches) through `kernel`, continuing from its state.

    Rows: one per event, plus one per timer firing when the circuit has timers. `max_events` stops after that
    many events (the rest of the stream is never read). `progress` shows a bar (default: when stderr is a
    terminal); `total` is the number of events when known. A circuit triggered by a market the stream does not
    hold is an EventsError (`check_markets`).
    """
    timer_rows = bool(kernel.plan.timers)
    if total is None and isinstance(events, (pa.Table, pa.RecordBatch)):
        total = events.num_rows
    if max_events is not None:
        total = max_events if total is None else min(total, max_events)
    show = sys.stderr.isatty() if progress is None else progress
    offset = seen = 0
    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=True, disable=not show) as bar, _streaming_heap():
        task = bar.add_task(label, total=total)
        for batch in iter_batches(events):
            if not offset and not seen:
                check_markets(kernel, batch)
            if max_events is not None:
                batch = batch.slice(0, max_events - seen)
            clock = time.perf_counter()
            rows = kernel.replay(batch, timer_rows=timer_rows)
            seconds = time.perf_counter() - clock
            if not timer_rows:
                rows = rows.add_column(1, "source", _trigger_names(batch))
            rows = rows.set_column(1, "source", rows.column("source").cast(pa.string()))
            yield Chunk(rows, offset, batch.num_rows, seconds)
            offset += rows.num_rows
            seen += batch.num_rows
            bar.advance(task, batch.num_rows)
            del rows, batch
            release_memory()
            if max_events is not None and seen >= max_events:
                return


def release_memory() -> None:
    """Hand freed memory back to the OS after a chunk: Arrow's pool and glibc's heap keep what a chunk used,
    and the small arrays a replay keeps (recorded rows) pin it, which grew the resident size of a 10M-event
    recording to 2x what is alive (see `_streaming_heap`)."""
    pa.default_memory_pool().release_unused()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


@contextlib.contextmanager
def _streaming_heap() -> Iterator[None]:
    """While replaying chunks, glibc maps blocks >= 256 KiB on their own, so freeing a chunk's arrays returns
    them to the OS. Afterwards blocks up to 32 MiB (glibc's own ceiling) come from the heap, which keeps up to
    256 MiB freed at its top: otherwise every large tensor of training is a fresh mapping faulted in page by page
    (epochs 2.4x slower on the flagship, measured)."""
    _heap(mmap_threshold=256 << 10, trim_threshold=128 << 10)
    try:
        yield
    finally:
        release_memory()
        _heap(mmap_threshold=32 << 20, trim_threshold=256 << 20)


def _heap(mmap_threshold: int, trim_threshold: int) -> None:
    if _LIBC is not None:
        _LIBC.mallopt(_M_MMAP_THRESHOLD, mmap_threshold)
        _LIBC.mallopt(_M_TRIM_THRESHOLD, trim_threshold)


def _libc() -> ctypes.CDLL | None:
    """glibc, for malloc_trim and mallopt; None elsewhere (macOS, musl: nothing to tune)."""
    try:
        libc = ctypes.CDLL(None)
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        return libc
    except (OSError, AttributeError):
        return None


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_LIBC = _libc()


def _trigger_names(batch: pa.RecordBatch) -> pa.Array:
    return batch.column(batch.schema.get_field_index("trigger")).cast(pa.string())


def check_markets(kernel: Kernel, batch: pa.RecordBatch) -> None:
    """Raise EventsError when the kernel triggers on a market (`m.book`) that a stream of named markets lacks:
    its outputs would stay null. The markets are those of the trigger column's dictionary (a plain string
    column, or a stream without market names, is not checked)."""
    index = batch.schema.get_field_index("trigger")
    if index < 0 or not pa.types.is_dictionary(batch.schema.field(index).type):
        return
    held = markets_of(batch.column(index))
    if not any(m is not None for m in held):
        return
    mine = list(dict.fromkeys(m for m in (split(t)[0] for t in kernel.triggers) if m is not None))
    missing = [m for m in mine if m not in held]
    if missing:
        triggers = [t for t in kernel.triggers if split(t)[0] in missing]
        shown = ", ".join("(without a name)" if m is None else m for m in held)
        raise EventsError(
            f"events: kernel {kernel.name!r} triggers on {triggers} of market(s) {', '.join(map(repr, missing))}, "
            f"which the stream does not hold (its markets: {shown}); merge that market's stream in "
            "(hs.streams.merge) or replay a circuit of the stream's markets"
        )

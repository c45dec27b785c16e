"""`hs.replay.record`: replay events through a kernel, keep the sampled rows, attach labels.

Runs chunk by chunk (the kernel carries its state), so memory holds the sampled rows and, per labelled
output, only the rows where its value changes: not the whole replay. With `shards=` the time range is cut
into shards replayed by fresh kernels on an engine (`harness.replay.shards`, `harness.replay.sharded`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from harness.replay.driver import chunks
from harness.replay.labels import Label
from harness.replay.recorder import Recorder, Recording, RowSink, sink_of
from harness.replay.sampling import Sampler, every_event
from harness.replay.sharded import record_sharded
from harness.replay.shards import ShardError

if TYPE_CHECKING:
    from harness.kernel import Kernel

__all__ = ["Recorder", "Recording", "RowSink", "record"]


def record(
    kernel: Kernel,
    events: object,
    *,
    sampler: Sampler | None = None,
    labels: Sequence[Label | tuple] = (),
    outputs: Sequence[str] | None = None,
    progress: bool | None = None,
    row_index: bool = False,
    on_rows: Callable[[pa.Table, int], None] | RowSink | None = None,
    total: int | None = None,
    shards: Any = None,
    optional: Sequence[Label | tuple] = (),
) -> Recording:
    """Replay `events` through `kernel` (continuing from its state), sample rows and attach labels.

    `sampler` defaults to every event. `labels` are `Label`s or tuples `(output, horizons[, kind])`.
    `outputs` chooses the recorded output columns (default: all). `progress` shows a bar per chunk
    (default: when stderr is a terminal; `total`: the number of events, when known). Rows whose labels are
    incomplete are dropped and counted; `optional` labels (e.g. longer horizons for a report) are NaN where
    incomplete and drop nothing.
    `row_index=True` adds a `row` column: the row's position in the whole replay (events and timer rows).
    `on_rows(rows, offset)` (a function, or a `RowSink`) sees every replayed chunk (t, source, outputs) before
    sampling, with the position of its first row: fitting uses it to keep the rows where decays step.
    `shards` (a `hs.replay.Sharding`) splits the time range into shards, each replayed from a fresh kernel
    after a warm-up, on the engine it names (`harness.replay.shards`; the kernel starts from reset, not from its
    current state); `events` must then be re-openable per shard (a table, a `ShardSource` or a function).
    """
    sampler = sampler if sampler is not None else every_event()
    if shards is not None and on_rows is not None and not isinstance(on_rows, RowSink):
        raise ShardError("record: with shards, on_rows must be a hs.replay.RowSink (a worker fills one per shard)")
    rec = Recorder(kernel, sampler, labels, outputs, row_index=row_index, sink=sink_of(on_rows), optional=optional)
    if shards is not None:
        return record_sharded(kernel, events, rec, shards, progress=progress)
    replay_s = 0.0
    for chunk in chunks(kernel, events, progress=progress, total=total):
        replay_s += chunk.seconds
        rec.own(chunk.rows)
    return rec.finish(replay_s, t_end=rec.t_last)

"""Event sources a shard's worker can re-open by description, one time range at a time.

A sharded replay never pickles a big table to its workers: it sends a `ShardSource`, which each worker opens
itself and reads from its warm-up start to its lookahead end. `read(lo, hi)` gives the events with `t >= lo`
(None: from the first) up to and including the first event with `t > hi` (None: to the end): that one event
past the lookahead makes every timer due before it fire, as in the serial replay.

    TableSource(table)            an in-memory table (serial engine; process engines get an `IpcSource` copy)
    IpcSource(path)               an Arrow IPC file, memory-mapped by each worker (zero copy)
    CatalogSource(root, markets)  a date range of a market-data catalog (`harness data import`)
    BatchesSource(fn, key)        a function giving a fresh pass over record batches (e.g. the synthetic stream:
                                  each worker regenerates it up to its range; `key` names its content for reuse)
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from harness.errors import HarnessError
from harness.events import iter_batches
from harness.streams import catalog
from harness.streams.content_digest import digest as content_digest

BATCH = 100_000  # events per batch a worker replays


class ShardSource:
    """Events by description: their time span, a time range as batches, a column scan for planning."""

    def span(self) -> tuple[int, int]:
        """(first t, last t) of the events; HarnessError when there are none."""
        raise NotImplementedError

    def batches(self) -> Iterator[pa.RecordBatch]:
        """Every event in time order, as record batches."""
        raise NotImplementedError

    def read(self, lo: int | None, hi: int | None) -> Iterator[pa.RecordBatch]:
        """The events with t >= lo, up to and including the first event with t > hi (None: open)."""
        return cut(self.batches(), lo, hi)

    def scan(self, columns: Sequence[str]) -> Iterator[pa.RecordBatch]:
        """The named columns of every event (planning a sharded replay reads only these)."""
        for batch in self.batches():
            yield batch.select([c for c in columns if c in batch.schema.names])

    def key(self, lo: int | None, hi: int | None) -> str | None:
        """A digest of what `read(lo, hi)` gives, for reusing a finished shard (None: not known without reading)."""
        return None

    def shipped(self, folder: Path) -> ShardSource:
        """This source as another process can open it (a table is written once to an Arrow IPC file in `folder`)."""
        return self


def cut(batches: Iterable[pa.RecordBatch], lo: int | None, hi: int | None) -> Iterator[pa.RecordBatch]:
    """Record batches in time order restricted to t >= lo, ending with the first event with t > hi."""
    for batch in batches:
        if not batch.num_rows:
            continue
        t = batch.column(batch.schema.get_field_index("t")).to_numpy()
        start = 0 if lo is None else int(np.searchsorted(t, lo, "left"))
        if start >= batch.num_rows:
            continue
        if hi is not None and t[-1] > hi:
            stop = int(np.searchsorted(t, hi, "right")) + 1  # the first event past hi, included
            yield batch.slice(start, max(stop - start, 0))
            return
        yield batch.slice(start)


def _span_of(t: np.ndarray, what: str) -> tuple[int, int]:
    if not len(t):
        raise HarnessError(f"{what}: no events to shard")
    return int(t[0]), int(t[-1])


class TableSource(ShardSource):
    """An events table held in memory (what `hs.replay.record(kernel, table, shards=...)` wraps)."""

    def __init__(self, table: pa.Table | pa.RecordBatch, batch_size: int = BATCH) -> None:
        self.table = pa.Table.from_batches([table]) if isinstance(table, pa.RecordBatch) else table
        self.batch_size = batch_size

    def span(self) -> tuple[int, int]:
        return _span_of(self.table.column("t").to_numpy(), "events table")

    def batches(self) -> Iterator[pa.RecordBatch]:
        return iter(self.table.to_batches(max_chunksize=self.batch_size))

    def read(self, lo: int | None, hi: int | None) -> Iterator[pa.RecordBatch]:
        t = self.table.column("t").to_numpy()
        start = 0 if lo is None else int(np.searchsorted(t, lo, "left"))
        stop = len(t) if hi is None else min(len(t), int(np.searchsorted(t, hi, "right")) + 1)
        return iter(self.table.slice(start, max(stop - start, 0)).to_batches(max_chunksize=self.batch_size))

    def scan(self, columns: Sequence[str]) -> Iterator[pa.RecordBatch]:
        return iter(self.table.select([c for c in columns if c in self.table.schema.names]).to_batches())

    def key(self, lo: int | None, hi: int | None) -> str | None:
        return content_digest(list(self.read(lo, hi)))

    def shipped(self, folder: Path) -> ShardSource:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"events-{uuid.uuid4().hex[:12]}.arrow"
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, self.table.schema) as writer:
            for batch in self.table.to_batches(max_chunksize=self.batch_size):
                writer.write_batch(batch)
        return IpcSource(str(path), self.batch_size)


class IpcSource(TableSource):
    """An Arrow IPC file of events, memory-mapped when opened (each worker maps it; nothing is copied)."""

    def __init__(self, path: str, batch_size: int = BATCH) -> None:
        self.path = path
        self.batch_size = batch_size
        self._table: pa.Table | None = None

    @property
    def table(self) -> pa.Table:  # type: ignore[override]
        if self._table is None:
            self._table = pa.ipc.open_file(pa.memory_map(self.path)).read_all()
        return self._table

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "batch_size": self.batch_size, "_table": None}

    def shipped(self, folder: Path) -> ShardSource:
        return self


@dataclass
class CatalogSource(ShardSource):
    """A date range of a market-data catalog: each worker reads the days its range touches (one market: only the
    row groups from its warm-up start on; several: merged as `hs.data.read` merges them)."""

    root: str
    markets: tuple[str, ...]
    start: str | None = None
    end: str | None = None
    verify: bool = True
    batch_size: int = BATCH

    def _parts(self) -> list[catalog.Partition]:
        return catalog.partitions(self.root, list(self.markets), self.start, self.end)

    def span(self) -> tuple[int, int]:
        parts = self._parts()
        if not parts:
            raise HarnessError(
                f"catalog {self.root}: no events of {list(self.markets)} from {self.start} to {self.end}"
            )
        return min(p.t_first for p in parts), max(p.t_last for p in parts)

    def batches(self) -> Iterator[pa.RecordBatch]:
        return catalog.read(self.root, list(self.markets), self.start, self.end, batch_size=self.batch_size,
                            verify=self.verify)  # fmt: skip

    def read(self, lo: int | None, hi: int | None) -> Iterator[pa.RecordBatch]:
        if len(self.markets) != 1:
            return cut(self.batches(), lo, hi)
        return cut(self._one_market(lo, hi), lo, hi)

    def _one_market(self, lo: int | None, hi: int | None) -> Iterator[pa.RecordBatch]:
        """One market's events for `read(lo, hi)`: the partitions inside the range read whole (and checked against
        their digests), the ones it cuts only in the row groups that can hold its ends (by the row groups'
        statistics of `t`), up to the partition holding the first event past `hi`."""
        for p in self._parts():
            if lo is not None and p.t_last < lo:
                continue
            if (lo is None or p.t_first >= lo) and (hi is None or p.t_last <= hi):
                yield from catalog.read(self.root, list(self.markets), p.date, p.date, batch_size=self.batch_size,
                                        verify=self.verify)  # fmt: skip
            else:
                yield from _row_groups(Path(self.root) / p.file, lo, hi, self.batch_size)
            if hi is not None and p.t_last > hi:
                return  # this partition holds the first event past hi

    def scan(self, columns: Sequence[str]) -> Iterator[pa.RecordBatch]:
        if len(self.markets) != 1:
            yield from super().scan(columns)
            return
        import pyarrow.dataset as ds  # here: it loads pandas, which importing harness.replay does not need

        for p in self._parts():
            fragment = ds.dataset(str(Path(self.root) / p.file), format="parquet")
            kept = [c for c in columns if c in fragment.schema.names]
            yield from fragment.to_batches(columns=kept, batch_size=1 << 20, use_threads=False)

    def key(self, lo: int | None, hi: int | None) -> str | None:
        """The partitions' manifest digests and the range: a partition's content is checked against its digest."""
        parts = [(p.market, p.date, p.digest) for p in self._parts()]
        text = json.dumps({"parts": parts, "lo": lo, "hi": hi}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


def _row_groups(path: Path, lo: int | None, hi: int | None, batch_size: int) -> Iterator[pa.RecordBatch]:
    """A partition's events in the row groups that can hold t in [lo, hi] and the first one past hi (rows are in
    time order: the row groups' statistics of `t` decide), in the exact market schema; `cut` trims the ends."""
    pf = pq.ParquetFile(str(path))
    t_index = pf.schema_arrow.get_field_index("t")
    groups = []
    for i in range(pf.metadata.num_row_groups):
        stats = pf.metadata.row_group(i).column(t_index).statistics
        known = stats is not None and stats.has_min_max
        if known and lo is not None and stats.max < lo:
            continue
        groups.append(i)
        if known and hi is not None and stats.min > hi:
            break  # it holds the first event past hi
    if not groups:
        return
    for batch in pf.iter_batches(batch_size=batch_size, row_groups=groups, columns=catalog.schema.SCHEMA.names,
                                 use_threads=False):  # fmt: skip
        if batch.num_rows:
            yield catalog.normal_batch(batch)


class BatchesSource(ShardSource):
    """A function giving a fresh pass over the events (each worker calls it and skips to its range); `key`, when
    given, names the content (e.g. a generator's settings) so finished shards can be reused."""

    def __init__(self, fn: Callable[[], Iterable[pa.RecordBatch | pa.Table]], key: str | None = None) -> None:
        self.fn = fn
        self.name = key

    def batches(self) -> Iterator[pa.RecordBatch]:
        return iter_batches(self.fn())

    def span(self) -> tuple[int, int]:
        first = last = None
        for batch in self.scan(["t"]):
            if batch.num_rows:
                t = batch.column(0)
                first = int(t[0].as_py()) if first is None else first
                last = int(t[-1].as_py())
        if first is None or last is None:
            raise HarnessError("events: no events to shard")
        return first, last

    def key(self, lo: int | None, hi: int | None) -> str | None:
        if self.name is None:
            return None
        return hashlib.sha256(json.dumps({"source": self.name, "lo": lo, "hi": hi}).encode()).hexdigest()


def source_of(events: object) -> ShardSource:
    """A ShardSource for `events`: one already, a table, a batch, or a function giving fresh passes."""
    if isinstance(events, ShardSource):
        return events
    if isinstance(events, (pa.Table, pa.RecordBatch)):
        return TableSource(events)
    shard_source = getattr(events, "shard_source", None)  # the pipeline's Events
    if isinstance(shard_source, ShardSource):
        return shard_source
    if callable(events):
        return BatchesSource(events)  # type: ignore[arg-type]
    raise HarnessError(
        f"a sharded replay needs events it can re-open per shard: a pyarrow Table, a ShardSource "
        f"(hs.replay.CatalogSource, ...) or a function returning a fresh pass, got {type(events).__name__}"
    )


def trigger_counts(batches: Iterable[pa.RecordBatch], trigger: str, bounds: Sequence[int]) -> list[int]:
    """How many events of `trigger` have t < each bound (bounds increasing)."""
    counts = np.zeros(len(bounds), dtype=np.int64)
    edges = np.asarray(bounds, dtype=np.int64)
    for batch in batches:
        t = batch.column(batch.schema.get_field_index("t")).to_numpy()
        hit = pc.equal(batch.column(batch.schema.get_field_index("trigger")).cast(pa.string()), trigger)
        th = t[hit.to_numpy(zero_copy_only=False)]
        counts += np.searchsorted(th, edges, "left")
    return [int(c) for c in counts]

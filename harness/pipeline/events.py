"""The events a pipeline run replays (`Events`): what a stream function of `conf/stream/*.yaml` gives the pipeline.

A stream function returns a pyarrow Table of events (the pipeline cuts it into record batches) or an `Events`
(for streams that regenerate their batches on each pass, like the synthetic one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from harness import streams
from harness.pipeline.targets import ConfigError
from harness.replay.sources import BatchesSource, ShardSource, TableSource
from harness.streams.content_digest import StreamDigest

DEFAULT_CHUNK = 100_000  # events per record batch of the replay


class Events:
    """A loaded stream: how to iterate it, its content digest, a description for the run, its files.

    A file stream is held as one table; a synthetic stream is regenerated on each pass (it is a pure function
    of its seed and settings), so 10M+ events never sit in memory at once. The digest is computed along the
    first complete pass (the replay that records the run), or by a pass of its own when asked for first.
    """

    def __init__(
        self,
        source_batches: Callable[[], Iterator[pa.RecordBatch]],
        rows: int,
        source: str,
        files: list[str],
        digest: str | None = None,
        shard_source: ShardSource | None = None,
    ) -> None:
        self.source_batches = source_batches
        self.shard_source = shard_source or BatchesSource(source_batches)  # how a sharded replay re-opens it
        self.rows = rows
        self.source = source  # e.g. "synthetic(events=300000, seed=0)" or the first file's path
        self.files = files
        self._digest = digest
        self.markets: list[str | None] | None = None  # the markets the stream holds, where its loader knows them
        self.trigger_counts: dict[str, int] | None = None  # events per trigger, counted along a complete pass

    @classmethod
    def from_table(
        cls, table: pa.Table, source: str, files: list[str], chunk: int = DEFAULT_CHUNK, limit: int | None = None
    ) -> Events:
        """The events of a table: its first `limit` rows (all when None), in batches of `chunk` rows."""
        if int(chunk) <= 0:
            raise ConfigError(f"stream.chunk={chunk} must be > 0")
        if limit is not None:
            table = table.slice(0, int(limit))
        if table.num_rows == 0:
            raise ConfigError(f"stream ({source}): no events")
        batches = lambda: iter(table.to_batches(max_chunksize=int(chunk)))  # noqa: E731
        out = cls(batches, table.num_rows, source, files, shard_source=TableSource(table, int(chunk)))
        if "trigger" in table.column_names:
            out.markets = streams.schema.markets_of(table.column("trigger"))
        return out

    def market_names(self) -> list[str | None]:
        """The markets of the stream (None: a stream without a market name): as its loader knows them, else from
        the trigger column of its first batch."""
        if self.markets is None:
            first = next(iter(self.source_batches()), None)
            self.markets = [] if first is None else streams.schema.markets_of(first.column("trigger"))
        return self.markets

    @property
    def digest(self) -> str:
        """The content digest of the whole stream (`hs.streams.digest`)."""
        if self._digest is None:
            self._digest = streams.digest(self.source_batches())
        return self._digest

    def __call__(self) -> Iterator[pa.RecordBatch]:
        """A fresh pass (an Events is what `hs.fit.fit` takes: a function returning one)."""
        return self.batches()

    def batches(self) -> Iterator[pa.RecordBatch]:
        """A fresh pass over the events as record batches (what the replay consumes); a first complete pass
        also computes the digest and counts the events of each trigger."""
        if self._digest is not None and self.trigger_counts is not None:
            yield from self.source_batches()
            return
        d = None if self._digest is not None else StreamDigest()
        counts: dict[str, int] = {}
        for batch in self.source_batches():
            if d is not None:
                d.add(batch)
            _count(batch, counts)
            yield batch
        if d is not None:
            self._digest = d.hexdigest()
        self.trigger_counts = counts


def _count(batch: pa.RecordBatch, counts: dict[str, int]) -> None:
    """Add the events of each trigger in `batch` to `counts`."""
    col = batch.column("trigger") if "trigger" in batch.schema.names else None
    if col is None:
        return
    if pa.types.is_dictionary(col.type):
        found = np.bincount(col.indices.to_numpy(zero_copy_only=False).astype(np.int64), minlength=len(col.dictionary))
        for name, n in zip(col.dictionary.to_pylist(), found.tolist(), strict=True):
            if n:
                counts[name] = counts.get(name, 0) + n
        return
    for item in pc.value_counts(col).to_pylist():
        counts[str(item["values"])] = counts.get(str(item["values"]), 0) + int(item["counts"])

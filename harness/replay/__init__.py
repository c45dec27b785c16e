"""Replay support: the events-table contract shared by every backend, samplers and labels (`hs.replay`).

rec = hs.replay.record(kernel, events, sampler=hs.replay.every_n(10), labels=[("mid", (1.0, 5.0), "return")])
rec.table      # t, source, outputs, label_mid_return_1s, label_mid_return_5s
rec.dropped    # {"no_horizon": ..., "invalid_label": ...}

rec = hs.replay.record(kernel, events, ..., shards=hs.replay.Sharding(every_s=86400, engine="local"))
rec.shards     # per shard: range, warm-up, rows, worker, the boundary check (harness/replay/shards.py)
"""

from harness.replay.labels import KINDS, Label, LabelError, label_name
from harness.replay.memory import Memory, memory
from harness.replay.record import Recording, RowSink, record
from harness.replay.sampling import Sampler, SamplerError, every_event, every_n, time_grid, when
from harness.replay.shards import ShardError, ShardInfo, Sharding, ShardWarning
from harness.replay.sources import BatchesSource, CatalogSource, ShardSource, TableSource

__all__ = [
    "KINDS",
    "BatchesSource",
    "CatalogSource",
    "Label",
    "LabelError",
    "Memory",
    "Recording",
    "RowSink",
    "Sampler",
    "SamplerError",
    "ShardError",
    "ShardInfo",
    "ShardSource",
    "ShardWarning",
    "Sharding",
    "TableSource",
    "every_event",
    "every_n",
    "label_name",
    "memory",
    "record",
    "time_grid",
    "when",
]

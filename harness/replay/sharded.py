"""The driver of a sharded recording (`hs.replay.record(..., shards=Sharding(...))`): plan the shards, run them
on the engine, merge them (the guarantees are in `harness.replay.shards`)."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

from harness.replay import engines
from harness.replay.memory import memory
from harness.replay.recorder import Recorder, Recording
from harness.replay.shards import KernelSpec, ShardError, Sharding, ShardTask, merge, plan
from harness.replay.sources import source_of

if TYPE_CHECKING:
    from harness.backends.interface import Kernel


def record_sharded(kernel: Kernel, events: object, rec: Recorder, how: Sharding, progress: bool | None) -> Recording:
    """`hs.replay.record` with `shards=`: plan, run the shards on the engine, merge, check the boundaries."""
    if not isinstance(how, Sharding):
        raise ShardError(f"record: shards must be a hs.replay.Sharding, got {type(how).__name__}")
    source = source_of(events)
    lookahead = max((lab_h for lab in (*rec.labs, *rec.optional) for lab_h in lab.horizons), default=0.0)
    shards = plan(kernel, source, how, lookahead, rec.sampler.counted())
    mem = memory(kernel)
    check_ns = round(how.check_s * 1e9)
    spec = KernelSpec.of(kernel)
    t_end = source.span()[1]
    tasks = [
        ShardTask(spec, source, sh, _task_recorder(rec), t_end, check_ns, compare=how.check != "off") for sh in shards
    ]
    results = engines.run(tasks, how, progress=progress)
    return merge(results, rec, shards, mem, how)


def _task_recorder(rec: Recorder) -> Recorder:
    """A copy of the (empty) recorder for one shard, with a fresh sink."""
    out = copy.copy(rec)
    out.sink = rec.sink.fresh() if rec.sink is not None else None
    return out

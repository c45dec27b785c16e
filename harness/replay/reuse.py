"""Finished shards kept on disk and reused when a sharded replay runs again with the same inputs.

A shard's entry is keyed by a digest of everything its rows depend on: the kernel's cache key and parameter
values, the shard's range, warm-up and lookahead, the digest of the events it reads (`ShardSource.key`: a
catalog's partition digests, a table's content digest), the sampler, labels, outputs and sink. A source that
cannot name its content without reading it (a plain function) is never reused. An entry is written in a
temporary folder and renamed into place, so a killed run leaves no half entry:

    <reuse_dir>/<key>/recording.parquet   the sampled rows with their labels (row positions from the shard's start)
                      head.parquet, tail.parquet   the rows of the boundary check
                      sink.pickle         what the recording's sink kept (fitting: the step domains' rows)
                      meta.json           counts, seconds, the worker
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import uuid
from pathlib import Path

import pyarrow.parquet as pq

from harness.replay.recorder import Recording
from harness.replay.shards import ShardResult, ShardTask

FORMAT = "harness.shard/1"


def key(task: ShardTask) -> str | None:
    """The digest a finished shard is stored under (None when its events cannot be named without reading them)."""
    sh = task.shard
    events = task.source.key(sh.warm, sh.until)
    if events is None:
        return None
    rec = task.recorder
    what = {
        "format": FORMAT,
        "kernel": task.kernel.key,
        "params": sorted(task.kernel.params.items()),
        "shard": [sh.start, sh.end, sh.warm, sh.until, sh.seen],
        "events": events,
        "sampler": repr(rec.sampler),
        "labels": [repr(lab) for lab in rec.labs] + [f"optional {lab!r}" for lab in rec.optional],
        "columns": rec.columns,
        "sink": type(rec.sink).__qualname__ if rec.sink is not None else None,
        "sink_key": getattr(rec.sink, "reuse_key", lambda: None)() if rec.sink is not None else None,
        # the labels look at the whole replay's last time only where it falls before the shard's lookahead ends
        "t_end": task.t_end if sh.until is None or task.t_end < sh.until else None,
        "check": [task.check_ns, task.compare],
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()


def load(folder: str | None, task: ShardTask) -> ShardResult | None:
    """The stored result of `task`'s shard, or None (no reuse folder, no entry, or an unreadable one)."""
    k = key(task) if folder else None
    if k is None:
        return None
    path = Path(folder) / k  # type: ignore[arg-type]
    try:
        meta = json.loads((path / "meta.json").read_text())
        table = pq.read_table(path / "recording.parquet")
        head = pq.read_table(path / "head.parquet") if (path / "head.parquet").exists() else None
        tail = pq.read_table(path / "tail.parquet") if (path / "tail.parquet").exists() else None
        sink = pickle.loads((path / "sink.pickle").read_bytes()) if (path / "sink.pickle").exists() else None
    except (OSError, ValueError, pickle.UnpicklingError, EOFError):
        return None
    recording = Recording(table=table, labels=meta["labels"], rows=meta["rows"], replay_s=meta["replay_s"],
                          sampled=meta["sampled"], dropped=meta["dropped"])  # fmt: skip
    return ShardResult(task.shard.index, recording, sink, head, tail, meta["warm_s"], meta["seconds"], meta["worker"],
                       reused=True)  # fmt: skip


def store(folder: str | None, task: ShardTask, res: ShardResult) -> None:
    """Keep a finished shard under its key (written aside, then renamed into place)."""
    k = key(task) if folder else None
    if k is None:
        return
    root = Path(folder)  # type: ignore[arg-type]
    final = root / k
    if final.exists():
        return
    tmp = root / ".tmp" / f"{k[:16]}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir(parents=True)
        r = res.recording
        pq.write_table(r.table, tmp / "recording.parquet")
        for name, table in (("head", res.head), ("tail", res.tail)):
            if table is not None:
                pq.write_table(table, tmp / f"{name}.parquet")
        if res.sink is not None:
            (tmp / "sink.pickle").write_bytes(pickle.dumps(res.sink))
        meta = {"labels": r.labels, "rows": r.rows, "replay_s": r.replay_s, "sampled": r.sampled,
                "dropped": r.dropped, "warm_s": res.warm_s, "seconds": res.seconds, "worker": res.worker}  # fmt: skip
        (tmp / "meta.json").write_text(json.dumps(meta))
        os.rename(tmp, final)
    except OSError:
        pass  # another run stored it meanwhile, or the folder is not writable: nothing is lost but the reuse
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

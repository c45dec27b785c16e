"""Execution engines of a sharded replay: where the shards run.

    serial   one after the other in this process
    local    processes of this machine (joblib's loky backend; `workers` processes, default: the cores)
    ray      Ray tasks: `ray.init()` of a local instance unless one is running (or `address` names a cluster)

Each shard is one task (`harness.replay.shards.run_shard`); a table source is written once to an Arrow IPC file
that the workers memory-map (a Ray cluster needs events every node can read, e.g. a catalog on shared storage).
A progress bar over the shards shows on stderr when it is a terminal. The first shard that fails ends the run
with a ShardError naming its time range, the worker and the error; the results come back in shard order,
whatever the order the shards finish in.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from harness.replay import reuse
from harness.replay.shards import ShardError, ShardFailure, ShardResult, ShardTask, run_shard

if TYPE_CHECKING:
    from harness.replay.shards import Sharding


def workers_of(how: Sharding) -> int:
    """The number of workers: `how.workers`, else the cores this process may use."""
    if how.workers is not None:
        return int(how.workers)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def run(tasks: list[ShardTask], how: Sharding, progress: bool | None = None) -> list[ShardResult]:
    """Run the shards on `how.engine`; their results in shard order (ShardError at the first failure)."""
    results: dict[int, ShardResult] = {}
    todo = []
    for task in tasks:
        hit = reuse.load(how.reuse_dir, task)
        if hit is not None:
            results[task.shard.index] = hit
        else:
            todo.append(task)
    show = sys.stderr.isatty() if progress is None else progress
    columns = (TextColumn("shards"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=True, disable=not show) as bar, _shipped(todo, how) as ready:
        job = bar.add_task("shards", total=len(tasks), completed=len(results))
        for res in _engine(how)(ready, how):
            if isinstance(res, ShardFailure):
                raise ShardError(f"{res.shard} failed on worker {res.worker}: {res.error}")
            reuse.store(how.reuse_dir, tasks[res.index], res)
            results[res.index] = res
            bar.advance(job)
    return [results[t.shard.index] for t in tasks]


@contextmanager
def _shipped(tasks: list[ShardTask], how: Sharding) -> Iterator[list[ShardTask]]:
    """The tasks with their source in a form other processes open (a table as an IPC file, removed after)."""
    if how.engine == "serial" or not tasks:
        yield tasks
        return
    folder = Path(tempfile.mkdtemp(prefix="harness-shards-"))
    try:
        source = tasks[0].source.shipped(folder)
        for task in tasks:
            task.source = source
        yield tasks
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _engine(how: Sharding):  # type: ignore[no-untyped-def]
    return {"serial": _serial, "local": _local, "ray": _ray}[how.engine]


def _serial(tasks: list[ShardTask], how: Sharding) -> Iterator[ShardResult | ShardFailure]:
    for task in tasks:
        yield run_shard(task)


def _local(tasks: list[ShardTask], how: Sharding) -> Iterator[ShardResult | ShardFailure]:
    """joblib's loky processes: results as they finish (the pool of workers is reused between runs)."""
    from joblib import Parallel, delayed

    n = min(workers_of(how), max(1, len(tasks)))
    if n == 1 or len(tasks) <= 1:
        yield from _serial(tasks, how)
        return
    parallel = Parallel(n_jobs=n, backend="loky", return_as="generator_unordered", max_nbytes=None)
    with warnings.catch_warnings():  # a failed shard cancels the others: that is the point, not a warning
        warnings.filterwarnings("ignore", message=".*tasks which were still being processed", category=UserWarning)
        yield from parallel(delayed(run_shard)(task) for task in tasks)


def _ray(tasks: list[ShardTask], how: Sharding) -> Iterator[ShardResult | ShardFailure]:
    """Ray tasks, one per shard; a local instance is started when none is running (and left for the next run)."""
    try:
        import ray
    except ImportError:
        raise ShardError("execution=ray needs Ray: pip install 'ray>=2.9'") from None
    if not ray.is_initialized():
        cpus = None if how.address else workers_of(how)
        ray.init(address=how.address or None, num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    remote = ray.remote(num_cpus=1, max_retries=0)(run_shard)
    pending = [remote.remote(task) for task in tasks]
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                yield ray.get(ref)
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)

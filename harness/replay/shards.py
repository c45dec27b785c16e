"""Sharded recording: the time range cut into shards, each replayed by its own kernel after a warm-up.

    rec = hs.replay.record(kernel, events, sampler=..., labels=..., shards=hs.replay.Sharding(every_s=86400,
                           engine="local", workers=2))

Shard i owns the rows with `start_i <= t < end_i` (the first shard starts at the first event, the last ends
after the last). Its worker builds the kernel from the cache by its key, replays the events from `start_i - W`
(the warm-up; a circuit with an order book reaches back further, to the book's last snapshot message before
`start_i`), records and samples the rows of its range, and goes on past `end_i` by the lookahead (the longest
label horizon, at least `check_s`), so labels near the end see the same future as the serial replay. A
counting sampler (`every_n`) starts at the number of its trigger's events before `start_i` (counted from the
source's `t` and `trigger` columns). The shards' rows are concatenated in time order, row positions shifted by
the rows of the shards before.

What is guaranteed (tests/test_shards.py holds each):
- A circuit whose memory is bounded (`harness.replay.memory`: timers, last values, order books rebuilt by
  snapshots; no decay, nothing unbounded) gives rows bit for bit equal to the serial replay's, whatever the
  number of shards or workers, when the warm-up covers its memory (the default does: its longest window, at
  least `MIN_WARMUP_S`, back to the book's last snapshot).
- With decays, the state before a warm-up of W seconds keeps a weight of at most 2^(-W/h) (h: the slowest
  half-life): a decayed value differs from the serial one by at most that times the difference of their
  starting values. Once that is below the rounding step the two replays round to the same numbers and stay
  equal; the default warm-up (96 half-lives) makes that all but certain, and the boundary check says whether it
  happened: it is not assumed.
- A circuit with unbounded memory (`count`, `every`'s ordinals, the book's crossed count) is refused unless
  `allow_unbounded=True`; its sharded rows then differ from the serial ones.
- Boundary check: shard i-1's lookahead rows and shard i's first rows cover the same times (at least `check_s`
  seconds); every output is compared there. A bounded circuit that differs there fails (`check="auto"`/"error":
  the warm-up is too short for it); with decays the difference is reported (`ShardInfo`, a `ShardWarning`).
"""

from __future__ import annotations

import math
import os
import socket
import time
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from harness.errors import HarnessError
from harness.replay.driver import chunks
from harness.replay.memory import DEFAULT_HALFLIVES, MIN_WARMUP_S, Memory, memory
from harness.replay.recorder import Recorder, Recording, RowSink
from harness.replay.sources import ShardSource

if TYPE_CHECKING:
    from harness.backends.interface import Kernel
    from harness.circuit.builder import Circuit

CHECK_S = 1.0  # seconds of rows compared at each boundary (more when a label looks further ahead)
ENGINES = ("serial", "local", "ray")
DAY_S = 86_400.0


class ShardError(HarnessError):
    """A sharded replay cannot be planned (bad settings, unbounded memory) or a shard failed."""


class ShardWarning(UserWarning):
    """A sharded replay's rows may differ from the serial replay's (decays not yet equal at a boundary)."""


@dataclass(frozen=True)
class Sharding:
    """How to shard a replay: shards of `every_s` seconds (aligned to multiples of it since the epoch, so 86400
    gives UTC days) or `count` shards of equal time; the warm-up (None: derived from the circuit's memory);
    the engine ("serial", "local": processes of this machine, "ray": Ray tasks) and its workers."""

    every_s: float | None = None
    count: int | None = None
    warmup_s: float | None = None
    halflives: int = DEFAULT_HALFLIVES
    min_warmup_s: float = MIN_WARMUP_S
    allow_unbounded: bool = False
    check: str = "auto"  # "auto" (error when bounded, warn with decays), "error", "warn", "off"
    check_s: float = CHECK_S
    engine: str = "serial"
    workers: int | None = None  # None: the machine's cores
    address: str | None = None  # ray: a cluster's address (None: a local instance)
    reuse_dir: str | None = None  # finished shards' recordings, reused when their inputs are unchanged

    def __post_init__(self) -> None:
        if (self.every_s is None) == (self.count is None):
            raise ShardError("sharding: give one of every_s (seconds per shard, 86400: days) or count (shards)")
        if self.every_s is not None and not (math.isfinite(self.every_s) and self.every_s > 0):
            raise ShardError(f"sharding: every_s={self.every_s!r} must be a number of seconds > 0")
        if self.count is not None and (
            isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1
        ):
            raise ShardError(f"sharding: count={self.count!r} must be an integer >= 1")
        if self.warmup_s is not None and not (math.isfinite(self.warmup_s) and self.warmup_s >= 0):
            raise ShardError(f"sharding: warmup_s={self.warmup_s!r} must be a number of seconds >= 0")
        if self.engine not in ENGINES:
            raise ShardError(f"sharding: engine={self.engine!r} is not one of {', '.join(ENGINES)}")
        if self.check not in ("auto", "error", "warn", "off"):
            raise ShardError(f"sharding: check={self.check!r} is not one of auto, error, warn, off")
        if self.workers is not None and (isinstance(self.workers, bool) or self.workers < 1):
            raise ShardError(f"sharding: workers={self.workers!r} must be an integer >= 1")


@dataclass(frozen=True)
class Shard:
    """One shard: the rows with start <= t < end (None: open) replayed from `warm` to `until` (the lookahead)."""

    index: int
    start: int | None
    end: int | None
    warm: int | None
    until: int | None
    seen: int = 0  # events of the sampler's counted trigger before `start`

    def describe(self) -> str:
        """`shard 2 (2024-08-08T00:00 .. 2024-08-09T00:00)`: its number (from 1) and range."""
        return f"shard {self.index + 1} ({_iso(self.start, 'start')} .. {_iso(self.end, 'end')})"


def _iso(t: int | None, open_end: str) -> str:
    if t is None:
        return open_end
    dt = datetime.fromtimestamp(t // 10**9, tz=UTC).replace(microsecond=(t % 10**9) // 1000)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0").rstrip(".").removesuffix(":00")


@dataclass
class ShardInfo:
    """What one shard did, and how its first rows compared with the previous shard's lookahead."""

    index: int
    range: str
    warm_s: float  # seconds of warm-up replayed before its range
    rows: int
    sampled: int
    kept: int
    seconds: float  # wall seconds in its worker
    worker: str
    reused: bool = False
    compared: int = 0  # rows compared with the previous shard's lookahead
    differing: int = 0  # values (rows x outputs) that differ there
    max_abs_diff: float = 0.0


# ----- planning ---------------------------------------------------------------------------------------------
def boundaries(first: int, last: int, how: Sharding) -> list[int]:
    """The shard boundaries strictly inside (first, last]: multiples of every_s, or `count` equal parts."""
    if how.count is not None:
        span = last - first + 1
        return sorted({first + (span * k) // how.count for k in range(1, how.count)} - {first})
    step = round(float(how.every_s) * 1e9)  # type: ignore[arg-type]
    b = (first // step + 1) * step
    out = []
    while b <= last:
        out.append(b)
        b += step
    return out


def warmup_s(mem: Memory, how: Sharding) -> float:
    """The warm-up of each shard: `how.warmup_s`, else derived from the circuit's memory."""
    return float(how.warmup_s) if how.warmup_s is not None else mem.warmup_s(how.halflives, how.min_warmup_s)


def plan(kernel: Kernel, source: ShardSource, how: Sharding, lookahead_s: float, counted: str | None) -> list[Shard]:
    """The shards of a replay of `source`: ranges, warm-up starts, the lookahead, and the counted trigger's
    events before each shard. With one order book, a boundary moves to the book's first snapshot message at or
    after it (when one comes before the next boundary), so the book restarts from the snapshot the serial
    replay sees; otherwise (or with several books) the warm-up reaches back to each book's last snapshot. The
    warm-up covers W seconds before the start and before each trigger's last event before it (a decay stores
    its value as of its last sample: over a gap in the events it forgets nothing), and the last two events of
    every trigger (inputs and `delta` keep last values)."""
    mem = memory(kernel)
    if mem.unbounded and not how.allow_unbounded:
        raise ShardError(
            f"circuit {kernel.name!r} remembers everything since the start in {', '.join(mem.unbounded)}: a shard "
            "cannot reproduce it; replay it serially, or accept differing rows with allow_unbounded=True "
            "(execution.allow_unbounded=true)"
        )
    if mem.unbounded:
        warnings.warn(
            f"sharding circuit {kernel.name!r} although {', '.join(mem.unbounded)} remember everything since the "
            "start (allow_unbounded): their values differ from a serial replay's",
            ShardWarning,
            stacklevel=4,
        )
    first, last = source.span()
    cuts = boundaries(first, last, how)
    warm_ns = round(warmup_s(mem, how) * 1e9)
    ahead_ns = round(max(lookahead_s, how.check_s) * 1e9)
    scan = _Scan(kernel.triggers, counted, mem.snapshots, cuts)
    if cuts:
        scan.run(source)
    if len(mem.snapshots) == 1:
        cuts = _at_snapshots(cuts, scan.snaps[0], last)
    shards = []
    for i, (start, end) in enumerate(zip([None, *cuts], [*cuts, None], strict=True)):
        warm, seen = None, 0
        if start is not None:
            at = scan.at[start]
            warm = min([start - warm_ns, *(t - warm_ns for t in at.last), *at.second])
            for times in scan.snaps:
                if not (len(scan.snaps) == 1 and start in at.snapshot):
                    j = int(np.searchsorted(times, start, "left")) - 1  # the book's last snapshot before the start
                    warm = None if j < 0 or warm is None else min(warm, int(times[j]))
            seen = at.counted
        if warm is not None and warm <= first:
            warm = None
        shards.append(Shard(i, start, end, warm, None if end is None else end + ahead_ns, seen))
    return shards


def _at_snapshots(cuts: list[int], snaps: np.ndarray, last: int) -> list[int]:
    """Each boundary moved to the first snapshot at or after it, when that comes before the next boundary (else
    the boundary stays where it is)."""
    out: list[int] = []
    for k, b in enumerate(cuts):
        nxt = cuts[k + 1] if k + 1 < len(cuts) else last + 1
        j = int(np.searchsorted(snaps, b, "left"))
        moved = int(snaps[j]) if j < len(snaps) and snaps[j] < nxt else b
        if not out or moved > out[-1]:
            out.append(moved)
    return out


@dataclass
class _At:
    """The stream just before a candidate boundary: the counted trigger's events so far, the times of the last
    two events of each trigger, whether a book snapshot is at the boundary itself."""

    counted: int
    last: list[int]  # each trigger's last event before the boundary (a decay's last sample is no later)
    second: list[int]  # and its second-last
    snapshot: set[int] = field(default_factory=set)


class _Scan:
    """One pass over the `t`, `trigger` and snapshot columns, recording the stream's state at each candidate
    boundary (the nominal cuts and every snapshot message), in memory bounded by the number of candidates."""

    def __init__(self, triggers: list[str], counted: str | None, snapshots: tuple, cuts: list[int]) -> None:
        self.triggers, self.counted, self.snapshots, self.cuts = triggers, counted, snapshots, cuts
        self.snaps: list[np.ndarray] = [np.empty(0, np.int64) for _ in snapshots]
        self.at: dict[int, _At] = {}
        self.n_counted = 0
        self.recent: dict[str, np.ndarray] = {name: np.empty(0, np.int64) for name in triggers}

    def run(self, source: ShardSource) -> None:
        columns = ["t", "trigger", *sorted({col for _, col in self.snapshots})]
        parts: list[list[np.ndarray]] = [[] for _ in self.snapshots]
        for batch in source.scan(columns):
            t = batch.column(batch.schema.get_field_index("t")).to_numpy()
            trig = batch.column(batch.schema.get_field_index("trigger")).cast(pa.string())
            found = []
            for k, (trigger, col) in enumerate(self.snapshots):
                flag = pc.fill_null(pc.equal(batch.column(batch.schema.get_field_index(col)), 1.0), False)
                found.append(t[pc.and_(pc.equal(trig, trigger), flag).to_numpy(zero_copy_only=False)])
                parts[k].append(found[-1])
            hi = int(t[-1]) if len(t) else -(2**63)
            candidates = sorted(
                {c for c in self.cuts if c <= hi and c not in self.at}.union(*(f.tolist() for f in found))
            )
            self._batch(t, trig, candidates)
        self.snaps = [np.concatenate(p) if p else np.empty(0, np.int64) for p in parts]
        for c in self.cuts:  # cuts after the last event's time (or in no batch) see the end of the stream
            self.at.setdefault(c, self._state(c, {}, np.empty(0, np.int64)))
        for times in self.snaps:
            for s in times.tolist():
                if s in self.at:
                    self.at[s].snapshot.add(s)

    def _batch(self, t: np.ndarray, trig: pa.Array, candidates: list[int]) -> None:
        by_trigger = {name: t[pc.equal(trig, name).to_numpy(zero_copy_only=False)] for name in self.triggers}
        counted_t = by_trigger.get(self.counted, np.empty(0, np.int64)) if self.counted else np.empty(0, np.int64)
        for c in candidates:
            self.at.setdefault(c, self._state(c, by_trigger, counted_t))
        self.n_counted += len(counted_t)
        for name, times in by_trigger.items():
            self.recent[name] = np.concatenate([self.recent[name], times[-2:]])[-2:]

    def _state(self, c: int, by_trigger: dict[str, np.ndarray], counted_t: np.ndarray) -> _At:
        last, second = [], []
        for name in self.triggers:
            before = by_trigger.get(name, np.empty(0, np.int64))
            before = np.concatenate([self.recent[name], before[: int(np.searchsorted(before, c, "left"))]])
            if len(before):
                last.append(int(before[-1]))
                second.append(int(before[-2:][0]))
        return _At(self.n_counted + int(np.searchsorted(counted_t, c, "left")), last, second)


# ----- the kernel a worker builds -------------------------------------------------------------------------
@dataclass(frozen=True)
class KernelSpec:
    """A kernel by description: its circuit, backend, cache key, compile options and parameter values."""

    circuit: Circuit
    backend: str
    key: str
    params: dict[str, float]
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, kernel: Kernel) -> KernelSpec:
        """The spec of a compiled kernel (it has its circuit and cache key)."""
        options = dict(getattr(kernel, "options", {}) or {})
        return cls(kernel.circuit, kernel.backend, kernel.kernel_hash, kernel.params, options)

    def build(self) -> Kernel:
        """The kernel, loaded from the cache by its key (built there when missing), parameters set, reset."""
        kernel = _BUILT.get(self.key) if self.backend == "cpp" else None
        if kernel is None:
            from harness.backends import compile as compile_kernel

            kernel = compile_kernel(self.circuit, backend=self.backend, **self.options)
            if kernel.kernel_hash != self.key:
                raise ShardError(
                    f"the worker built kernel {kernel.kernel_hash[:12]} of circuit {self.circuit.name!r}, not "
                    f"{self.key[:12]}: its toolchain or harness version differs from the driver's"
                )
            if self.backend == "cpp":
                _BUILT[self.key] = kernel
        kernel.set_params(self.params)
        kernel.reset()
        return kernel


_BUILT: dict[str, Kernel] = {}  # kernels a worker process already loaded, by key


# ----- one shard, on a worker -------------------------------------------------------------------------------
@dataclass
class ShardTask:
    """Everything a worker needs for one shard (small: the events travel by description)."""

    kernel: KernelSpec
    source: ShardSource
    shard: Shard
    recorder: Recorder  # empty; its sink (if any) is a fresh one for this shard
    t_end: int  # the last event's time in the whole replay (labels past it have no full horizon)
    check_ns: int  # rows of the first and last `check_ns` of the lookahead kept for the boundary check
    compare: bool = True


@dataclass
class ShardResult:
    """A finished shard: its recording (row positions from 0 at its start), the rows for the boundary check."""

    index: int
    recording: Recording
    sink: RowSink | None
    head: pa.Table | None  # its first rows (t <= start + check): compared with the previous shard's tail
    tail: pa.Table | None  # its lookahead rows with t <= end + check
    warm_s: float
    seconds: float
    worker: str
    reused: bool = False


@dataclass
class ShardFailure:
    """A shard that raised on its worker: what it was and the error in words."""

    index: int
    shard: str
    worker: str
    error: str


def worker_name() -> str:
    """host:pid of this process (named in a failed shard's error)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def run_shard(task: ShardTask) -> ShardResult | ShardFailure:
    """Replay one shard on this worker; an exception becomes a ShardFailure naming the shard and the worker."""
    try:
        return _replay_shard(task)
    except Exception as e:
        return ShardFailure(task.shard.index, task.shard.describe(), worker_name(), f"{type(e).__name__}: {e}")


def _replay_shard(task: ShardTask) -> ShardResult:
    clock = time.perf_counter()
    kernel = task.kernel.build()
    sh, rec = task.shard, task.recorder
    rec.start(sh.seen)
    head, tail = _Keep(sh.start, task.check_ns), _Keep(sh.end, task.check_ns)
    replay_s, warm_t = 0.0, None
    for chunk in chunks(kernel, task.source.read(sh.warm, sh.until), progress=False):
        replay_s += chunk.seconds
        rows = chunk.rows
        t = rows.column("t").to_numpy()
        if warm_t is None and len(t):
            warm_t = int(t[0])
        lo = 0 if sh.start is None else int(np.searchsorted(t, sh.start, "left"))
        hi = len(t) if sh.end is None else int(np.searchsorted(t, sh.end, "left"))
        hi = max(hi, lo)
        own, ahead = rows.slice(lo, hi - lo), rows.slice(hi)
        rec.own(own)
        rec.ahead(ahead)
        if task.compare and sh.start is not None:
            head.add(own)
        if task.compare and sh.end is not None:
            tail.add(ahead)
    warm_s = 0.0 if sh.start is None or warm_t is None else max(0.0, (sh.start - warm_t) / 1e9)
    recording = rec.finish(replay_s, t_end=task.t_end, encode=False)
    return ShardResult(sh.index, recording, rec.sink, head.table(), tail.table(), warm_s,
                       time.perf_counter() - clock, worker_name())  # fmt: skip


class _Keep:
    """The rows with from_t <= t <= from_t + window (all outputs), kept for a boundary check."""

    def __init__(self, from_t: int | None, window: int) -> None:
        self.to_t = None if from_t is None else from_t + window
        self.parts: list[pa.Table] = []

    def add(self, rows: pa.Table) -> None:
        if self.to_t is None or not rows.num_rows:
            return
        n = int(np.searchsorted(rows.column("t").to_numpy(), self.to_t, "right"))
        if n:
            self.parts.append(rows.slice(0, n))

    def table(self) -> pa.Table | None:
        return pa.concat_tables(self.parts) if self.parts else None


# ----- merging the shards ---------------------------------------------------------------------------------
def merge(results: list[ShardResult], rec: Recorder, shards: list[Shard], mem: Memory, how: Sharding) -> Recording:
    """The shards' recordings concatenated in time order (row positions shifted), their sinks absorbed into the
    recorder's, the boundaries checked."""
    offset = 0
    tables, infos = [], []
    dropped: dict[str, int] = {}
    for res, sh in zip(results, shards, strict=True):
        r = res.recording
        table = r.table
        if rec.row_index and offset:
            table = table.set_column(table.schema.get_field_index("row"), "row", pc.add(table.column("row"), offset))
        tables.append(table)
        if rec.sink is not None and res.sink is not None:
            rec.sink.absorb(res.sink, offset)
        for k, v in r.dropped.items():
            dropped[k] = dropped.get(k, 0) + v
        infos.append(ShardInfo(sh.index, sh.describe().split(" ", 2)[2].strip("()"), res.warm_s, r.rows, r.sampled,
                               r.table.num_rows, res.seconds, res.worker, res.reused))  # fmt: skip
        offset += r.rows
    _check_boundaries(results, infos, shards, mem, how)
    table = pa.concat_tables(tables)
    table = table.set_column(1, "source", pc.dictionary_encode(table.column("source").cast(pa.string())))
    return Recording(
        table=table, labels=results[0].recording.labels, rows=offset,
        replay_s=sum(r.recording.replay_s for r in results), sampled=sum(r.recording.sampled for r in results),
        dropped=dropped, shards=infos,
    )  # fmt: skip


def compare_rows(a: pa.Table | None, b: pa.Table | None) -> tuple[int, int, float]:
    """(rows compared, values that differ, max |difference|) of two boundary tables: equal when every row has the
    same time and source and every output the same value and validity (NaN equals NaN)."""
    if a is None and b is None:
        return 0, 0, 0.0
    if a is None or b is None or a.num_rows != b.num_rows:
        n = max(0 if a is None else a.num_rows, 0 if b is None else b.num_rows)
        return n, max(n, 1), math.inf
    if not np.array_equal(a.column("t").to_numpy(), b.column("t").to_numpy()) or not a.column("source").cast(
        pa.string()
    ).equals(b.column("source").cast(pa.string())):
        return a.num_rows, a.num_rows, math.inf
    differing, worst = 0, 0.0
    for name in a.column_names[2:]:
        x, y = a.column(name), b.column(name)
        vx, vy = x.is_valid().to_numpy(zero_copy_only=False), y.is_valid().to_numpy(zero_copy_only=False)
        fx = pc.fill_null(x, 0.0).to_numpy(zero_copy_only=False)
        fy = pc.fill_null(y, 0.0).to_numpy(zero_copy_only=False)
        same = (vx == vy) & ((fx == fy) | (np.isnan(fx) & np.isnan(fy)) | ~vx)
        differing += int((~same).sum())
        both = vx & vy & ~same
        if (vx != vy).any():
            worst = math.inf
        elif both.any():
            with np.errstate(invalid="ignore"):
                worst = max(worst, float(np.nanmax(np.abs(fx[both] - fy[both]), initial=0.0)))
    return a.num_rows, differing, worst


def _check_boundaries(
    results: list[ShardResult], infos: list[ShardInfo], shards: list[Shard], mem: Memory, how: Sharding
) -> None:
    """Compare each shard's first rows with the previous shard's lookahead; act on a difference per `how.check`."""
    if how.check == "off":
        return
    for i in range(1, len(results)):
        n, differing, worst = compare_rows(results[i - 1].tail, results[i].head)
        infos[i].compared, infos[i].differing, infos[i].max_abs_diff = n, differing, worst
        if not differing:
            continue
        what = (
            f"{shards[i].describe()}: its first {n} rows differ from the previous shard's in {differing} values "
            f"(max |difference| {worst:.3g}) after a warm-up of {infos[i].warm_s:g} s; memory: {mem.describe()}"
        )
        strict = how.check == "error" or (how.check == "auto" and mem.bounded)
        if strict:
            raise ShardError(f"{what}; the warm-up is too short for this circuit: raise warmup_s")
        warnings.warn(f"{what}; rows after it may differ from a serial replay", ShardWarning, stacklevel=4)

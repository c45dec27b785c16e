"""Issue 17 performance: a sharded recording on `execution=local` with 2 workers against the serial replay, on a
market-data catalog of synthetic days (one partition per UTC day, each starting with a book snapshot).

Run:
    python -m pytest tests/bench/test_bench_shards.py --run-bench -s
HARNESS_BENCH_SHARD_DAYS (4) and HARNESS_BENCH_SHARD_EVENTS (events per day, 2M) size the catalog (a shard also
decodes the row group of the day before that holds its warm-up start: 100k rows, 5% of such a day). Both sides read
the catalog (verified against its digests), replay the same circuit (book, impulse, decays) and record every
10th trade with two labels; the sharded side runs one shard per day on 2 loky processes. The pool of processes
is started once before timing (it is reused between runs, as in a session or a sweep); the first, cold run is
reported too. The rows are checked equal to the serial ones. Figures go to the README (Performance).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import harness as hs
from harness import lib, ops
from harness.streams import catalog

DAYS = int(os.environ.get("HARNESS_BENCH_SHARD_DAYS", "4"))
PER_DAY = int(os.environ.get("HARNESS_BENCH_SHARD_EVENTS", "2000000"))
SMOKE_PER_DAY = 30_000  # with --benchmark-disable (CI's smoke pass): small days, equality only, no timing claim
DAY = 86_400 * 10**9
DAY0 = 1_723_075_200 * 10**9  # 2024-08-08 00:00 UTC
ROUNDS = 3


def _burn(n: int) -> float:
    """Seconds of native, in-cache arithmetic (numpy `exp` over 20k values, n times): the kind of work a replay
    does, unlike a Python loop, which two vCPUs of one physical core can still run almost twice as fast."""
    import numpy as np

    a = np.random.default_rng(0).random(20_000)
    clock = time.perf_counter()
    for _ in range(n):
        np.exp(a, out=a)
        a *= 1e-3
    return time.perf_counter() - clock


def machine_parallelism(n: int = 10_000) -> float:
    """How much faster two processes of native arithmetic finish together than one after the other, now: 2.0 on
    two free cores, less when other work holds them or the two vCPUs share a core (this machine's are shared)."""
    from concurrent.futures import ProcessPoolExecutor

    one = _burn(n)
    with ProcessPoolExecutor(2) as pool:
        list(pool.map(_burn, [10, 10]))  # started
        clock = time.perf_counter()
        list(pool.map(_burn, [n, n]))
        two = time.perf_counter() - clock
    return 2.0 * one / two


def _cpu_s() -> float:
    """CPU seconds of this process and its children so far (the loky workers are children)."""
    import psutil

    me = psutil.Process()
    own = me.cpu_times()
    return own.user + own.system + sum(sum(p.cpu_times()[:2]) for p in me.children(recursive=True))


def bench_circuit() -> hs.Circuit:
    c = hs.Circuit("bench_shards")
    md = lib.market(c)
    c.output("mid", md.mid)
    c.output("fair", lib.impulse(md, distance=1.0))
    c.output("press", ops.decay_sum(md.signed_amount, halflife=0.5))
    c.output("mid_dev", (md.mid - ops.ewma(md.mid, halflife=2.0)) / md.mid)
    c.output("imbalance", (md.bid_size - md.ask_size) / (md.bid_size + md.ask_size))
    return c


@pytest.fixture(scope="module")
def days_catalog(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    root = tmp_path_factory.mktemp("shard-catalog")
    smoke = request.config.getoption("benchmark_disable", False)
    for d in range(DAYS):
        day = hs.streams.synthetic(SMOKE_PER_DAY if smoke else PER_DAY, seed=d, start_ns=DAY0 + d * DAY + 1_000_000)
        catalog.import_table(root, day, market="btc")
    return root


def _record(kernel: hs.backends.Kernel, source: hs.replay.CatalogSource, shards: object) -> hs.replay.Recording:
    kernel.reset()
    events = source if shards is not None else source.batches()
    sampler = hs.replay.every_n(10, "trade")
    return hs.replay.record(kernel, events, sampler=sampler, labels=[("mid", (1.0, 5.0), "return")], shards=shards)


def test_local_two_workers_against_serial(days_catalog: Path, benchmark) -> None:  # type: ignore[no-untyped-def]
    source = hs.replay.CatalogSource(str(days_catalog), ("btc",))
    kernel = hs.compile(bench_circuit())
    how = hs.replay.Sharding(every_s=86_400.0, engine="local", workers=2)
    clock = time.perf_counter()
    cold = _record(kernel, source, how)  # starts the pool of 2 processes
    cold_s = time.perf_counter() - clock
    serial_s, local_s, parallelism, cpu_ratio = [], [], [], []
    for _ in range(ROUNDS):
        parallelism.append(machine_parallelism())
        clock, cpu = time.perf_counter(), _cpu_s()
        serial = _record(kernel, source, None)
        serial_s.append(time.perf_counter() - clock)
        serial_cpu = _cpu_s() - cpu
        clock, cpu = time.perf_counter(), _cpu_s()
        sharded = _record(kernel, source, how)
        local_s.append(time.perf_counter() - clock)
        cpu_ratio.append((_cpu_s() - cpu) / serial_cpu)  # the work sharding adds (warm-ups, reads, transfers)
    assert sharded.table.equals(serial.table) and cold.table.equals(serial.table)
    speedup = min(serial_s) / min(local_s)
    benchmark.extra_info.update(
        days=DAYS, events=serial.rows, serial_s=min(serial_s), local_s=min(local_s), cold_local_s=cold_s,
        speedup=speedup, cold_speedup=min(serial_s) / cold_s, machine_parallelism=parallelism, cpu_ratio=cpu_ratio,
        warm_up_s=[round(i.warm_s, 1) for i in sharded.shards],
    )  # fmt: skip
    print(
        f"\nshards: {DAYS} days, {serial.rows:,} events: serial {min(serial_s):.2f} s, execution=local (2 workers) "
        f"{min(local_s):.2f} s -> {speedup:.2f}x (cold pool: {cold_s:.2f} s, {min(serial_s) / cold_s:.2f}x); "
        f"two CPU-bound processes ran {', '.join(f'{p:.2f}' for p in parallelism)}x faster together than in turn; "
        f"CPU time of the sharded run / the serial one: {', '.join(f'{r:.2f}' for r in cpu_ratio)}"
    )
    benchmark.pedantic(lambda: None, rounds=1)
    if benchmark.disabled:
        return  # the smoke pass checks the rows, not the speed (its days are too small to amortise the pool)
    if max(parallelism) < 1.8:
        pytest.skip(
            f"the machine gave two CPU-bound processes only {max(parallelism):.2f}x (other load holds its cores): "
            f"the 1.7x target cannot be measured now (measured {speedup:.2f}x)"
        )
    assert speedup >= 1.7, f"execution=local with 2 workers is only {speedup:.2f}x the serial replay"

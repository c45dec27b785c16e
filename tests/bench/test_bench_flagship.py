"""Issue 7 performance: the flagship trade-pressure circuit replayed by its generated kernel and by the
reference interpreter, on the real BTCUSDT sample and on synthetic events; its compile time and kernel size.

Run:
    python -m pytest tests/bench/test_bench_flagship.py --run-bench -s --benchmark-columns=median,rounds
HARNESS_BENCH_EVENTS sets the synthetic events (10M by default). Figures go to the README.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pyarrow as pa
import pytest
from conftest import SHARED_DATA, real_data_missing

import harness as hs
from harness import examples

N_SYNTHETIC = int(os.environ.get("HARNESS_BENCH_EVENTS", "10000000"))
N_REFERENCE = 50_000
DAY = SHARED_DATA / "derived" / "binance-futures_2024-08-08"
L2 = DAY / "binance-futures_incremental_book_L2_2024-08-08_BTCUSDT.csv.gz"
TRADES = DAY / "binance-futures_trades_2024-08-08_BTCUSDT.csv.gz"


@pytest.fixture(scope="module")
def kernel() -> hs.Kernel:
    return hs.compile(examples.trade_pressure())


def rate(benchmark, n: int) -> float | None:  # type: ignore[no-untyped-def]
    if benchmark.stats is None:
        return None
    per_s = n / benchmark.stats.stats.median
    benchmark.extra_info["events_per_s"] = round(per_s)
    benchmark.extra_info["events"] = n
    return per_s


def replay(k: hs.Kernel, events: pa.Table) -> pa.Table:
    k.reset()
    return k.replay(events, timer_rows=True)


@pytest.fixture(scope="module")
def real_events() -> pa.Table:
    if not (L2.exists() and TRADES.exists()):
        pytest.skip(real_data_missing(DAY))
    return hs.streams.tardis(book=L2, trades=TRADES)


def test_real_day_generated_kernel(benchmark, kernel: hs.Kernel, real_events: pa.Table) -> None:  # type: ignore[no-untyped-def]
    out = benchmark.pedantic(lambda: replay(kernel, real_events), rounds=7, iterations=1, warmup_rounds=1)
    assert out.num_rows >= real_events.num_rows
    per_s = rate(benchmark, real_events.num_rows)
    if per_s:
        print(f"\nreal day, generated kernel: {per_s:,.0f} events/s")


def test_real_day_reference(benchmark, real_events: pa.Table) -> None:  # type: ignore[no-untyped-def]
    k = hs.compile(examples.trade_pressure(), backend="python")
    out = benchmark.pedantic(lambda: replay(k, real_events), rounds=1 if benchmark.disabled else 3, iterations=1)
    assert out.num_rows >= real_events.num_rows
    per_s = rate(benchmark, real_events.num_rows)
    if per_s:
        print(f"\nreal day, reference interpreter: {per_s:,.0f} events/s")


def test_synthetic_generated_kernel(benchmark, kernel: hs.Kernel) -> None:  # type: ignore[no-untyped-def]
    events = hs.streams.synthetic(N_SYNTHETIC, seed=0)
    batches = events.to_batches(max_chunksize=1_000_000)
    out = benchmark.pedantic(lambda: replay(kernel, batches), rounds=1 if benchmark.disabled else 3, iterations=1)
    assert out.num_rows >= N_SYNTHETIC
    per_s = rate(benchmark, N_SYNTHETIC)
    if per_s:
        print(f"\n{N_SYNTHETIC:,} synthetic events, generated kernel: {per_s:,.0f} events/s")


def test_synthetic_reference(benchmark) -> None:  # type: ignore[no-untyped-def]
    k = hs.compile(examples.trade_pressure(), backend="python")
    events = hs.streams.synthetic(N_REFERENCE, seed=0)
    benchmark.pedantic(lambda: replay(k, events), rounds=1, iterations=1)
    per_s = rate(benchmark, N_REFERENCE)
    if per_s:
        print(f"\n{N_REFERENCE:,} synthetic events, reference interpreter: {per_s:,.0f} events/s")


def test_compile_time_and_kernel_size(benchmark, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A cold build into a fresh cache (includes the once-per-toolchain CMake probe) and a second circuit."""
    t0 = time.perf_counter()
    k = hs.compile(examples.trade_pressure(), cache_dir=tmp_path)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    hs.compile(examples.trade_pressure(learn_halflives=False), cache_dir=tmp_path)
    second = time.perf_counter() - t0
    size = os.path.getsize(k.build["module"])
    lines = k.source.count("\n")
    benchmark.extra_info.update(cold_compile_s=round(cold, 2), further_compile_s=round(second, 2), so_bytes=size)
    benchmark.pedantic(lambda: None, rounds=1)
    print(f"\ncold compile {cold:.2f} s, further kernel {second:.2f} s, {size / 1024:.0f} KiB, {lines} source lines")
    assert not k.build["cache_hit"]

"""Issue 4 performance: replaying the real BTCUSDT day through the L2 book, and generating synthetic events.

Run:
    python -m pytest tests/bench/test_bench_market.py --run-bench --benchmark-columns=median,rounds
The real replay is 6,546 book messages (445k level updates) + 21,313 trades; the synthetic benchmark generates
HARNESS_BENCH_EVENTS events (10M by default) in 1M-event chunks. Figures go to the README.
"""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from conftest import SHARED_DATA, real_data_missing

import harness as hs

N_SYNTHETIC = int(os.environ.get("HARNESS_BENCH_EVENTS", "10000000"))
DAY = SHARED_DATA / "derived" / "binance-futures_2024-08-08"
L2 = DAY / "binance-futures_incremental_book_L2_2024-08-08_BTCUSDT.csv.gz"
TRADES = DAY / "binance-futures_trades_2024-08-08_BTCUSDT.csv.gz"


@pytest.fixture(scope="module")
def real_events() -> pa.Table:
    if not (L2.exists() and TRADES.exists()):
        pytest.skip(real_data_missing(DAY))
    return hs.streams.tardis(book=L2, trades=TRADES)


def market_circuit() -> hs.Circuit:
    c = hs.Circuit("bench_market")
    md = hs.lib.market(c)
    for name in ("bid_price", "bid_size", "ask_price", "ask_size", "mid", "wmid", "spread"):
        c.output(name, getattr(md, name))
    c.output("bid_depth10", md.bid_depth(10))
    c.output("ask_depth10", md.ask_depth(10))
    c.output("pressure", hs.ops.decay_sum(md.signed_amount, halflife=1.0))
    return c


def level_updates(events: pa.Table) -> int:
    return int(pc.sum(pc.list_value_length(events.column("book_price"))).as_py())


def test_real_day_replay_cpp(benchmark, real_events: pa.Table) -> None:  # type: ignore[no-untyped-def]
    kernel = hs.compile(market_circuit())

    def run() -> pa.Table:
        kernel.reset()
        return kernel.replay(real_events)

    out = benchmark.pedantic(run, rounds=7, iterations=1, warmup_rounds=1)
    assert out.num_rows == real_events.num_rows
    benchmark.extra_info["events"] = real_events.num_rows
    benchmark.extra_info["level_updates"] = level_updates(real_events)


def test_real_day_replay_reference(benchmark, real_events: pa.Table) -> None:  # type: ignore[no-untyped-def]
    kernel = hs.compile(market_circuit(), backend="python")

    def run() -> pa.Table:
        kernel.reset()
        return kernel.replay(real_events)

    out = benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=0)
    assert out.num_rows == real_events.num_rows


def test_real_day_read_csv(benchmark) -> None:  # type: ignore[no-untyped-def]
    """Reading and grouping the two gzipped CSV files (no Parquet cache)."""
    if not (L2.exists() and TRADES.exists()):
        pytest.skip(real_data_missing(DAY))
    out = benchmark.pedantic(lambda: hs.streams.tardis(book=L2, trades=TRADES), rounds=3, iterations=1)
    assert out.num_rows > 20_000


def test_synthetic_generation(benchmark) -> None:  # type: ignore[no-untyped-def]
    def run() -> int:
        return sum(b.num_rows for b in hs.streams.synthetic_batches(N_SYNTHETIC, seed=0))

    n = benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=0)
    assert n == N_SYNTHETIC
    if benchmark.stats is not None:
        benchmark.extra_info["events_per_s"] = round(N_SYNTHETIC / benchmark.stats.stats.median)


def test_synthetic_replay_cpp(benchmark) -> None:  # type: ignore[no-untyped-def]
    """The market circuit over 1M synthetic events (book messages carry ~20 level updates each)."""
    events = hs.streams.synthetic(min(N_SYNTHETIC, 1_000_000), seed=1)
    kernel = hs.compile(market_circuit())

    def run() -> pa.Table:
        kernel.reset()
        return kernel.replay(events)

    out = benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    assert out.num_rows == events.num_rows
    if benchmark.stats is not None:
        benchmark.extra_info["events_per_s"] = round(events.num_rows / benchmark.stats.stats.median)

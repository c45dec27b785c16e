"""Several markets: the two-market flagship (`trade_pressure(markets=[spot, perp])`: per-market families plus the
cross-market family) against the one-market flagship, per event, on the real pair and on synthetic markets.

Run:
    python -m pytest tests/bench/test_bench_markets.py --run-bench -s
Interleaved rounds (one-market, two-market, ...), user CPU time, medians; the ratio (two-market events/s over
one-market events/s) must be >= 0.5. HARNESS_BENCH_EVENTS sets the synthetic events (2M by default).
"""

from __future__ import annotations

import os
import statistics
import time

import pyarrow as pa
import pytest
from conftest import SHARED_DATA, real_data_missing

import harness as hs
from harness.circuits import trade_pressure

N_SYNTHETIC = int(os.environ.get("HARNESS_BENCH_EVENTS", "2000000"))
ROUNDS = 5
REAL = SHARED_DATA / "derived"
FILES = {
    "perp": (REAL / "binance-futures_2024-08-08", "binance-futures"),
    "spot": (REAL / "binance_2024-08-08", "binance"),
}


def files(market: str) -> dict[str, object]:
    folder, exchange = FILES[market]
    return {
        "book": folder / f"{exchange}_incremental_book_L2_2024-08-08_BTCUSDT.csv.gz",
        "trades": folder / f"{exchange}_trades_2024-08-08_BTCUSDT.csv.gz",
    }


def cpu_per_event(kernel: hs.Kernel, batches: list[pa.RecordBatch], rows: int) -> float:
    kernel.reset()
    t0 = time.process_time()
    kernel.replay(batches)
    return (time.process_time() - t0) / rows


def compare(benchmark, one: pa.Table, pair: pa.Table, label: str) -> float:  # type: ignore[no-untyped-def]
    """Interleaved rounds of the one-market flagship on `one` and the two-market flagship on `pair`."""
    k1 = hs.compile(trade_pressure())
    k2 = hs.compile(trade_pressure(markets=["spot", "perp"]))
    b1, b2 = one.to_batches(max_chunksize=1_000_000), pair.to_batches(max_chunksize=1_000_000)
    s1, s2 = [], []
    for _ in range(1 if benchmark.disabled else ROUNDS):
        s1.append(cpu_per_event(k1, b1, one.num_rows))
        s2.append(cpu_per_event(k2, b2, pair.num_rows))
    one_rate, pair_rate = 1.0 / statistics.median(s1), 1.0 / statistics.median(s2)
    ratio = pair_rate / one_rate
    benchmark.extra_info.update(one_market_events_per_s=round(one_rate), two_market_events_per_s=round(pair_rate),
                                ratio=round(ratio, 3), one_events=one.num_rows, pair_events=pair.num_rows)  # fmt: skip
    print(f"\n{label}: one market {one_rate:,.0f} events/s ({one.num_rows:,} events), two markets "
          f"{pair_rate:,.0f} events/s ({pair.num_rows:,} events): ratio {ratio:.2f}")  # fmt: skip
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    return ratio


def test_two_market_flagship_on_the_real_pair(benchmark) -> None:  # type: ignore[no-untyped-def]
    if not all(p.exists() for m in FILES for p in files(m).values()):
        pytest.skip(real_data_missing(REAL))
    one = hs.streams.tardis(**files("spot"))
    pair = hs.streams.merge(*[hs.streams.tardis(**files(m), market=m) for m in FILES])
    assert compare(benchmark, one, pair, "real pair") >= 0.5


def test_two_market_flagship_on_synthetic_markets(benchmark) -> None:  # type: ignore[no-untyped-def]
    one = hs.streams.synthetic(N_SYNTHETIC, seed=0)
    pair = hs.streams.synthetic_markets(N_SYNTHETIC, {"perp": {}, "spot": {"follows": "perp"}}, seed=0)
    assert compare(benchmark, one, pair, "synthetic") >= 0.5

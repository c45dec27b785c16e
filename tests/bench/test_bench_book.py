"""Issue 12 performance: the order book alone (best bid and ask of `hs.lib.market` after every event) in the
generated kernel against a hand-written tick ladder over the same list columns (`handwritten_book.cpp`), in
interleaved rounds; and what a second impulse fair costs on top of one (the impulses share the book's levels).

Run:
    python -m pytest tests/bench/test_bench_book.py --run-bench -s
HARNESS_BENCH_EVENTS sets the synthetic events (10M by default; level rows are ~15.5 per event).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import harness as hs
from harness.codegen.build import BuildUnit, build_modules
from harness.codegen.native import load_module
from harness.codegen.toolchain import toolchain

N = min(int(os.environ.get("HARNESS_BENCH_EVENTS", "10000000")), 3_000_000)
HERE = Path(__file__).parent
ROUNDS = 7


@pytest.fixture(scope="module")
def events() -> pa.Table:
    return hs.streams.synthetic(N, seed=0).combine_chunks()


@pytest.fixture(scope="module")
def level_rows(events: pa.Table) -> int:
    return int(pc.sum(pc.list_value_length(events.column("book_price"))).as_py())


@pytest.fixture(scope="module")
def handwritten(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    work = tmp_path_factory.mktemp("handwritten_book")
    unit = BuildUnit("hs_bench_handwritten_book", (HERE / "handwritten_book.cpp").read_text())
    path = build_modules([unit], work, toolchain("O2"))[unit.module]
    return load_module(path, unit.module)


def bbo_kernel() -> hs.Kernel:
    c = hs.Circuit("bench_bbo")
    md = hs.lib.market(c)
    c.output("bid", md.bid_price)
    c.output("ask", md.ask_price)
    return hs.compile(c)


def handwritten_args(events: pa.Table) -> tuple:
    trig = events.column("trigger").chunk(0).indices.to_numpy().astype(np.int8)
    assert events.column("trigger").chunk(0).dictionary.to_pylist()[0] == "book"
    price = events.column("book_price").chunk(0)
    return (
        trig,
        price.offsets.to_numpy(),
        events.column("book_side").chunk(0).values.to_numpy(),
        price.values.to_numpy(),
        events.column("book_amount").chunk(0).values.to_numpy(),
        pc.fill_null(events.column("book_snapshot"), 0.0).to_numpy(),
        0.1,
        float(pc.min(price.values).as_py()),
        float(pc.max(price.values).as_py()),
    )


def test_book_generated_vs_handwritten(benchmark, events: pa.Table, level_rows: int, handwritten) -> None:  # type: ignore[no-untyped-def]
    """Interleaved rounds, CPU time, medians; the best prices agree on every event."""
    k = bbo_kernel()
    args = handwritten_args(events)
    bid, ask = np.empty(N), np.empty(N)
    gen, hw = [], []
    out = None
    for _ in range(1 if benchmark.disabled else ROUNDS):
        k.reset()
        t0 = time.process_time()
        out = k.replay(events)
        gen.append(time.process_time() - t0)
        t0 = time.process_time()
        handwritten.replay(*args, bid, ask)
        hw.append(time.process_time() - t0)
    assert out is not None
    ours_bid = out.column("bid").to_numpy(zero_copy_only=False)
    ok = ~np.isnan(ours_bid) & ~np.isnan(bid)
    assert ok.sum() > N // 2
    assert np.array_equal(np.round(ours_bid[ok] / 0.1), np.round(bid[ok] / 0.1))  # the same best bid everywhere
    g, h = float(np.median(gen)), float(np.median(hw))
    benchmark.extra_info.update(
        generated_level_rows_per_s=round(level_rows / g), handwritten_level_rows_per_s=round(level_rows / h),
        ratio_handwritten_over_generated=round(g / h, 2), events=N, level_rows=level_rows,
    )  # fmt: skip
    benchmark.pedantic(lambda: None, rounds=1)
    print(
        f"\nbook only, {level_rows:,} level rows: generated {level_rows / g / 1e6:.1f} M rows/s, "
        f"hand-written ladder {level_rows / h / 1e6:.1f} M rows/s (generated takes {g / h:.2f}x its time)"
    )


def impulse_kernel(distances: tuple[float, ...]) -> hs.Kernel:
    c = hs.Circuit(f"bench_impulses_{len(distances)}")
    md = hs.lib.market(c)
    for i, d in enumerate(distances):
        c.output(f"fair{i}", hs.lib.impulse(md, d))
    c.output("mid", md.mid)
    return hs.compile(c)


def test_second_impulse_costs_little(benchmark, events: pa.Table) -> None:  # type: ignore[no-untyped-def]
    """Book + one impulse against book + two impulses (they read one set of levels), interleaved, CPU time."""
    kernels = {n: impulse_kernel((1.0, 5.0)[:n]) for n in (0, 1, 2)}
    times: dict[int, list[float]] = {n: [] for n in kernels}
    for _ in range(1 if benchmark.disabled else ROUNDS):
        for n, k in kernels.items():
            k.reset()
            t0 = time.process_time()
            k.replay(events)
            times[n].append(time.process_time() - t0)
    med = {n: float(np.median(v)) for n, v in times.items()}
    benchmark.extra_info.update({f"impulses_{n}_events_per_s": round(N / s) for n, s in med.items()})
    benchmark.pedantic(lambda: None, rounds=1)
    print(
        f"\nbook alone {N / med[0] / 1e6:.2f} M events/s, + one impulse {N / med[1] / 1e6:.2f} M, "
        f"+ two impulses {N / med[2] / 1e6:.2f} M (the second costs {med[2] / med[1]:.2f}x one)"
    )

"""Differential tests: the generated C++ kernel against the Python reference interpreter on random circuits
(every hs.ops operator, several triggers, observed inputs, parameters, timers) and random event tables with
irregular timestamps. Every operator keeps the reference's operation order, so values must agree bit for
bit (nan matches nan; 0.0 and -0.0 differ), validity included.

Each example draws a batch of circuits and compiles them together (one build for the batch).
"""

from __future__ import annotations

import math

import pyarrow as pa
from conftest import PROFILE
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import circuits, events_for, same

import harness as hs
from harness.codegen import compile_many

BATCH = 5
EXAMPLES = {"default": 14, "thorough": 120}


def assert_same_tables(ref: pa.Table, got: pa.Table, label: str) -> None:
    assert ref.column_names == got.column_names, label
    assert ref.column("t").to_pylist() == got.column("t").to_pylist(), label
    for name in ref.column_names[1:]:
        a, b = ref.column(name).to_pylist(), got.column(name).to_pylist()
        for r, (x, y) in enumerate(zip(a, b, strict=True)):
            assert same(x, y), f"{label}: output {name!r} row {r}: reference {x!r}, C++ {y!r}"


def profile_examples() -> int:
    return EXAMPLES.get(PROFILE, 14)


@settings(
    max_examples=profile_examples(),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.data())
def test_cpp_replay_equals_the_reference_on_every_event(data: st.DataObject) -> None:
    batch = [data.draw(circuits(), label=f"circuit {i}") for i in range(BATCH)]
    kernels = compile_many(batch)
    for i, (circuit, kernel) in enumerate(zip(batch, kernels, strict=True)):
        events = data.draw(events_for(circuit), label=f"events {i}")
        reference = hs.compile(circuit, backend="python")
        assert_same_tables(reference.replay(events), kernel.replay(events), f"circuit {i}")
        # chunked replays carry state across batches
        size = data.draw(st.integers(1, 9), label=f"chunk {i}")
        more = data.draw(events_for(circuit, max_rows=25), label=f"more events {i}")
        shift = (events.column("t")[-1].as_py() if events.num_rows else 0) - (
            more.column("t")[0].as_py() if more.num_rows else 0
        )
        if more.num_rows:
            more = more.set_column(
                0, "t", pa.array([t + max(shift, 0) for t in more.column("t").to_pylist()], pa.int64())
            )
        # new parameter values mid-stream, then more events
        if circuit.parameters:
            values = {}
            for name, node in circuit.parameters.items():
                lo, hi = node.op.params["lower"], node.op.params["upper"]
                v = data.draw(st.floats(max(lo, -3.0), min(hi, 3.0) if math.isfinite(hi) else 3.0), label=f"{name} {i}")
                values[name] = v
            try:
                reference.set_params(values)
            except hs.ParamError:
                values = {}
            if values:
                kernel.set_params(values)
        assert_same_tables(
            reference.replay(more.to_batches(max_chunksize=size)),
            kernel.replay(more.to_batches(max_chunksize=size)),
            f"circuit {i} after set_params",
        )
        for name in circuit.outputs:
            assert same(reference.value(name), kernel.value(name)), name


@settings(max_examples=max(4, profile_examples() // 3), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_cpp_call_and_advance_equal_the_reference(data: st.DataObject) -> None:
    batch = [data.draw(circuits(), label=f"circuit {i}") for i in range(BATCH)]
    kernels = compile_many(batch)
    for i, (circuit, kernel) in enumerate(zip(batch, kernels, strict=True)):
        events = data.draw(events_for(circuit), label=f"events {i}")
        reference = hs.compile(circuit, backend="python")
        for row in events.to_pylist():
            trig = row["trigger"]
            inputs = {name: row[name] for name in kernel.trigger_inputs[trig]}
            for k in (reference, kernel):
                k.call(trig, t=row["t"], **inputs)
            for name in circuit.outputs:
                assert same(reference.value(name), kernel.value(name)), (i, name, row)
        if events.num_rows:
            later = events.column("t")[-1].as_py() + data.draw(st.integers(0, 5_000_000_000))
            reference.advance(later)
            kernel.advance(later)
            for name in circuit.outputs:
                assert same(reference.value(name), kernel.value(name)), (i, name, "advance")


# ----- several markets in one circuit -------------------------------------------------------------------------
MARKETS = ("perp", "spot", "fut")
_amount = st.sampled_from([0.0, 0.5, 1.0, 2.5])
_level_anywhere = st.tuples(st.sampled_from([1.0, -1.0]), st.integers(95, 105).map(float), _amount)
_level_own_side = st.one_of(  # bids below asks: books that are often not crossed (a valid mid at trades)
    st.tuples(st.just(1.0), st.integers(95, 100).map(float), _amount),
    st.tuples(st.just(-1.0), st.integers(101, 105).map(float), _amount),
)
_levels = st.lists(st.one_of(_level_own_side, _level_own_side, _level_anywhere), max_size=5)
_message = st.one_of(
    st.tuples(st.just("book"), _levels, st.sampled_from([0.0, 0.0, 1.0, 2.0])),
    st.tuples(st.just("trade"), st.floats(90, 110), st.sampled_from([1.0, -1.0, 0.0])),
)


@st.composite
def market_stream(draw: st.DrawFn, market: str) -> pa.Table:
    """A random book + trade stream of one market (irregular, sometimes equal times; trades with exchange times),
    tagged with its name."""
    from tables import book_row, market_events, trade_row

    from harness.streams import schema

    rows, t = [], draw(st.integers(0, 10**9))
    for m in draw(st.lists(_message, max_size=25)):
        t += draw(st.sampled_from([0, 1, 1000, 50_000_000, 2_000_000_000]))
        te = t - draw(st.sampled_from([0, 1000, 30_000_000, 80_000_000]))  # exchange time: before t, irregular
        rows.append(book_row(t, m[1], snapshot=m[2]) if m[0] == "book" else trade_row(t, m[1], 1.0, m[2], te))
    return schema.tag(market_events(rows, exchange_clock=True), market)


def market_circuit(markets: tuple[str, ...], k: int, halflife: float) -> hs.Circuit:
    """A circuit over several markets: each market's own book fields and flow, one market's values observed on
    another's events, and cross-market differences (nothing here knows "markets": more inputs and triggers)."""
    c = hs.Circuit(f"markets_{k}")
    mds = [hs.lib.market(c, market=m, exchange_time=i == 0) for i, m in enumerate(markets)]
    for m, md in zip(markets, mds, strict=True):
        c.output(f"{m}_mid", md.mid)
        c.output(f"{m}_flow", hs.ops.decay_sum(md.signed_amount, halflife=halflife))
    a, b = mds[0], mds[-1]
    c.output("basis", (a.mid - b.mid) / b.mid)
    c.output("b_on_a", hs.ops.ewma(hs.observe(b.wmid) - a.trade_price, halflife=halflife))
    c.output("lead", hs.ops.decay_sum(b.signed_amount, halflife=halflife) * hs.observe(a.spread))
    c.output("cross_basis", hs.lib.basis(a, b))
    c.output("b_return_on_a", a.trade_price * 0.0 + hs.observe(hs.lib.market_return(b, halflife)))
    (lead,) = hs.lib.lead_pressure(b, [halflife])
    c.output("lead_on_a", lead * a.trade_side)
    book_signals(c, a, b, halflife)
    return c


def book_signals(c: hs.Circuit, a: hs.lib.Market, b: hs.lib.Market, halflife: float) -> None:
    """The book and trade signals of `hs.lib` on named markets: `a`'s bursts (on its exchange clock) scored
    against `b`'s impulse fair, `b`'s imbalance, band depth and bid/ask returns, `a`'s impulse."""
    fair = hs.lib.impulse(b, 2.0, recompute_every=3, reanchor=5.0)
    c.output("b_impulse", fair)
    c.output("a_impulse", hs.lib.impulse(a, 0.5))
    c.output("b_imbalance", hs.lib.imbalance(b, levels=2))
    bid_band, ask_band = hs.lib.band_depth(b, 1.5)
    c.output("b_band", bid_band - ask_band)
    bid_ret, ask_ret = hs.lib.bbo_returns(b, halflife)
    c.output("b_bbo", bid_ret + ask_ret)
    burst = hs.lib.bursts(a, gap=0.04, timeout=1.0)
    c.output("a_burst", burst.signed_amount)
    c.output("a_burst_penetration", burst.penetration)
    c.output("a_burst_duration", burst.duration)


@settings(max_examples=max(4, profile_examples() // 2), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_cpp_equals_the_reference_on_random_multi_market_streams(data: st.DataObject) -> None:
    """Random streams of 2-3 markets merged by `hs.streams.merge` and replayed whole and in chunks."""
    count = data.draw(st.integers(2, 3), label="markets")
    markets = MARKETS[:count]
    halflife = data.draw(st.sampled_from([1e-6, 0.5, 3.0]), label="halflife")
    batch = [market_circuit(markets, 0, halflife), market_circuit(markets[::-1], 1, halflife)]
    kernels = compile_many(batch)
    events = hs.streams.merge(*[data.draw(market_stream(m), label=m) for m in markets])
    size = data.draw(st.integers(1, 9), label="chunk")
    for circuit, kernel in zip(batch, kernels, strict=True):
        reference = hs.compile(circuit, backend="python")
        assert_same_tables(reference.replay(events), kernel.replay(events), circuit.name)
        reference.reset()
        kernel.reset()
        chunks = events.to_batches(max_chunksize=size)
        assert_same_tables(reference.replay(chunks), kernel.replay(chunks), f"{circuit.name} in chunks of {size}")

"""Market signals (`hs.lib`): golden values, the impulse fair against a full recompute, burst detection on
crafted trade sequences, and the C++ kernel against the reference on random streams."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tables import book_row, market_events, trade_row

import harness as hs
from harness.lib.book import Book
from harness.lib.impulse import Impulse, fair_of, full_sums

B, A = 1.0, -1.0
MS = 1_000_000


def signals_circuit() -> hs.Circuit:
    c = hs.Circuit("signals")
    md = hs.lib.market(c, exchange_time=True)
    c.output("mid", md.mid)
    c.output("imb2", hs.lib.imbalance(md, 2))
    bid_band, ask_band = hs.lib.band_depth(md, 1.0)
    c.output("bid_band", bid_band)
    c.output("ask_band", ask_band)
    c.output("fair", hs.lib.impulse(md, 1.0, recompute_every=3, reanchor=2.0))
    c.output("fair_far", hs.lib.impulse(md, 10.0))
    bursts = hs.lib.bursts(md, gap=0.010, timeout=0.050)
    for f in hs.lib.BURST_FIELDS:
        c.output(f"burst_{f}", bursts.field(f))
    c.output("burst", bursts.node)
    c.output("pressure", hs.lib.pressure(bursts.signed_amount, [0.1])[0])
    bid_ret, ask_ret = hs.lib.bbo_returns(md, 0.5)
    c.output("bid_ret", bid_ret)
    c.output("ask_ret", ask_ret)
    c.output("dev", hs.lib.diff_to_ewma(md.mid, 0.5))
    c.output("lo", hs.lib.tree_min([md.bid_size, md.ask_size, md.spread]))
    c.output("hi", hs.lib.tree_max([md.bid_size, md.ask_size, md.spread]))
    c.output("soft", hs.lib.soft_bounded_sum([md.bid_size, md.ask_size], "soft", init=[0.0, math.log(3.0)]))
    c.output("disc", hs.lib.discount_by(md.mid, md.spread, 0.5))
    return c


_KERNELS: dict[str, hs.Kernel] = {}


def kernel(backend: str) -> hs.Kernel:
    if backend not in _KERNELS:
        _KERNELS[backend] = hs.compile(signals_circuit(), backend=backend)
    k = _KERNELS[backend]
    k.reset()
    return k


def test_golden_book_signals(backend: str) -> None:
    rows = [
        book_row(1, [(B, 100.0, 2.0), (B, 99.0, 1.0), (B, 98.5, 4.0), (A, 101.0, 1.0), (A, 103.0, 5.0)], 1.0),
        book_row(2, [(A, 101.0, 3.0)]),
    ]
    out = kernel(backend).replay(market_events(rows, exchange_clock=True)).to_pydict()
    assert out["imb2"] == [(3.0 - 6.0) / 9.0, (3.0 - 8.0) / 11.0]
    assert out["bid_band"] == [3.0, 3.0] and out["ask_band"] == [1.0, 3.0]  # within 1.0 of the best price
    # impulse, distance 1, anchor = mid 100.5: B = 2e^-0.5 + e^-1.5 + 4e^-2, A = e^-0.5 + 5e^-2.5
    b = 2 * math.exp(-0.5) + math.exp(-1.5) + 4 * math.exp(-2.0)
    a = math.exp(-0.5) + 5 * math.exp(-2.5)
    assert out["fair"][0] == pytest.approx(100.5 + math.log(b / a) / 2, rel=1e-15)
    a2 = 3 * math.exp(-0.5) + 5 * math.exp(-2.5)
    assert out["fair"][1] == pytest.approx(100.5 + math.log(b / a2) / 2, rel=1e-13)
    assert out["lo"] == [1.0, 1.0] and out["hi"] == [2.0, 3.0]
    assert out["dev"] == [0.0, 0.0] and out["bid_ret"] == [0.0, 0.0]  # the first sample starts each EWMA
    assert out["soft"][0] == pytest.approx((2.0 + 3.0 * 1.0) / 4.0)  # weights 1 and 3 of sizes 2 and 1
    assert out["disc"][0] == pytest.approx(100.5 * math.exp(-0.5 * 1.0))


def test_bursts_end_on_side_flip_exchange_gap_and_timer(backend: str) -> None:
    book = book_row(1, [(B, 100.0, 5.0), (A, 101.0, 5.0)], 1.0)
    rows = [
        book,
        trade_row(10 * MS, 101.0, 1.0, B, te=10 * MS),
        trade_row(12 * MS, 101.5, 2.0, B, te=15 * MS),  # 5 ms later on the exchange: same burst
        trade_row(13 * MS, 100.0, 1.0, A, te=16 * MS),  # side flip: the buy burst completes here
        trade_row(14 * MS, 99.5, 1.0, A, te=30 * MS),  # 14 ms exchange gap > 10 ms: the first sell burst completes
        trade_row(15 * MS, 99.0, 0.5, 0.0, te=31 * MS),  # unknown side: ignored
        book_row(200 * MS, [(B, 99.0, 1.0)]),  # 50 ms after the last trade the timer completes the burst
    ]
    k = kernel(backend)
    out = k.replay(market_events(rows, exchange_clock=True), timer_rows=True).to_pydict()
    names = k.row_sources()
    src = out["source"]
    done = [i for i, v in enumerate(out["burst"]) if v is not None]
    assert [src[i] for i in done] == ["trade", "trade", next(n for n in names if n.startswith("timer:"))]
    first, second, third = done
    assert out["burst_signed_amount"][first] == 3.0 and out["burst_trades"][first] == 2.0
    assert out["burst_vwap"][first] == pytest.approx((101.0 + 2 * 101.5) / 3)
    assert out["burst_extreme_price"][first] == 101.5
    assert out["burst_penetration"][first] == pytest.approx(101.5 - 100.5)  # fair = mid at the first fill
    assert out["burst_duration"][first] == pytest.approx(0.005)
    assert out["burst_signed_amount"][second] == -1.0 and out["burst_first_price"][second] == 100.0
    assert out["burst_signed_amount"][third] == -1.0 and out["burst_last_price"][third] == 99.5
    assert out["t"][third] == 14 * MS + 50 * MS  # the timer row: 50 ms of local time after the last fill
    # edge-triggered: valid only in the completing rows
    assert sum(v is not None for v in out["burst_amount"]) == 3
    assert out["pressure"][first] == 3.0
    # the next completion, 1 ms later: 3 * 2^(-0.001 / 0.1) + (-1)
    assert out["pressure"][second] == pytest.approx(3.0 * 2 ** (-0.001 / 0.1) - 1.0, rel=1e-15)


def test_impulse_incremental_sums_equal_a_full_recompute() -> None:
    rng = np.random.default_rng(7)
    book_op = Book()
    op = Impulse(distance=2.0, recompute_every=10**9, reanchor=1e9)  # never recompute after the first time
    book, _ = book_op.ref_init(book_op.params)
    state, _ = op.ref_init(op.params)
    ctx = hs.ops.StepContext(0, lambda at: None)
    worst = 0.0
    for step in range(3000):
        n = int(rng.integers(1, 8))
        sides = [B if rng.random() < 0.5 else A for _ in range(n)]
        prices = [float(100 + (-1 if s > 0 else 1) * rng.integers(1, 30) * 0.5) for s in sides]
        amounts = [float(rng.choice([0.0, 0.5, 1.0, 3.0])) for _ in range(n)]
        book_op.ref_step(book, ctx, book_op.params, [sides, prices, amounts, 1.0 if step == 0 else 0.0])
        fair = op.ref_step(state, ctx, op.params, [book])
        sb, sa = full_sums(book, state.anchor, 2.0)
        full = fair_of(sb, sa, state.anchor, 2.0)
        if fair is None or full is None:
            assert fair is None and full is None
            continue
        worst = max(worst, abs(fair - full) / abs(full))
    assert state.recomputes == 1  # every later value came from the running sums
    assert worst < 1e-12


@st.composite
def market_streams(draw: st.DrawFn) -> pa.Table:
    rows: list[dict[str, Any]] = [book_row(1, [(B, 100.0, 2.0), (A, 101.0, 2.0)], 1.0)]
    t = 1
    for _ in range(draw(st.integers(1, 60))):
        t += draw(st.sampled_from([0, 1 * MS, 5 * MS, 30 * MS, 120 * MS]))
        if draw(st.booleans()):
            levels = draw(
                st.lists(
                    st.tuples(
                        st.sampled_from([B, A]),
                        st.integers(190, 212).map(lambda x: x / 2.0),
                        st.sampled_from([0.0, -0.0, 0.5, 1.0, 4.0]),
                    ),
                    max_size=5,
                )
            )
            rows.append(book_row(t, levels, draw(st.sampled_from([0.0, 0.0, 0.0, 1.0]))))
        else:
            te = t + draw(st.sampled_from([0, -2 * MS, 8 * MS, 20 * MS]))
            side = draw(st.sampled_from([B, A, 0.0]))
            rows.append(trade_row(t, draw(st.floats(95, 106)), draw(st.sampled_from([0.5, 1.0, 2.0])), side, te))
    return market_events(rows, exchange_clock=True)


@given(market_streams())
def test_random_streams_both_backends_agree(table: pa.Table) -> None:
    ref = kernel("python").replay(table, timer_rows=True)
    out = kernel("cpp").replay(table, timer_rows=True)
    assert out.equals(ref)


def test_synthetic_stream_both_backends_agree() -> None:
    table = hs.streams.synthetic(8000, seed=9)
    ref = kernel("python").replay(table, timer_rows=True)
    out = kernel("cpp").replay(table, timer_rows=True)
    assert out.equals(ref)
    assert len(out.column("burst").drop_null()) > 50


def test_normalize_uses_frozen_train_statistics() -> None:
    c = hs.Circuit("norm")
    x, y = c.input("x"), c.input("y")
    c.trigger("tick", x, y)
    w = c.parameter("w", init=0.0)
    c.output("pred", w * hs.lib.normalize(x, "nx"))
    c.output("truth", y)
    rng = np.random.default_rng(1)
    n = 2000
    xs = rng.normal(5.0, 3.0, n)
    events_ = pa.table({"t": np.arange(1, n + 1, dtype=np.int64), "trigger": ["tick"] * n, "x": xs, "y": (xs - 5) / 3})
    res = hs.fit.fit(c, events_, target="pred", label=("truth", 0.0), trainer={"optimizer": "lbfgs", "epochs": 10})
    train = xs[: len(res.split.train)]
    assert res.params["nx_mean"] == pytest.approx(train.mean(), rel=1e-12)
    assert res.params["nx_std"] == pytest.approx(train.std(), rel=1e-12)
    assert "nx_mean" not in res.trace.params  # statistics are not fitted by gradient
    assert res.params["w"] == pytest.approx(train.std() / 3.0, rel=0.02)  # pred = w * (x - mean) / std
    assert res.parity["max_abs_error"] <= 1e-12


def test_mlp_and_linear_build_their_parameters() -> None:
    c = hs.Circuit("mlp")
    x, y = c.input("x"), c.input("y")
    c.trigger("tick", x, y)
    c.output("out", hs.lib.mlp([x, y], "net", hidden=(3, 2), seed=1))
    c.output("lin", hs.lib.linear([x, y], "head"))
    names = set(c.parameters)
    assert len([n for n in names if n.startswith("net_")]) == (2 * 3 + 3) + (3 * 2 + 2) + (2 * 1 + 1)
    assert {"head_w0", "head_w1", "head_b"} <= names
    k = hs.compile(c, backend="python")
    k.call("tick", t=1, x=0.3, y=-0.2)
    w0, w1 = (c.parameters[f"head_w{i}"].op.params["init"] for i in (0, 1))
    assert 0 < abs(w0) < 0.1 and 0 < abs(w1) < 0.1  # small seeded starts, not 0 (upstream gets a gradient)
    assert k.value("out") is not None and k.value("lin") == pytest.approx(0.3 * w0 - 0.2 * w1, rel=1e-12)
    tr = hs.fit.trace(c, "out")
    assert len(tr.params) == 20


def test_signal_errors() -> None:
    c = hs.Circuit("errs")
    md = hs.lib.market(c)
    with pytest.raises(hs.CircuitError, match="exchange_time=True"):
        hs.lib.bursts(md)
    with pytest.raises(hs.CircuitError, match="distance=0.0 is out of range"):
        hs.lib.impulse(md, 0.0)
    with pytest.raises(hs.CircuitError, match="pass the book"):
        hs.lib.impulse(md.mid, 1.0)  # type: ignore[arg-type]
    assert hs.lib.impulse(hs.lib.BookView(md.node), 1.0) is hs.lib.impulse(md, 1.0)  # one node on the one book
    with pytest.raises(hs.CircuitError, match="2 inputs but 1 initial weights"):
        hs.lib.soft_bounded_sum([md.bid_size, md.ask_size], "s", init=[0.0])

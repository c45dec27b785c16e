"""Several markets in one circuit: `hs.lib.market(c, market=...)` declares each market's inputs and triggers with
its own book; the real perpetual + spot pair replayed together reproduces each market's quotes file on both
backends; `hs.observe` reads one market on the other's events; bad input names the market."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from conftest import SHARED_DATA, real_data_missing

import harness as hs
from harness.errors import CircuitError, EventsError
from harness.streams import tardis_csv

REAL = SHARED_DATA / "derived"
PAIR = {
    "perp": (REAL / "binance-futures_2024-08-08", "binance-futures"),
    "spot": (REAL / "binance_2024-08-08", "binance"),
}
TOP = ("bid_price", "bid_size", "ask_price", "ask_size")


def pair_file(market: str, kind: str) -> Path:
    folder, exchange = PAIR[market]
    return folder / f"{exchange}_{kind}_2024-08-08_BTCUSDT.csv.gz"


@pytest.fixture(scope="module")
def pair() -> pa.Table:
    for market in PAIR:
        for kind in ("incremental_book_L2", "trades", "quotes"):
            if not pair_file(market, kind).exists():
                pytest.skip(real_data_missing(pair_file(market, kind)))
    streams = [
        hs.streams.tardis(book=pair_file(m, "incremental_book_L2"), trades=pair_file(m, "trades"), market=m)
        for m in PAIR
    ]
    return hs.streams.merge(*streams)


def pair_bbo() -> hs.Circuit:
    c = hs.Circuit("pair_bbo")
    for m in PAIR:
        md = hs.lib.market(c, market=m)
        for name in TOP:
            c.output(f"{m}_{name}", getattr(md, name))
        c.output(f"{m}_crossed", md.crossed)
        c.output(f"{m}_flow", md.signed_amount)
    return c


def top_of_book_changes(out: pa.Table, trigger: pa.ChunkedArray, market: str) -> dict[str, np.ndarray]:
    """One market's top of book after each of its book messages, a row only where it differs from the previous."""
    rows = out.filter(pc.equal(trigger.cast(pa.string()), f"{market}.book"))
    cols = {name: rows.column(f"{market}_{name}").to_numpy(zero_copy_only=False) for name in TOP}
    cols["t"] = rows.column("t").to_numpy()
    valid = ~np.any([np.isnan(cols[name]) for name in TOP], axis=0)
    cols = {k: v[valid] for k, v in cols.items()}
    keep = np.ones(len(cols["t"]), dtype=bool)
    keep[1:] = np.any([np.diff(cols[name]) != 0 for name in TOP], axis=0)
    return {name: v[keep] for name, v in cols.items()}


def test_two_market_replay_reproduces_each_quotes_file(pair: pa.Table, backend: str) -> None:
    out = hs.compile(pair_bbo(), backend=backend).replay(pair)
    for m in PAIR:
        assert out.column(f"{m}_crossed").to_pylist()[-1] == 0.0
        ours = top_of_book_changes(out, pair.column("trigger"), m)
        quotes = tardis_csv.read_quotes(pair_file(m, "quotes"))
        theirs = {
            "t": quotes.column("t").to_numpy(),
            "bid_price": quotes.column("quote_bid_price").to_numpy(),
            "bid_size": quotes.column("quote_bid_amount").to_numpy(),
            "ask_price": quotes.column("quote_ask_price").to_numpy(),
            "ask_size": quotes.column("quote_ask_amount").to_numpy(),
        }
        assert len(ours["t"]) == len(theirs["t"]) == quotes.num_rows > 2000, m
        for name in ("t", *TOP):
            np.testing.assert_array_equal(ours[name], theirs[name], err_msg=f"{m} {name}")


def test_each_market_trade_flow_is_its_own(pair: pa.Table) -> None:
    out = hs.compile(pair_bbo()).replay(pair)
    names = pair.column("trigger").cast(pa.string())
    for m in PAIR:
        mine = pc.equal(names, f"{m}.trade")
        flow = out.filter(mine).column(f"{m}_flow").to_numpy()
        trades = pair.filter(mine)
        want = trades.column(f"{m}.trade_amount").to_numpy() * trades.column(f"{m}.trade_side").to_numpy()
        np.testing.assert_array_equal(flow, want)
        assert len(flow) > 5000


def two_market_events(n: int = 4000) -> pa.Table:
    return hs.streams.merge(
        hs.streams.synthetic(n, seed=1, market="perp"),
        hs.streams.synthetic(n, seed=2, market="spot", start_price=60_010.0),
    )


def test_books_of_two_markets_are_independent(backend: str) -> None:
    """Each market's fields equal those of a one-market circuit replayed on that market's stream alone."""
    events = two_market_events()
    c = hs.Circuit("two")
    perp, spot = hs.lib.market(c, market="perp"), hs.lib.market(c, market="spot")
    assert (perp.market, spot.market) == ("perp", "spot")
    assert perp.node is not spot.node
    c.output("perp_mid", perp.mid)
    c.output("spot_depth", spot.bid_depth(5))
    c.output("basis", perp.mid - spot.mid)
    out = hs.compile(c, backend=backend).replay(events)
    names = events.column("trigger").cast(pa.string()).to_numpy(zero_copy_only=False).astype(str)
    for market, column, field in (("perp", "perp_mid", "mid"), ("spot", "spot_depth", "depth")):
        one = hs.Circuit(f"one_{market}")
        md = hs.lib.market(one)
        one.output("x", md.mid if field == "mid" else md.bid_depth(5))
        alone = hs.compile(one, backend=backend).replay(hs.streams.synthetic(4000, seed=1 if market == "perp" else 2,
                                                                              start_price=60_000.0 if market == "perp"
                                                                              else 60_010.0))  # fmt: skip
        mine = np.char.startswith(names, f"{market}.")
        got = out.column(column).to_numpy(zero_copy_only=False)[mine]
        np.testing.assert_array_equal(got, alone.column("x").to_numpy(zero_copy_only=False), err_msg=market)
    basis = out.column("basis").to_numpy(zero_copy_only=False)
    both = out.column("perp_mid").to_numpy(zero_copy_only=False)
    assert np.isfinite(basis[1000:]).all() and np.isfinite(both[1000:]).all()


def test_observe_reads_another_market_without_triggering(backend: str) -> None:
    """A spot value read on perp trades: updated on perp trades only, the spot mid as of that event."""
    events = two_market_events(2000)
    c = hs.Circuit("observe_pair")
    perp, spot = hs.lib.market(c, market="perp"), hs.lib.market(c, market="spot")
    c.output("spot_mid_on_perp_trades", hs.ops.ewma(hs.observe(spot.mid) + 0.0 * perp.trade_price, halflife=1e-9))
    c.output("spot_mid", spot.mid)
    out = hs.compile(c, backend=backend).replay(events)
    names = events.column("trigger").cast(pa.string()).to_pylist()
    read = out.column("spot_mid_on_perp_trades").to_pylist()
    mid = out.column("spot_mid").to_pylist()
    last = None
    seen = 0
    for name, r, m in zip(names, read, mid, strict=True):
        if name == "perp.trade" and m is not None:
            assert r == pytest.approx(m, rel=1e-12)
            last, seen = r, seen + 1
        elif last is not None:
            assert r == last  # no other event moves it, spot book messages included
    assert seen > 100


def test_a_market_is_declared_once_and_named_in_errors() -> None:
    c = hs.Circuit("dup")
    hs.lib.market(c, market="perp")
    with pytest.raises(CircuitError, match=r"already has the triggers \['book', 'trade'\] of market 'perp'"):
        hs.lib.market(c, market="perp")
    with pytest.raises(CircuitError, match="market name 'a.b'"):
        hs.lib.market(c, market="a.b")
    hs.lib.market(c)  # a market without a name beside named ones
    assert set(c.triggers) == {"perp.book", "perp.trade", "book", "trade"}


def test_events_without_the_stream_of_a_market_name_it() -> None:
    c = hs.Circuit("needs_spot")
    perp, spot = hs.lib.market(c, market="perp"), hs.lib.market(c, market="spot")
    c.output("basis", perp.mid - spot.mid)
    perp_only = hs.streams.synthetic(200, seed=1, market="perp")
    wrong = hs.streams.merge(perp_only, hs.streams.synthetic(200, seed=1, market="fut"))
    for backend in ("python", "cpp"):
        with pytest.raises(EventsError, match=r"unknown trigger 'fut.book'"):
            hs.compile(c, backend=backend).replay(wrong)


def pair_fit_circuit() -> hs.Circuit:
    """A perp + spot circuit with one parameter: spot's basis against perp, and spot's mid to label."""
    c = hs.Circuit("needs_spot")
    perp, spot = hs.lib.market(c, market="perp"), hs.lib.market(c, market="spot")
    c.output("pred", hs.lib.basis(spot, perp) * c.parameter("w", init=0.1))
    c.output("spot.mid", spot.mid)
    return c


MISSING_SPOT = (
    r"kernel 'needs_spot' triggers on \['spot.book', 'spot.trade'\] of market\(s\) 'spot', which the stream "
    r"does not hold \(its markets: perp\)"
)


def test_record_and_fit_on_a_stream_without_a_market_of_the_circuit_name_it() -> None:
    perp_only = hs.streams.synthetic(3000, seed=1, market="perp")
    for backend in ("python", "cpp"):
        with pytest.raises(EventsError, match=MISSING_SPOT):
            hs.replay.record(hs.compile(pair_fit_circuit(), backend=backend), perp_only)
    with pytest.raises(EventsError, match=MISSING_SPOT):
        hs.fit.fit(pair_fit_circuit(), perp_only, target="pred", label=("spot.mid", 1.0))
    with pytest.raises(EventsError, match=MISSING_SPOT):  # batches: the first one's dictionary names the markets
        hs.replay.record(hs.compile(pair_fit_circuit()), perp_only.to_batches(max_chunksize=500))
    both = hs.streams.merge(perp_only, hs.streams.synthetic(3000, seed=2, market="spot"))
    rec = hs.replay.record(hs.compile(pair_fit_circuit()), both)
    assert np.isfinite(rec.table.column("pred").to_numpy(zero_copy_only=False)).sum() > 1000


def test_a_stream_without_market_names_is_not_checked_for_markets() -> None:
    c = hs.Circuit("plain")
    c.output("mid", hs.lib.market(c).mid)
    rec = hs.replay.record(hs.compile(c), hs.streams.synthetic(2000, seed=1))
    assert np.isfinite(rec.table.column("mid").to_numpy(zero_copy_only=False)).sum() > 1000
    # a named circuit on an unnamed stream: the replay's own error, as before
    with pytest.raises(EventsError, match=r"unknown trigger 'book'"):
        hs.replay.record(hs.compile(pair_fit_circuit()), hs.streams.synthetic(2000, seed=1))


# ----- cross-market signals against a brute-force computation from the two quotes files -------------------------
HORIZON = 1.0  # seconds of the lagged return
HALFLIFE = 2.0  # of the lead-lag pressure


def cross_circuit() -> hs.Circuit:
    c = hs.Circuit("cross")
    perp, spot = hs.lib.market(c, market="perp"), hs.lib.market(c, market="spot")
    c.output("basis", hs.lib.basis(perp, spot))
    c.output("spot_ret", hs.lib.market_return(spot, HORIZON))
    c.output("perp_ret", hs.lib.past_return(perp.mid, HORIZON))
    (lead,) = hs.lib.lead_pressure(spot, [HALFLIFE])
    c.output("lead_on_perp_trades", perp.trade_amount * 0.0 + lead)  # updates on perp trades only
    return c


def mid_as_of_rows(events: pa.Table, market: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mid after each event row, quote times, quote mids) of one market, from its quotes file: quote j is the
    top after that market's book message at its time, and holds until the market's next quote."""
    quotes = tardis_csv.read_quotes(pair_file(market, "quotes"))
    qt = quotes.column("t").to_numpy()
    qmid = (quotes.column("quote_bid_price").to_numpy() + quotes.column("quote_ask_price").to_numpy()) / 2.0
    names = events.column("trigger").cast(pa.string()).to_numpy(zero_copy_only=False).astype(str)
    book_rows = np.flatnonzero(names == f"{market}.book")
    book_t = events.column("t").to_numpy()[book_rows]
    assert (np.diff(book_t) > 0).all()  # one book message per local timestamp
    at = np.searchsorted(book_t, qt)
    assert (book_t[at] == qt).all()
    k = np.searchsorted(book_rows[at], np.arange(events.num_rows), "right") - 1
    return np.where(k >= 0, qmid[np.maximum(k, 0)], np.nan), qt, qmid


def lagged(qt: np.ndarray, qmid: np.ndarray, t: np.ndarray, seconds: float) -> np.ndarray:
    """The mid as of `seconds` before each time (the last quote at or before it), nan before the first quote."""
    k = np.searchsorted(qt, t - round(seconds * 1e9), "right") - 1
    return np.where(k >= 0, qmid[np.maximum(k, 0)], np.nan)


def test_cross_market_signals_equal_a_brute_force_from_the_quotes_files(pair: pa.Table, backend: str) -> None:
    out = hs.compile(cross_circuit(), backend=backend).replay(pair)
    t = pair.column("t").to_numpy()
    perp, pqt, pqmid = mid_as_of_rows(pair, "perp")
    spot, sqt, sqmid = mid_as_of_rows(pair, "spot")
    got = {name: out.column(name).to_numpy(zero_copy_only=False) for name in out.column_names[1:]}
    np.testing.assert_array_equal(got["basis"], (perp - spot) / spot * 1e4)
    np.testing.assert_array_equal(got["spot_ret"], (spot / lagged(sqt, sqmid, t, HORIZON) - 1.0) * 1e4)
    np.testing.assert_array_equal(got["perp_ret"], (perp / lagged(pqt, pqmid, t, HORIZON) - 1.0) * 1e4)
    assert np.isfinite(got["basis"]).mean() > 0.99 and np.isfinite(got["spot_ret"]).mean() > 0.99
    assert 0.5 < np.nanstd(got["basis"]) < 20 and np.nanmean(np.abs(got["spot_ret"])) > 0.05


def test_lead_pressure_is_the_other_markets_decayed_flow_read_on_this_markets_trades(
    pair: pa.Table, backend: str
) -> None:
    from harness.ops.numeric import decay_weight

    out = hs.compile(cross_circuit(), backend=backend).replay(pair)
    names = pair.column("trigger").cast(pa.string()).to_numpy(zero_copy_only=False).astype(str)
    t = pair.column("t").to_numpy()
    flow = (pair.column("spot.trade_amount").to_numpy(zero_copy_only=False)
            * pair.column("spot.trade_side").to_numpy(zero_copy_only=False))  # fmt: skip
    want = np.full(pair.num_rows, np.nan)
    s, last, seen = None, 0, None
    for r in range(pair.num_rows):
        if names[r] == "spot.trade":
            s = flow[r] if s is None else s * decay_weight(int(t[r] - last), HALFLIFE) + flow[r]
            last = int(t[r])
        if names[r] == "perp.trade" and s is not None:
            seen = s
        want[r] = np.nan if seen is None else seen
    got = out.column("lead_on_perp_trades").to_numpy(zero_copy_only=False)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)  # the kernel adds 0.0 * amount: exact here
    assert np.isfinite(got).sum() > 10_000

"""The book's price grid and its flat ladder: grid indices for real tick sizes, a given tick (prices off it are
errors), an inferred decimal grid made finer when a price needs it, levels far from the touch and a touch that
jumps across the ladder's window; C++ and the reference agree on every row."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tables import book_row, market_events

import harness as hs
from harness.errors import EventsError
from harness.lib.book import SCALES, grid_index

B, A = 1.0, -1.0


def grid_circuit(tick: float = 0.0) -> hs.Circuit:
    c = hs.Circuit(f"grid_{str(tick).replace('.', '_').replace('-', '_')}")
    md = hs.lib.market(c, tick=tick)
    for f in ("bid_price", "bid_size", "ask_price", "ask_size", "mid", "crossed"):
        c.output(f, getattr(md, f))
    c.output("bid_depth3", md.bid_depth(3))
    c.output("ask_depth40", md.ask_depth(40))
    bid_band, ask_band = hs.lib.band_depth(md, 2.5)
    c.output("bid_band", bid_band)
    c.output("ask_band", ask_band)
    c.output("fair", hs.lib.impulse(md, 0.5, recompute_every=5, reanchor=4.0))
    c.output("fair_wide", hs.lib.impulse(md, 50.0))
    return c


_KERNELS: dict[tuple[str, float], hs.Kernel] = {}


def kernel(backend: str, tick: float = 0.0) -> hs.Kernel:
    key = (backend, tick)
    if key not in _KERNELS:
        _KERNELS[key] = hs.compile(grid_circuit(tick), backend=backend)
    k = _KERNELS[key]
    k.reset()
    return k


def both(table: pa.Table, tick: float = 0.0) -> pa.Table | str:
    """The replay on both backends (or the error message), asserted identical."""
    results: list[pa.Table | str] = []
    for backend in ("python", "cpp"):
        try:
            results.append(kernel(backend, tick).replay(table))
        except EventsError as e:
            results.append(str(e))
    if isinstance(results[0], str) or isinstance(results[1], str):
        assert results[0] == results[1]
    else:
        assert results[1].equals(results[0])
    return results[0]


@pytest.mark.parametrize(
    ("price", "tick", "index"),
    [
        (60000.1, 0.1, 600001),
        (0.3, 0.1, 3),
        (0.1 + 0.2, 0.1, 3),  # 0.30000000000000004: the same level as 0.3
        (1234.56, 0.01, 123456),
        (0.00001234, 1e-8, 1234),
        (60000.12345678, 1e-8, 6000012345678),
        (-2.5, 0.5, -5),
        (100.0, 1.0, 100),
    ],
)
def test_grid_index_is_exact_for_real_tick_sizes(price: float, tick: float, index: int) -> None:
    assert grid_index(price, 1.0 / tick) == index


@pytest.mark.parametrize(
    ("price", "tick"),
    [(60000.15, 0.1), (1.005, 0.01), (0.000012345, 1e-8), (100.5, 1.0), (float("inf"), 0.1), (1e300, 0.01)],
)
def test_prices_off_the_grid_have_no_index(price: float, tick: float) -> None:
    assert grid_index(price, 1.0 / tick) is None


def test_every_decimal_grid_holds_its_own_multiples() -> None:
    for d, scale in enumerate(SCALES):
        for k in (1, 7, 123, 99_999, 123_456_789):
            assert grid_index(k / 10**d, scale) == k, (d, k)


def test_a_given_tick_rejects_a_price_off_its_grid() -> None:
    rows = [book_row(1, [(B, 100.0, 1.0), (A, 100.5, 1.0)], 1.0), book_row(2, [(B, 100.25, 2.0)])]
    msg = both(market_events(rows), tick=0.5)
    assert isinstance(msg, str)
    assert "row 1 (t=2, trigger 'book')" in msg and "price 100.25 is off the price grid of tick 0.5" in msg
    out = both(market_events(rows[:1]), tick=0.5)
    assert not isinstance(out, str) and out.column("mid").to_pylist() == [100.25]


def test_an_inferred_grid_becomes_finer_when_a_price_needs_it() -> None:
    rows = [
        book_row(1, [(B, 100.0, 1.0), (B, 99.0, 2.0), (A, 101.0, 3.0)], 1.0),  # integers: tick 1
        book_row(2, [(B, 100.5, 4.0)]),  # tick 0.1
        book_row(3, [(A, 100.75, 1.0), (A, 100.8, 2.0)]),  # tick 0.01
        book_row(4, [(B, 100.5, 0.0), (A, 100.75, 0.0)]),
        book_row(5, [(B, 100.00000001, 5.0)]),  # tick 1e-8
    ]
    out = both(market_events(rows))
    assert not isinstance(out, str)
    assert out.column("bid_price").to_pylist() == [100.0, 100.5, 100.5, 100.0, 100.00000001]
    assert out.column("ask_price").to_pylist() == [101.0, 101.0, 100.75, 100.8, 100.8]
    assert out.column("bid_depth3").to_pylist() == [3.0, 7.0, 7.0, 3.0, 8.0]
    assert out.column("ask_depth40").to_pylist() == [3.0, 3.0, 6.0, 5.0, 5.0]


def test_a_price_on_no_decimal_grid_is_an_error() -> None:
    rows = [book_row(1, [(B, 1.0 / 3.0, 1.0)], 1.0)]
    msg = both(market_events(rows))
    assert isinstance(msg, str) and "lies on no decimal price grid of at most 12 decimals" in msg
    assert "hs.lib.market(c, tick=...)" in msg


def test_an_infinite_price_is_an_error() -> None:
    msg = both(market_events([book_row(1, [(A, float("inf"), 1.0)], 1.0)]))
    assert isinstance(msg, str) and "a level update has price inf; prices must be finite" in msg


def test_the_tick_parameter_is_checked() -> None:
    with pytest.raises(hs.CircuitError, match="tick=-0.1 is out of range"):
        hs.lib.market(hs.Circuit("bad_tick"), tick=-0.1)


def test_levels_far_from_the_touch_and_a_touch_that_jumps() -> None:
    """Levels 10^5..10^6 ticks away (outside the ladder's window), a snapshot that moves the whole book far
    away, a touch that walks across the window; deleting far levels brings the deeper ones to the top."""
    rows = [
        book_row(1, [(B, 100.0, 1.0), (B, 0.5, 2.0), (A, 100.01, 1.0), (A, 9000.0, 4.0)], 1.0),
        book_row(2, [(B, 100.0, 0.0), (A, 100.01, 0.0)]),  # the best levels are now the far ones
        book_row(3, [(B, 5000.0, 1.0), (A, 5000.01, 1.0)], 1.0),  # a snapshot 490,000 ticks away
    ]
    price = 5000.0
    for t in range(4, 60):  # walk the touch up 700 ticks per message, leaving the old bids behind
        ask = round(price + 0.01, 2)
        price = round(price + 7.0, 2)
        rows.append(book_row(t, [(B, price, 1.0), (A, ask, 0.0), (A, round(price + 0.01, 2), 1.0)]))
    out = both(market_events(rows))
    assert not isinstance(out, str)
    assert out.column("bid_price").to_pylist()[:3] == [100.0, 0.5, 5000.0]
    assert out.column("ask_price").to_pylist()[:3] == [100.01, 9000.0, 5000.01]
    assert out.column("bid_price").to_pylist()[-1] == price and out.column("crossed").to_pylist()[-1] == 0.0
    assert out.column("bid_depth3").to_pylist()[-1] == 3.0


def _prices(d: int, center: int, offsets: list[int]) -> list[float]:
    return [(center + o) / 10**d for o in offsets]


offsets = st.one_of(st.integers(-30, 30), st.integers(-200_000, 200_000))


@st.composite
def grid_streams(draw: st.DrawFn) -> pa.Table:
    d = draw(st.sampled_from([0, 1, 2, 8]))
    center = draw(st.integers(10_000, 10_000_000))
    rows = []
    for t in range(1, draw(st.integers(2, 25))):
        if draw(st.integers(0, 9)) == 0:
            center += draw(st.integers(-100_000, 100_000))  # the touch jumps
        n = draw(st.integers(0, 8))
        sides = draw(st.lists(st.sampled_from([B, A]), min_size=n, max_size=n))
        offs = draw(st.lists(offsets, min_size=n, max_size=n))
        amounts = draw(st.lists(st.sampled_from([0.0, 0.0, 0.5, 1.0, 2.5]), min_size=n, max_size=n))
        prices = _prices(d, center, [-abs(o) - 1 if s > 0 else abs(o) for s, o in zip(sides, offs, strict=True)])
        snapshot = 1.0 if t == 1 or draw(st.integers(0, 14)) == 0 else 0.0
        rows.append(book_row(t, list(zip(sides, prices, amounts, strict=True)), snapshot))
    return market_events(rows)


@given(grid_streams())
def test_random_grids_and_jumps_both_backends_agree(table: pa.Table) -> None:
    both(table)


def test_two_impulses_share_one_book() -> None:
    c = hs.Circuit("two_fairs")
    md = hs.lib.market(c)
    near, far = hs.lib.impulse(md, 1.0), hs.lib.impulse(md, 5.0)
    assert near.inputs == far.inputs == (md.node,)  # both read the one book's levels

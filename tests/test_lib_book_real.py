"""Acceptance: the real BTCUSDT L2 file replayed through `hs.lib.market` reproduces tardis' quotes file."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from conftest import SHARED_DATA, real_data_missing

import harness as hs
from harness.streams import tardis_csv

DAY = SHARED_DATA / "derived" / "binance-futures_2024-08-08"
L2 = DAY / "binance-futures_incremental_book_L2_2024-08-08_BTCUSDT.csv.gz"
TRADES = DAY / "binance-futures_trades_2024-08-08_BTCUSDT.csv.gz"
QUOTES = DAY / "binance-futures_quotes_2024-08-08_BTCUSDT.csv.gz"
TOP = ("bid_price", "bid_size", "ask_price", "ask_size")


@pytest.fixture(scope="module")
def events() -> pa.Table:
    for path in (L2, TRADES, QUOTES):
        if not path.exists():
            pytest.skip(real_data_missing(path))
    return hs.streams.tardis(book=L2, trades=TRADES)


def bbo() -> hs.Circuit:
    c = hs.Circuit("bbo")
    md = hs.lib.market(c)
    for name in TOP:
        c.output(name, getattr(md, name))
    c.output("crossed", md.crossed)
    c.output("flow", md.signed_amount)
    return c


def top_of_book_changes(out: pa.Table, trigger: pa.ChunkedArray) -> dict[str, np.ndarray]:
    """The top of book after each book message, keeping a row only where it differs from the previous one."""
    rows = out.filter(pc.equal(trigger.cast(pa.string()), "book")).drop_null()
    cols = {name: rows.column(name).to_numpy() for name in ("t", *TOP)}
    keep = np.ones(rows.num_rows, dtype=bool)
    keep[1:] = np.any([np.diff(cols[name]) != 0 for name in TOP], axis=0)
    return {name: v[keep] for name, v in cols.items()}


def test_replayed_book_reproduces_the_quotes_file(events: pa.Table, backend: str) -> None:
    out = hs.compile(bbo(), backend=backend).replay(events)
    assert out.column("crossed").to_pylist()[-1] == 0.0
    ours = top_of_book_changes(out, events.column("trigger"))
    quotes = tardis_csv.read_quotes(QUOTES)
    theirs = {
        "t": quotes.column("t").to_numpy(),
        "bid_price": quotes.column("quote_bid_price").to_numpy(),
        "bid_size": quotes.column("quote_bid_amount").to_numpy(),
        "ask_price": quotes.column("quote_ask_price").to_numpy(),
        "ask_size": quotes.column("quote_ask_amount").to_numpy(),
    }
    assert len(ours["t"]) == len(theirs["t"]) == quotes.num_rows > 5000
    for name in ("t", *TOP):
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)


def test_trade_flow_matches_the_trades_file(events: pa.Table) -> None:
    out = hs.compile(bbo()).replay(events)
    is_trade = pc.equal(events.column("trigger").cast(pa.string()), "trade")
    flow = out.filter(is_trade).column("flow").to_numpy()
    trades = events.filter(is_trade)
    want = trades.column("trade_amount").to_numpy() * trades.column("trade_side").to_numpy()
    np.testing.assert_array_equal(flow, want)
    assert (np.abs(flow) > 0).all()

"""The L2 book and market inputs (`hs.lib`): golden values, crossed modes, errors, both backends agree."""

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
from harness.errors import EventsError

FIELDS = ("bid_price", "bid_size", "ask_price", "ask_size", "mid", "wmid", "spread", "crossed")


def bbo_circuit(crossed: str = "invalid", name: str = "book_fields") -> hs.Circuit:
    c = hs.Circuit(f"{name}_{crossed}")
    md = hs.lib.market(c, crossed=crossed)
    for f in FIELDS:
        c.output(f, getattr(md, f))
    c.output("bid_depth2", md.bid_depth(2))
    c.output("ask_depth2", md.ask_depth(2))
    c.output("bid_depth5", md.bid_depth(5))
    c.output("ask_depth5", md.ask_depth(5))
    c.output("book_mid", md.node)  # the Book node's own value
    c.output("flow", md.signed_amount)
    return c


_KERNELS: dict[tuple[str, str], hs.Kernel] = {}


def kernel(backend: str, crossed: str = "invalid") -> hs.Kernel:
    """One kernel per backend and mode for the module (kernels compile once per session cache)."""
    key = (backend, crossed)
    if key not in _KERNELS:
        _KERNELS[key] = hs.compile(bbo_circuit(crossed), backend=backend)
    k = _KERNELS[key]
    k.reset()
    return k


B, A = 1.0, -1.0
GOLDEN = [
    book_row(1, [(B, 100.0, 1.0), (B, 99.0, 2.0), (A, 101.0, 3.0), (A, 102.0, 4.0)], snapshot=1.0),
    trade_row(2, 101.0, 0.5, 1.0),
    book_row(3, [(A, 101.0, 0.0), (B, 100.5, 2.0)]),  # delete the best ask, new best bid
    book_row(4, [(A, 102.0, 0.0)]),  # the ask side is now empty
    book_row(5, [(A, 100.0, 1.0)]),  # crossed: 100.5 >= 100
    book_row(6, [(B, 100.5, 0.0)]),  # still crossed: 100 >= 100
    book_row(7, [(B, 100.0, 0.0), (A, 55.0, 0.0)]),  # uncrossed (deleting a missing level is a no-op)
    trade_row(8, 99.5, 0.25, -1.0),
    book_row(9, [(B, 50.0, 1.0), (A, 51.0, 1.0)], snapshot=1.0),  # a snapshot replaces the book
    book_row(10, [(B, 49.0, 2.0)], snapshot=2.0),  # ... and its continuation adds to it
]
N = None
EXPECTED = {
    #            1      2      3      4      5    6    7     8     9     10
    "bid_price": [100.0, 100.0, 100.5, 100.5, N, N, 99.0, 99.0, 50.0, 50.0],
    "bid_size": [1.0, 1.0, 2.0, 2.0, N, N, 2.0, 2.0, 1.0, 1.0],
    "ask_price": [101.0, 101.0, 102.0, N, N, N, 100.0, 100.0, 51.0, 51.0],
    "ask_size": [3.0, 3.0, 4.0, N, N, N, 1.0, 1.0, 1.0, 1.0],
    "mid": [100.5, 100.5, 101.25, N, N, N, 99.5, 99.5, 50.5, 50.5],
    "wmid": [100.25, 100.25, 101.0, N, N, N, (99.0 * 1 + 100.0 * 2) / 3, (99.0 * 1 + 100.0 * 2) / 3, 50.5, 50.5],
    "spread": [1.0, 1.0, 1.5, N, N, N, 1.0, 1.0, 1.0, 1.0],
    "crossed": [0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0],
    "bid_depth2": [3.0, 3.0, 3.0, 3.0, N, N, 2.0, 2.0, 1.0, 3.0],
    "ask_depth2": [7.0, 7.0, 4.0, N, N, N, 1.0, 1.0, 1.0, 1.0],
    "bid_depth5": [3.0, 3.0, 5.0, 5.0, N, N, 2.0, 2.0, 1.0, 3.0],
    "ask_depth5": [7.0, 7.0, 4.0, N, N, N, 1.0, 1.0, 1.0, 1.0],
    "book_mid": [100.5, 100.5, 101.25, N, N, N, 99.5, 99.5, 50.5, 50.5],
    "flow": [N, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, -0.25, -0.25, -0.25],
}


def test_golden_book(backend: str) -> None:
    out = kernel(backend).replay(market_events(GOLDEN))
    for name, want in EXPECTED.items():
        assert out.column(name).to_pylist() == want, name


def test_golden_book_event_by_event_with_call(backend: str) -> None:
    k = kernel(backend)
    for i, row in enumerate(GOLDEN):
        values = {key: v for key, v in row.items() if key not in ("t", "trigger")}
        k.call(row["trigger"], t=row["t"], **values)
        assert k.value("mid") == EXPECTED["mid"][i]
        assert k.value("crossed") == EXPECTED["crossed"][i]


def test_book_survives_any_chunking(backend: str) -> None:
    """List columns sliced at any offset (record batches of 1..4 rows) give the same result."""
    table = market_events(GOLDEN * 3)
    table = table.set_column(0, "t", pa.array(np.arange(1, table.num_rows + 1, dtype=np.int64)))
    whole = kernel(backend).replay(table)
    for size in (1, 3, 4):
        k = kernel(backend)
        parts = [k.replay(batch) for batch in table.to_batches(max_chunksize=size)]
        assert pa.concat_tables(parts).equals(whole), size


def test_crossed_error_mode_names_row_and_prices(backend: str) -> None:
    k = kernel(backend, "error")
    with pytest.raises(EventsError) as err:
        k.replay(market_events(GOLDEN))
    msg = str(err.value)
    assert "row 4 (t=5, trigger 'book')" in msg
    assert "the book is crossed after this message (best bid 100.5 >= best ask 100.0)" in msg
    # the failing batch left no trace: the state is the one before the batch
    assert k.value("mid") is None
    again = k.replay(market_events(GOLDEN[:4]))
    assert again.column("mid").to_pylist() == EXPECTED["mid"][:4]


BAD = [
    (
        [(B, math.nan, 1.0)],
        "a level update has price nan (amount 1.0)",
    ),
    ([(B, 100.0, -1.0)], "a level update at price 100.0 has amount -1.0; amounts must be >= 0"),
    ([(B, 100.0, math.nan)], "a level update at price 100.0 has amount nan; amounts must be >= 0"),
    ([(0.0, 100.0, 1.0)], "a level update at price 100.0 has side 0.0; sides are +1 (bid) or -1 (ask)"),
]


@pytest.mark.parametrize(("levels", "rule"), BAD, ids=["nan-price", "negative", "nan-amount", "side"])
def test_bad_level_updates_are_named(backend: str, levels: list[tuple[float, float, float]], rule: str) -> None:
    rows = [GOLDEN[0], book_row(2, [(B, 99.5, 1.0), *levels])]
    with pytest.raises(EventsError, match="row 1 \\(t=2, trigger 'book'\\)") as err:
        kernel(backend).replay(market_events(rows))
    assert rule in str(err.value)


def test_list_lengths_must_agree(backend: str) -> None:
    rows = [book_row(1, [(B, 100.0, 1.0)])]
    rows[0]["book_amount"] = [1.0, 2.0]
    with pytest.raises(EventsError, match="side, price and amount lists differ in length \\(1 prices, 2\\)"):
        kernel(backend).replay(market_events(rows))


def test_null_list_in_a_book_row_is_named(backend: str) -> None:
    rows = [book_row(1, [(B, 100.0, 1.0)])]
    rows[0]["book_price"] = None
    with pytest.raises(EventsError, match="book_price"):
        kernel(backend).replay(market_events(rows))


def test_error_messages_identical_across_backends() -> None:
    rows = [GOLDEN[0], book_row(2, [(B, 100.0, -2.0)])]
    messages = []
    for backend in ("python", "cpp"):
        with pytest.raises(EventsError) as err:
            kernel(backend).replay(market_events(rows))
        messages.append(str(err.value))
    assert messages[0] == messages[1]


def test_crossed_choice_is_checked() -> None:
    c = hs.Circuit("bad_mode")
    with pytest.raises(hs.CircuitError, match="crossed"):
        hs.lib.market(c, crossed="ignore")


def test_list_input_cannot_be_an_output() -> None:
    c = hs.Circuit("list_out")
    hs.lib.market(c)
    with pytest.raises(hs.CircuitError, match="list input"):
        c.output("prices", c.inputs["book_price"])


def test_synthetic_stream_both_backends_agree() -> None:
    ev = hs.streams.synthetic(20_000, seed=3)
    ref = kernel("python").replay(ev)
    out = kernel("cpp").replay(ev)
    assert out.equals(ref)
    assert out.column("crossed").to_pylist()[-1] == 0.0  # the generator never crosses its book
    valid = out.column("spread").drop_null().to_numpy()
    assert len(valid) > 10_000 and (valid > 0).all()


levels_strategy = st.lists(
    st.tuples(
        st.sampled_from([B, A]),
        st.integers(95, 105).map(float),
        st.sampled_from([0.0, -0.0, 0.5, 1.0, 2.5]),  # -0.0: a delete too
    ),
    min_size=0,
    max_size=6,
)
message_strategy = st.one_of(
    st.tuples(st.just("book"), levels_strategy, st.sampled_from([0.0, 0.0, 0.0, 1.0, 2.0])),
    st.tuples(st.just("trade"), st.floats(90, 110), st.sampled_from([1.0, -1.0, 0.0])),
)


def random_events(messages: list[tuple[Any, ...]]) -> pa.Table:
    rows = []
    for t, m in enumerate(messages, start=1):
        if m[0] == "book":
            rows.append(book_row(t, m[1], snapshot=m[2]))
        else:
            rows.append(trade_row(t, m[1], 1.0, m[2]))
    return market_events(rows)


@given(st.lists(message_strategy, min_size=1, max_size=40), st.sampled_from(["invalid", "error"]))
def test_random_messages_both_backends_agree(messages: list[tuple[Any, ...]], mode: str) -> None:
    table = random_events(messages)
    results = []
    for backend in ("python", "cpp"):
        try:
            results.append(kernel(backend, mode).replay(table))
        except EventsError as e:
            results.append(str(e))
    if isinstance(results[0], str) or isinstance(results[1], str):
        assert results[0] == results[1]
    else:
        assert results[0].equals(results[1])

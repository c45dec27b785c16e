"""The synthetic L2 + trades stream: seeded and chunk-invariant, a consistent book, realistic statistics, a signal.

A small pure-Python order book (a dict per side, sizes in whole lots) replays the book rows and checks, at
every event, what `harness.streams.synthetic` guarantees:

* the book is never crossed and, after the first (snapshot) message, no side is ever empty;
* prices are unique within a message;
* trades walk the book as it stands after the last book message: a buy (+1) fills at the lowest ask level
  that still has volume once the earlier fills since that message are taken off (so at >= the best ask),
  a sell (-1) at the highest such bid level, and never for more than the volume left there;
* the next book message updates every level traded since the previous one, deletes every level emptied
  by trades, and after a sweep (fills at more than one price of a side) shows the last level traded, with exactly the
  volume left, as the new best.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from conftest import SHARED_DATA, real_data_missing
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.errors import HarnessError
from harness.streams import schema
from harness.streams.synthetic import SyntheticParams, synthetic, synthetic_batches

REAL = SHARED_DATA / "derived" / "binance-futures_2024-08-08"
TICK, LOT = 0.1, 0.001

# Bands for the statistics of the stream (default parameters, 150k events, ~30 min of market time): from the
# README line "BTCUSDT 2024: spread is one tick (0.1) 99.2% of the time; depth messages every ~50 ms (~1,285
# level rows/s, 85% of them more than 100 ticks from the touch); ~62 trades/s, very bursty, median size 0.016
# BTC, lognormal-ish with a spike at the 0.002 minimum", and, where it gives no number, measured on the real
# files by `real_stats` below (the real value in brackets; `test_the_real_sample_lies_in_the_bands` checks it).
BANDS = {
    "one_tick_spread_share": (0.95, 1.0),  # README 99.2% [0.991 of the top-of-book updates]
    "message_gap_ms": (35.0, 70.0),  # README ~50 ms [52.6]
    "level_rows_per_s": (900.0, 1800.0),  # README ~1,285 [1,286]
    "rows_per_message_median": (25.0, 45.0),  # [34]
    "deep_row_share": (0.70, 0.95),  # README 85% [0.840]
    "trades_per_s": (40.0, 90.0),  # README ~62 [62.1]
    "trade_size_median": (0.008, 0.03),  # README 0.016 [0.016]
    "min_lot_share": (0.15, 0.27),  # share of trades of exactly 0.002 [0.209]
    "same_time_share": (0.6, 0.9),  # "very bursty": trades at the previous trade's (exchange) time [0.753]
    "trades_per_second_cv": (1.2, 4.0),  # "very bursty": std / mean of the trade count in 1 s bins [2.3]
}
SIGNAL_CORRELATION_ON = 0.04  # corr(tanh(flow over the last 1 s / flow_scale), next mid move) above this ...
SIGNAL_CORRELATION_OFF = 0.025  # ... and within +-this with signal=0 (~35k messages: one s.e. ~0.005)


# ----------------------------------------------------------------------------------------------------------
# reference replay


@dataclass
class Replay:
    """What the reference book saw: per book message (after it) and per trade."""

    msg_t: list[int] = field(default_factory=list)
    bid: list[int] = field(default_factory=list)  # best bid (ticks) after each message
    ask: list[int] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)  # level rows per message
    deep_rows: int = 0  # rows more than 100 ticks from the touch after their message (incremental messages)
    counted_rows: int = 0
    sweeps: int = 0  # trade intervals with fills at more than one price
    checked_trades: int = 0


def ticks(price: float) -> int:
    return round(price / TICK)


def lots(amount: float) -> int:
    return round(amount / LOT)


class Side:
    """One side of the book: sizes by price (ticks) and a lazy heap for the best price."""

    def __init__(self, sign: int) -> None:
        self.sign = sign  # +1 bid (best = highest), -1 ask (best = lowest)
        self.levels: dict[int, int] = {}
        self.heap: list[int] = []

    def set(self, price: int, size: int) -> None:
        if size == 0:
            self.levels.pop(price, None)
        else:
            if price not in self.levels:
                heapq.heappush(self.heap, -self.sign * price)
            self.levels[price] = size

    def clear(self) -> None:
        self.levels.clear()
        self.heap.clear()

    def best(self) -> int | None:
        while self.heap and -self.sign * self.heap[0] not in self.levels:
            heapq.heappop(self.heap)
        return -self.sign * self.heap[0] if self.heap else None


def replay(table: pa.Table) -> Replay:
    """Replay `table` through the reference book, asserting the guarantees; returns what it saw."""
    out = Replay()
    trig = table.column("trigger").combine_chunks().indices.to_numpy()
    t = table.column("t").to_numpy()
    lists = {}
    for name in ("book_side", "book_price", "book_amount"):
        col = table.column(name).combine_chunks()
        lists[name] = col.values.to_numpy().tolist()
        offsets = col.offsets.to_numpy()
    snap = table.column("book_snapshot").to_numpy(zero_copy_only=False)
    tprice = table.column("trade_price").to_numpy(zero_copy_only=False)
    tamount = table.column("trade_amount").to_numpy(zero_copy_only=False)
    tside = table.column("trade_side").to_numpy(zero_copy_only=False)
    sides = {1: Side(1), -1: Side(-1)}
    traded: dict[tuple[int, int], int] = {}  # (book side, price) -> lots traded since the last message
    size_then: dict[tuple[int, int], int] = {}  # (book side, price) -> its size after the last message
    last_traded: dict[int, int] = {}  # book side -> last price traded there since the last message
    seen_book = False
    for i in range(len(trig)):
        if trig[i] == schema.CODES[schema.BOOK]:
            lo, hi = offsets[i], offsets[i + 1]
            if snap[i] == schema.SNAPSHOT_START:
                sides[1].clear()
                sides[-1].clear()
            else:
                assert snap[i] == schema.SNAPSHOT_NONE, f"row {i}: unexpected book_snapshot {snap[i]}"
                assert seen_book, "the stream must start with a snapshot"
            updated = set()
            for side, price, amount in zip(
                lists["book_side"][lo:hi], lists["book_price"][lo:hi], lists["book_amount"][lo:hi], strict=True
            ):
                key = (int(side), ticks(price))
                assert key not in updated, f"row {i}: price {price} twice in one message"
                updated.add(key)
                sides[key[0]].set(key[1], lots(amount))
            bid, ask = sides[1].best(), sides[-1].best()
            assert bid is not None and ask is not None, f"row {i}: empty side after a book message"
            assert bid < ask, f"row {i}: crossed book, bid {bid} >= ask {ask}"
            for key, n in traded.items():
                assert key in updated, f"row {i}: traded level {key} not updated by the next message"
                if n == size_then[key]:
                    assert key[1] not in sides[key[0]].levels, f"row {i}: emptied level {key} still in the book"
            for s, price in last_traded.items():
                if len({q for (side, q) in traded if side == s}) > 1:  # a sweep on that side
                    out.sweeps += 1
                    assert sides[s].best() == price, f"row {i}: the sweep's last level {price} is not the new best"
                    left = size_then[(s, price)] - traded[(s, price)]
                    assert sides[s].levels[price] == left, f"row {i}: the sweep's last level does not show {left}"
            traded, size_then, last_traded = {}, {}, {}
            if seen_book:
                for side, price in zip(lists["book_side"][lo:hi], lists["book_price"][lo:hi], strict=True):
                    d = (bid - ticks(price)) if side > 0 else (ticks(price) - ask)
                    out.deep_rows += d > 100
                out.counted_rows += hi - lo
            seen_book = True
            out.msg_t.append(int(t[i]))
            out.bid.append(bid)
            out.ask.append(ask)
            out.rows.append(int(hi - lo))
        else:
            assert trig[i] == schema.CODES[schema.TRADE], f"row {i}: unexpected trigger code {trig[i]}"
            assert seen_book, "a trade before the first book message"
            s = int(tside[i])
            assert s in (1, -1), f"row {i}: trade side {tside[i]}"
            book = sides[-s]  # a buy (+1) takes from the asks (-1)
            price, amount = ticks(tprice[i]), lots(tamount[i])
            assert amount >= 1, f"row {i}: trade amount {tamount[i]}"
            assert price in book.levels, f"row {i}: trade at {tprice[i]} where the book has no level"
            key = (-s, price)
            size_then.setdefault(key, book.levels[price])
            left = book.levels[price] - traded.get(key, 0)
            assert amount <= left, f"row {i}: trade of {amount} lots where {left} are left"
            for q in range(book.best(), price, s):  # every better level is already emptied by this interval
                if q in book.levels:
                    assert traded.get((-s, q), 0) == book.levels[q], f"row {i}: trade at {price} skips level {q}"
            traded[key] = traded.get(key, 0) + amount
            last_traded[-s] = price
            out.checked_trades += 1
    return out


# ----------------------------------------------------------------------------------------------------------
# statistics


def trades_of(table: pa.Table) -> pa.Table:
    return table.filter(pc.equal(table.column("trigger"), schema.TRADE))


def synthetic_stats(table: pa.Table, seen: Replay) -> dict[str, float]:
    t_msg = np.array(seen.msg_t)
    bid, ask = np.array(seen.bid[1:]), np.array(seen.ask[1:])
    rows = np.array(seen.rows[1:])  # incremental messages
    seconds = (t_msg[-1] - t_msg[0]) / 1e9
    trades = trades_of(table)
    t_trade = trades.column("t").to_numpy()
    amount = trades.column("trade_amount").to_numpy()
    per_second = np.bincount((t_trade - t_msg[0]) // 1_000_000_000)
    return {
        "one_tick_spread_share": float(np.mean(ask - bid == 1)),
        "message_gap_ms": float(np.mean(np.diff(t_msg)) / 1e6),
        "level_rows_per_s": float(rows.sum() / seconds),
        "rows_per_message_median": float(np.median(rows)),
        "deep_row_share": float(seen.deep_rows / seen.counted_rows),
        "trades_per_s": float(len(t_trade) / seconds),
        "trade_size_median": float(np.median(amount)),
        "min_lot_share": float(np.mean(np.round(amount / LOT) == 2)),
        "same_time_share": float(np.mean(np.diff(t_trade) == 0)),
        "trades_per_second_cv": float(per_second.std() / per_second.mean()),
    }


def real_stats() -> dict[str, float]:
    """The same statistics measured on the real BTCUSDT files (tardis format, timestamps in us)."""
    from pyarrow import csv

    def read(name: str) -> pa.Table:
        return csv.read_csv(REAL / f"binance-futures_{name}_2024-08-08_BTCUSDT.csv.gz")

    book, trades, quotes = read("incremental_book_L2"), read("trades"), read("quotes")
    local = book.column("local_timestamp").to_numpy()
    snapshot = book.column("is_snapshot").to_numpy(zero_copy_only=False)
    side = np.where(pc.equal(book.column("side"), "bid").to_numpy(zero_copy_only=False), 1, -1)
    price = np.round(book.column("price").to_numpy() / TICK).astype(np.int64)
    q_local = quotes.column("local_timestamp").to_numpy()
    q_bid = np.round(quotes.column("bid_price").to_numpy() / TICK).astype(np.int64)
    q_ask = np.round(quotes.column("ask_price").to_numpy() / TICK).astype(np.int64)
    starts = np.concatenate([[0], np.nonzero(np.diff(local))[0] + 1])
    seconds = (local[-1] - local[0]) / 1e6
    incremental = ~snapshot
    rows = np.diff(np.append(starts, len(local)))[~snapshot[starts]]
    touch = np.searchsorted(q_local, local, side="right") - 1  # the top of book after each message
    ok = incremental & (touch >= 0)
    distance = np.where(side == 1, q_bid[touch] - price, price - q_ask[touch])[ok]
    t_exchange = trades.column("timestamp").to_numpy()
    t_local = trades.column("local_timestamp").to_numpy()
    amount = trades.column("amount").to_numpy()
    per_second = np.bincount((t_local - t_local[0]) // 1_000_000)
    return {
        "one_tick_spread_share": float(np.mean(q_ask - q_bid == 1)),
        "message_gap_ms": float(np.mean(np.diff(local[starts])) / 1e3),
        "level_rows_per_s": float(incremental.sum() / seconds),
        "rows_per_message_median": float(np.median(rows)),
        "deep_row_share": float(np.mean(distance > 100)),
        "trades_per_s": float(len(amount) / ((t_local[-1] - t_local[0]) / 1e6)),
        "trade_size_median": float(np.median(amount)),
        "min_lot_share": float(np.mean(np.round(amount / LOT) == 2)),
        "same_time_share": float(np.mean(np.diff(t_exchange) == 0)),
        "trades_per_second_cv": float(per_second.std() / per_second.mean()),
    }


def flow_vs_next_move(table: pa.Table, seen: Replay, window_ns: int = 1_000_000_000) -> float:
    """corr(tanh(signed volume traded in (t_k - 1 s, t_k]), mid_{k+1} - mid_k) over the book messages k."""
    trades = trades_of(table)
    t_trade = trades.column("t").to_numpy()
    signed = trades.column("trade_side").to_numpy() * trades.column("trade_amount").to_numpy()
    cum = np.concatenate([[0.0], np.cumsum(signed)])
    t_msg = np.array(seen.msg_t)
    flow = cum[np.searchsorted(t_trade, t_msg, "right")] - cum[np.searchsorted(t_trade, t_msg - window_ns, "right")]
    mid = (np.array(seen.bid) + np.array(seen.ask)) / 2
    return float(np.corrcoef(np.tanh(flow[:-1] / SyntheticParams().flow_scale), np.diff(mid))[0, 1])


# ----------------------------------------------------------------------------------------------------------
# tests

N_STATS = 150_000


@pytest.fixture(scope="module")
def default_stream() -> tuple[pa.Table, Replay]:
    table = synthetic(N_STATS, seed=0)
    return table, replay(table)


def test_deterministic_for_a_seed_and_different_across_seeds() -> None:
    a = synthetic(20_000, seed=3)
    assert a.num_rows == 20_000
    assert a.equals(synthetic(20_000, seed=3))
    assert not a.equals(synthetic(20_000, seed=4))
    assert not a.equals(synthetic(20_000, seed=3, signal=0.0))


@pytest.mark.parametrize("chunk", [1_000, 7_000, 1_000_000])
def test_the_chunk_changes_the_batches_not_the_rows(chunk: int) -> None:
    n = 20_000
    batches = list(synthetic_batches(n, seed=5, chunk=chunk))
    sizes = [b.num_rows for b in batches]
    assert sum(sizes) == n and all(s == chunk for s in sizes[:-1]) and 0 < sizes[-1] <= chunk
    assert all(b.schema == schema.SCHEMA for b in batches)
    assert pa.Table.from_batches(batches).equals(synthetic(n, seed=5))


def test_a_shorter_stream_is_a_prefix_of_a_longer_one() -> None:
    assert synthetic(30_000, seed=2).slice(0, 7_777).equals(synthetic(7_777, seed=2))


def test_empty_and_single_event_streams() -> None:
    assert synthetic(0).num_rows == 0 and synthetic(0).schema == schema.SCHEMA
    assert list(synthetic_batches(0)) == []
    first = synthetic(1).to_pylist()[0]
    assert first["trigger"] == schema.BOOK and first["book_snapshot"] == schema.SNAPSHOT_START
    assert first["t"] == SyntheticParams().start_ns
    assert first["book_side"].count(schema.BID) >= 300 and first["book_side"].count(schema.ASK) >= 300


def test_schema_and_columns_are_well_formed() -> None:
    table = synthetic(30_000, seed=7, start_ns=1_000_000_000_000)
    assert table.schema == schema.SCHEMA
    t = table.column("t").to_numpy()
    assert t[0] == 1_000_000_000_000 and (np.diff(t) >= 0).all()
    assert table.column("t_local").equals(table.column("t"))
    latency = t - table.column("t_exchange").to_numpy()
    assert (latency > 0).all() and (latency < 1_000_000_000).all()
    codes = table.column("trigger").combine_chunks().indices.to_numpy()
    assert set(np.unique(codes)) == {schema.CODES[schema.BOOK], schema.CODES[schema.TRADE]}
    is_book = codes == schema.CODES[schema.BOOK]
    book, trades = table.filter(pa.array(is_book)), table.filter(pa.array(~is_book))
    snap = book.column("book_snapshot").to_numpy()
    assert snap[0] == schema.SNAPSHOT_START and (snap[1:] == schema.SNAPSHOT_NONE).all()
    lengths = [pc.list_value_length(book.column(c)).to_numpy() for c in ("book_side", "book_price", "book_amount")]
    assert (lengths[0] == lengths[1]).all() and (lengths[0] == lengths[2]).all() and (lengths[0] > 0).all()
    side = pc.list_flatten(book.column("book_side")).to_numpy()
    price = pc.list_flatten(book.column("book_price")).to_numpy()
    amount = pc.list_flatten(book.column("book_amount")).to_numpy()
    assert set(np.unique(side)) == {schema.BID, schema.ASK}
    assert np.allclose(price / TICK, np.round(price / TICK), rtol=0, atol=1e-6) and (price > 0).all()
    assert np.allclose(amount / LOT, np.round(amount / LOT), rtol=0, atol=1e-6) and (amount >= 0).all()
    assert (amount == 0).any()
    for c in schema.TRADE_COLUMNS + schema.QUOTE_COLUMNS:
        assert book.column(c).null_count == book.num_rows
    for c in schema.BOOK_COLUMNS + schema.QUOTE_COLUMNS:
        assert trades.column(c).null_count == trades.num_rows
    for c in schema.TRADE_COLUMNS:
        assert trades.column(c).null_count == 0
    tp, ta = trades.column("trade_price").to_numpy(), trades.column("trade_amount").to_numpy()
    assert np.allclose(tp / TICK, np.round(tp / TICK), rtol=0, atol=1e-6)
    assert np.allclose(ta / LOT, np.round(ta / LOT), rtol=0, atol=1e-6) and (ta > 0).all()
    assert set(np.unique(trades.column("trade_side").to_numpy())) == {schema.BUY, schema.SELL}


def test_the_book_stays_consistent_and_trades_walk_it(default_stream: tuple[pa.Table, Replay]) -> None:
    table, seen = default_stream  # `replay` asserted every guarantee while building `seen`
    assert seen.checked_trades == trades_of(table).num_rows > 50_000
    assert seen.sweeps > 200


def test_the_reference_replay_catches_broken_streams() -> None:
    rows = synthetic(3_000, seed=1).to_pylist()
    replay(pa.Table.from_pylist(rows, schema=schema.SCHEMA))  # intact: passes
    trade = next(i for i, r in enumerate(rows) if r["trigger"] == schema.TRADE)
    worse = [dict(r) for r in rows]
    worse[trade]["trade_price"] = round(worse[trade]["trade_price"] + 50 * TICK * worse[trade]["trade_side"], 1)
    with pytest.raises(AssertionError, match="no level|skips level"):
        replay(pa.Table.from_pylist(worse, schema=schema.SCHEMA))
    crossed = [dict(r) for r in rows]
    message = next(i for i, r in enumerate(rows) if i > 0 and r["trigger"] == schema.BOOK)
    best_ask = min(p for s, p in zip(rows[0]["book_side"], rows[0]["book_price"], strict=True) if s == schema.ASK)
    for name, value in (("book_side", schema.BID), ("book_price", best_ask + 100 * TICK), ("book_amount", 1.0)):
        crossed[message][name] = [*crossed[message][name], value]
    with pytest.raises(AssertionError, match="crossed"):
        replay(pa.Table.from_pylist(crossed, schema=schema.SCHEMA))


@pytest.mark.parametrize(
    ("seed", "params"),
    [
        (11, {"move_prob": 0.6, "move_ticks_mean": 4.0, "sweep_share": 1.0, "wide_prob": 0.2, "signal": 1.0}),
        (12, {"near_ticks": 12, "refresh_extra_mean": 0.0, "wide_prob": 0.5, "wide_ticks_mean": 3.0}),
        (13, {"burst_rate": 200.0, "touch_size_median": 0.01, "fills_max": 5, "rows_median": 9.0, "rows_min": 0}),
    ],
)
def test_the_book_stays_consistent_under_stress(seed: int, params: dict[str, float]) -> None:
    table = synthetic(40_000, seed=seed, **params)
    seen = replay(table)
    assert seen.checked_trades > 1_000


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    move_prob=st.floats(0.0, 1.0),
    move_ticks_mean=st.floats(1.0, 30.0),
    sweep_share=st.floats(0.0, 1.0),
    wide_prob=st.floats(0.0, 1.0),
    signal=st.floats(0.0, 1.0),
    burst_rate=st.floats(0.0, 100.0),
    near_ticks=st.integers(10, 200),
)
def test_the_book_stays_consistent_for_any_parameters(seed: int, **params: float) -> None:
    replay(synthetic(3_000, seed=seed, **params))


def test_statistics_imitate_the_real_sample(default_stream: tuple[pa.Table, Replay]) -> None:
    stats = synthetic_stats(*default_stream)
    print("synthetic:", {k: round(v, 4) for k, v in stats.items()})
    outside = {k: (v, BANDS[k]) for k, v in stats.items() if not BANDS[k][0] <= v <= BANDS[k][1]}
    assert not outside, f"statistics outside their bands: {outside}"


def test_the_real_sample_lies_in_the_bands() -> None:
    if not REAL.is_dir():
        pytest.skip(real_data_missing(REAL))
    stats = real_stats()
    print("real:", {k: round(v, 4) for k, v in stats.items()})
    outside = {k: (v, BANDS[k]) for k, v in stats.items() if not BANDS[k][0] <= v <= BANDS[k][1]}
    assert not outside, f"the real sample is outside the bands: {outside}"


def test_recent_trade_flow_predicts_the_next_mid_move(default_stream: tuple[pa.Table, Replay]) -> None:
    assert SyntheticParams().signal > 0
    on = flow_vs_next_move(*default_stream)
    table = synthetic(N_STATS, seed=0, signal=0.0)
    off = flow_vs_next_move(table, replay(table))
    print(f"corr(flow, next move): signal on {on:.4f}, off {off:.4f}")
    assert on > SIGNAL_CORRELATION_ON
    assert abs(off) < SIGNAL_CORRELATION_OFF


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_events": -1}, "n_events must be >= 0"),
        ({"n_events": 1.5}, "n_events must be an integer"),
        ({"chunk": 0}, "chunk must be >= 1"),
        ({"seed": -3}, "seed must be >= 0"),
        ({"bogus": 1}, "unknown parameter"),
        ({"move_prob": 1.5}, r"move_prob must be in \[0, 1\]"),
        ({"signal": -0.1}, r"signal must be in \[0, 1\]"),
        ({"tick": 0.0}, "tick must be > 0"),
        ({"message_gap_ms": float("nan")}, "must be finite"),
        ({"rows_min": 2.5}, "rows_min must be an integer"),
        ({"snapshot_levels": True}, "snapshot_levels must be an integer"),
        ({"fills_zipf": 1.0}, "fills_zipf must be > 1"),
        ({"latency_ms": 0.5}, "latency_ms"),
        ({"start_price": 100.0}, "start_price / tick"),
        ({"move_ticks_mean": 0.5}, "move_ticks_mean must be >= 1"),
        ({"sign_persistence": 1.0}, r"sign_persistence must be in \[0, 1\)"),
    ],
)
def test_bad_arguments_raise_before_generating(kwargs: dict[str, object], message: str) -> None:
    args = {"n_events": 10, **kwargs}
    with pytest.raises(HarnessError, match=message):
        synthetic_batches(**args)  # eager: no need to iterate


def test_params_dataclass_validates_and_is_frozen() -> None:
    with pytest.raises(HarnessError, match="wide_prob"):
        SyntheticParams(wide_prob=-1.0)
    p = SyntheticParams()
    with pytest.raises(AttributeError):
        p.tick = 0.5  # type: ignore[misc]

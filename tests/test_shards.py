"""Sharded recording (harness/replay/shards.py): shards of synthetic multi-day data against the serial replay.

What is held here, as the module docstring guarantees it: bounded-memory circuits (book, impulse, delta, timers,
last values) give the serial rows bit for bit for 2 and 3 shards and day shards; decays after the default warm-up
give the serial rows and the boundary check says so, after a short warm-up they stay within 2^(-W/h) of the
serial values and the check warns; unbounded memory is refused unless allowed.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pyarrow as pa
import pytest

import harness as hs
from harness import lib, ops
from harness.replay import shards as sh
from harness.replay.recorder import RowSink

DAY = 86_400 * 10**9
DAY0 = 1_723_075_200 * 10**9  # 2024-08-08 00:00 UTC


def days(n_days: int, per_day: int, gap_s: float = 0.0) -> pa.Table:
    """Synthetic market days, each starting with a book snapshot 1 ms after midnight (+ gap_s): what a catalog
    of daily tardis files looks like."""
    parts = [
        hs.streams.synthetic(per_day, seed=d, start_ns=DAY0 + d * DAY + 1_000_000 + round(gap_s * 1e9))
        for d in range(n_days)
    ]
    return pa.concat_tables(parts)


def continuous(n: int) -> pa.Table:
    """One synthetic stream of `n` events (a single snapshot at its start)."""
    return hs.streams.synthetic(n, seed=3)


def bounded_circuit() -> hs.Circuit:
    c = hs.Circuit("shard_bounded")
    md = lib.market(c)
    c.output("mid", md.mid)
    c.output("spread", md.spread)
    c.output("imbalance", (md.bid_size - md.ask_size) / (md.bid_size + md.ask_size))
    c.output("dmid", ops.delta(md.mid))
    c.output("fair", lib.impulse(md, distance=1.0))
    c.output("quiet", ops.timeout(md.trade_price, seconds=0.5))
    c.output("flow", md.signed_amount * 1.0)
    return c


def decay_circuit() -> hs.Circuit:
    c = hs.Circuit("shard_decay")
    md = lib.market(c)
    c.output("mid", md.mid)
    c.output("press", ops.decay_sum(md.signed_amount, halflife=0.5))
    c.output("mid_ewma", ops.ewma(md.mid, halflife=2.0))
    return c


LABELS = [("mid", (1.0, 5.0), "return")]


@pytest.fixture(scope="module")
def three_days() -> pa.Table:
    return days(3, 30_000)


def _serial(kernel, events, **kw):  # type: ignore[no-untyped-def]
    kernel.reset()
    return hs.replay.record(kernel, events, labels=LABELS, row_index=True, **kw)


@pytest.mark.parametrize("how", [{"count": 2}, {"count": 3}, {"every_s": 86_400.0}])
@pytest.mark.parametrize("sampler", [hs.replay.every_n(7, "trade"), hs.replay.every_event()])
def test_bounded_circuit_is_bit_identical(three_days: pa.Table, how: dict, sampler) -> None:  # type: ignore[no-untyped-def]
    k = hs.compile(bounded_circuit())
    serial = _serial(k, three_days, sampler=sampler)
    rec = hs.replay.record(
        k, three_days, sampler=sampler, labels=LABELS, row_index=True, shards=hs.replay.Sharding(**how)
    )
    assert len(rec.shards) == how.get("count", 3)
    assert rec.table.equals(serial.table)
    assert (rec.rows, rec.sampled, rec.dropped) == (serial.rows, serial.sampled, serial.dropped)
    assert all(info.differing == 0 for info in rec.shards)
    assert all(info.compared > 0 for info in rec.shards[1:])


def test_shards_without_rows(three_days: pa.Table) -> None:
    """More shards than days: boundaries in the nights give shards without a row; the rows are still the serial's."""
    k = hs.compile(bounded_circuit())
    serial = _serial(k, three_days, sampler=hs.replay.every_n(3))
    rec = hs.replay.record(
        k, three_days, sampler=hs.replay.every_n(3), labels=LABELS, row_index=True, shards=hs.replay.Sharding(count=10)
    )
    assert len(rec.shards) == 10 and 0 in [i.rows for i in rec.shards]
    assert rec.table.equals(serial.table)


def test_day_boundaries_move_to_the_snapshot_and_warm_up_briefly(three_days: pa.Table) -> None:
    """Day shards of daily-snapshot data start at each day's snapshot and replay little before it."""
    k = hs.compile(bounded_circuit())
    plan = sh.plan(k, hs.replay.TableSource(three_days), hs.replay.Sharding(every_s=86_400.0), 5.0, "trade")
    assert [s.start for s in plan[1:]] == [DAY0 + d * DAY + 1_000_000 for d in (1, 2)]
    t = three_days.column("t").to_numpy()
    for s in plan[1:]:
        i = int(np.searchsorted(t, s.start))
        before = i - int(np.searchsorted(t, s.warm))
        assert 0 < before < 30_000 // 4  # the previous day's last minute of events, not all of them
        assert 60e9 <= t[i - 1] - s.warm <= 65e9  # MIN_WARMUP_S before each trigger's last event (then a gap)
        assert s.until == s.end + 5 * 10**9 if s.end is not None else s.until is None


def test_warm_up_reaches_back_to_the_only_snapshot() -> None:
    """Without a snapshot after the boundary the book is rebuilt from its last snapshot: exact, just longer."""
    ev = continuous(60_000)
    k = hs.compile(bounded_circuit())
    plan = sh.plan(k, hs.replay.TableSource(ev), hs.replay.Sharding(count=2), 1.0, None)
    assert plan[1].warm is None  # from the first event: the stream's only snapshot
    serial = _serial(k, ev)
    rec = hs.replay.record(k, ev, labels=LABELS, row_index=True, shards=hs.replay.Sharding(count=2))
    assert rec.table.equals(serial.table)


def test_decays_after_the_default_warm_up_match_and_say_so(three_days: pa.Table) -> None:
    k = hs.compile(decay_circuit())
    serial = _serial(k, three_days)
    with warnings.catch_warnings():
        warnings.simplefilter("error", sh.ShardWarning)
        rec = hs.replay.record(k, three_days, labels=LABELS, row_index=True, shards=hs.replay.Sharding(count=3))
    assert [i.differing for i in rec.shards] == [0, 0, 0]
    assert rec.table.equals(serial.table)
    assert hs.replay.memory(k).warmup_s() == 96 * 2.0


def test_decays_after_a_short_warm_up_stay_within_the_bound() -> None:
    """A warm-up of 6 half-lives: the check warns, and every decayed value differs from the serial one by at most
    2^(-elapsed/h) times the range of its input (elapsed: since the warm-up's start)."""
    c = hs.Circuit("shard_ewma_input")
    x = c.input("x")
    c.trigger("tick", x)
    c.output("x", x)
    c.output("ewma", ops.ewma(x, halflife=2.0))
    t = np.arange(40_000, dtype=np.int64) * 10_000_000 + DAY0  # 100 events/s, 400 s
    values = np.cumsum(np.random.default_rng(0).normal(size=len(t)))
    tab = pa.table({"t": t, "trigger": pa.array(["tick"] * len(t)).dictionary_encode(), "x": values})
    k = hs.compile(c)
    how = hs.replay.Sharding(count=2, warmup_s=12.0, min_warmup_s=0.0)
    labels = [("x", 1.0, "difference")]
    with pytest.warns(sh.ShardWarning, match="differ"):
        rec = hs.replay.record(k, tab, labels=labels, row_index=True, shards=how)
    serial = hs.replay.record(k, tab, labels=labels, row_index=True)
    assert rec.table.column("row").equals(serial.table.column("row"))
    assert rec.table.column("x").equals(serial.table.column("x"))
    a, b = rec.table.column("ewma").to_numpy(), serial.table.column("ewma").to_numpy()
    start = sh.plan(k, hs.replay.TableSource(tab), how, 1.0, None)[1].start
    tt = rec.table.column("t").to_numpy()
    after = tt >= start
    elapsed = (tt[after] - (start - 12 * 10**9)) / 1e9
    bound = np.power(2.0, -elapsed / 2.0) * (values.max() - values.min())
    diff = np.abs(a[after] - b[after])
    assert diff.max() > 0  # not bit-identical after only 6 half-lives
    assert (diff <= bound).all()
    assert np.array_equal(a[~after], b[~after])  # the first shard is the serial replay
    assert rec.shards[1].differing > 0
    assert math.isclose(hs.replay.memory(k).residual(12.0), 2.0**-6)


def test_unbounded_memory_is_refused_unless_allowed(three_days: pa.Table) -> None:
    c = hs.Circuit("shard_count")
    md = lib.market(c)
    c.output("mid", md.mid)
    c.output("trades", ops.count(md.trade_price))
    k = hs.compile(c)
    with pytest.raises(sh.ShardError, match=r"remembers everything.*trades.*allow_unbounded"):
        hs.replay.record(k, three_days, shards=hs.replay.Sharding(count=2))
    with pytest.warns(sh.ShardWarning):
        rec = hs.replay.record(k, three_days, shards=hs.replay.Sharding(count=2, allow_unbounded=True))
    k.reset()
    serial = hs.replay.record(k, three_days)
    assert rec.table.column("mid").equals(serial.table.column("mid"))
    assert not rec.table.column("trades").equals(serial.table.column("trades"))


def test_time_grid_rows_are_the_serial_ones_with_allow_unbounded() -> None:
    """`every` counts its ticks (unbounded, so refused by default); allowed, the grid rows and every other column
    are the serial ones: only the tick ordinal differs."""
    ev = days(3, 5_000)
    c = hs.Circuit("shard_grid")
    md = lib.market(c)
    c.output("mid", md.mid)
    c.output("tick", ops.every(md.mid, period=5.0))
    k = hs.compile(c)
    sampler = hs.replay.time_grid("tick")
    serial = _serial(k, ev, sampler=sampler)
    with pytest.warns(sh.ShardWarning):
        rec = hs.replay.record(k, ev, sampler=sampler, labels=LABELS, row_index=True,
                               shards=hs.replay.Sharding(every_s=86_400.0, allow_unbounded=True))  # fmt: skip
    assert rec.table.drop_columns(["tick"]).equals(serial.table.drop_columns(["tick"]))
    assert not rec.table.column("tick").equals(serial.table.column("tick"))


class _Rows(RowSink):
    """A sink keeping every row position it saw (what fitting's step domains do, in small)."""

    def __init__(self) -> None:
        self.rows: list[np.ndarray] = []

    def add(self, rows: pa.Table, offset: int) -> None:
        self.rows.append(np.arange(offset, offset + rows.num_rows))

    def fresh(self) -> _Rows:
        return _Rows()

    def absorb(self, part: RowSink, offset: int) -> None:
        assert isinstance(part, _Rows)
        self.rows += [r + offset for r in part.rows]


def test_row_sinks_see_every_row_once_in_order(three_days: pa.Table) -> None:
    k = hs.compile(bounded_circuit())
    sink = _Rows()
    rec = hs.replay.record(k, three_days, on_rows=sink, shards=hs.replay.Sharding(count=3))
    assert np.array_equal(np.concatenate(sink.rows), np.arange(rec.rows))
    with pytest.raises(sh.ShardError, match="RowSink"):
        hs.replay.record(k, three_days, on_rows=lambda rows, offset: None, shards=hs.replay.Sharding(count=2))


def test_timer_rows_across_boundaries() -> None:
    """A circuit with timers records a row per firing: the shards give the same rows, with the same positions."""
    c = hs.Circuit("shard_timer")
    x = c.input("x")
    c.trigger("tick", x)
    c.output("x", x)
    c.output("quiet", ops.timeout(x, seconds=0.3))
    rng = np.random.default_rng(1)
    t = DAY0 + np.cumsum(rng.exponential(0.25, size=4000) * 1e9).astype(np.int64)
    tab = pa.table({"t": t, "trigger": pa.array(["tick"] * len(t)).dictionary_encode(), "x": rng.normal(size=len(t))})
    k = hs.compile(c)
    serial = hs.replay.record(k, tab, row_index=True, sampler=hs.replay.when("quiet"))
    assert serial.table.num_rows > 100
    for n in (2, 3, 7):
        rec = hs.replay.record(
            k, tab, row_index=True, sampler=hs.replay.when("quiet"), shards=hs.replay.Sharding(count=n)
        )
        assert rec.table.equals(serial.table) and rec.rows == serial.rows


def test_bad_settings_are_one_clear_error() -> None:
    with pytest.raises(sh.ShardError, match="one of every_s"):
        hs.replay.Sharding()
    with pytest.raises(sh.ShardError, match="count=0"):
        hs.replay.Sharding(count=0)
    with pytest.raises(sh.ShardError, match="engine='spark'"):
        hs.replay.Sharding(count=2, engine="spark")
    k = hs.compile(bounded_circuit())
    with pytest.raises(hs.errors.HarnessError, match="re-open"):
        hs.replay.record(k, iter([]), shards=hs.replay.Sharding(count=2))


def test_shard_ranges_in_words() -> None:
    s = sh.Shard(1, DAY0, DAY0 + DAY, None, None)
    assert s.describe() == "shard 2 (2024-08-08T00:00 .. 2024-08-09T00:00)"
    assert sh.Shard(0, None, DAY0 + 1_500_000, None, None).describe() == "shard 1 (start .. 2024-08-08T00:00:00.0015)"

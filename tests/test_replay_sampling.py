"""Timer rows, samplers and labels (`hs.replay`): both backends, chunking, exact horizons vs brute force."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tables import one_input_events

import harness as hs
from harness import ops
from harness.replay import LabelError, SamplerError

S = 1_000_000_000
XY = ("x", "y")  # the inputs of timer_circuit, each set by its own trigger


def timer_circuit() -> hs.Circuit:
    c = hs.Circuit("timer_rows")
    x, y = c.input("x"), c.input("y")
    c.trigger("x", x)
    c.trigger("y", y)
    tick = ops.every(x, 0.5)
    c.output("grid", tick)
    c.output("x", x)
    c.output("quiet", ops.timeout(y, 0.3))
    c.output("big", x > 2.0)
    return c


_KERNELS: dict[tuple[str, str], hs.Kernel] = {}


def kernel(circuit: hs.Circuit, backend: str) -> hs.Kernel:
    key = (circuit.name, backend)
    if key not in _KERNELS:
        _KERNELS[key] = hs.compile(circuit, backend=backend)
    k = _KERNELS[key]
    k.reset()
    return k


CRAFTED = one_input_events(
    [
        (S // 10, "x", 1.0),  # grid starts: ticks at 0.5, 1.0, 1.5, ...
        (S // 5, "y", 7.0),  # quiet fires at 0.5 s, after the 0.5 s tick (plan order)
        (S + S // 5, "x", 3.0),  # the 1.0 s tick fires first
        (2 * S, "y", 1.0),  # 1.5 s and 2.0 s ticks fire first (2.0 s is due at the event's own time)
    ],
    XY,
)


def test_timer_rows_golden(backend: str) -> None:
    out = kernel(timer_circuit(), backend).replay(CRAFTED, timer_rows=True)
    assert out.column_names == ["t", "source", "grid", "x", "quiet", "big"]
    timers = kernel(timer_circuit(), backend).row_sources()[2:]
    grid, quiet = (f"timer:{timer_circuit().outputs[name].name}" for name in ("grid", "quiet"))
    assert sorted(timers) == sorted([grid, quiet])
    got = [(r["t"], r["source"], r["grid"], r["x"], r["quiet"]) for r in out.to_pylist()]
    assert got == [
        (S // 10, "x", None, 1.0, None),
        (S // 5, "y", None, 1.0, None),
        (S // 2, grid, 1.0, 1.0, None),
        (S // 2, quiet, None, 1.0, 1.0),  # a timeout is 1.0 when it fires
        (S, grid, 2.0, 1.0, None),
        (S + S // 5, "x", None, 3.0, None),
        (S + S // 2, grid, 3.0, 3.0, None),
        (2 * S, grid, 4.0, 3.0, None),
        (2 * S, "y", None, 3.0, None),
    ]


def test_timer_rows_off_gives_one_row_per_event(backend: str) -> None:
    out = kernel(timer_circuit(), backend).replay(CRAFTED)
    assert out.column_names == ["t", "grid", "x", "quiet", "big"]
    assert out.num_rows == CRAFTED.num_rows


def random_xy(seed: int, n: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.choice([0, 0, 1, 50, 300, 700], size=n) * (S // 1000)).astype(np.int64)
    is_x = rng.random(n) < 0.6
    v = np.round(rng.normal(2.0, 1.0, size=n), 2)
    return pa.table(
        {
            "t": t,
            "trigger": np.where(is_x, "x", "y"),
            "x": pa.array(v, mask=~is_x),
            "y": pa.array(v, mask=is_x),
        }
    )


def test_timer_rows_backends_agree_and_chunking_does_not_matter() -> None:
    events = random_xy(1, 3000)
    ref = kernel(timer_circuit(), "python").replay(events, timer_rows=True)
    assert ref.num_rows > events.num_rows
    for size in (None, 1, 97):
        k = kernel(timer_circuit(), "cpp")
        if size is None:
            out = k.replay(events, timer_rows=True)
        else:
            out = pa.concat_tables(k.replay(b, timer_rows=True) for b in events.to_batches(max_chunksize=size))
        assert out.equals(ref), size


# ----- samplers -----------------------------------------------------------------------------------------
def test_every_event_and_every_n_and_when(backend: str) -> None:
    events = random_xy(2, 2000)
    trig = np.array(events.column("trigger").to_pylist())
    k = kernel(timer_circuit(), backend)
    rec = hs.replay.record(k, events, sampler=hs.replay.every_event())
    assert rec.sampled == events.num_rows and rec.rows > events.num_rows  # timer rows replayed, not sampled
    assert rec.table.column("t").to_pylist() == events.column("t").to_pylist()

    rec = hs.replay.record(kernel(timer_circuit(), backend), events, sampler=hs.replay.every_event("y"))
    assert rec.table.column("t").to_pylist() == events.column("t").to_numpy()[trig == "y"].tolist()

    rec = hs.replay.record(kernel(timer_circuit(), backend), events, sampler=hs.replay.every_n(7, trigger="x"))
    x_times = events.column("t").to_numpy()[trig == "x"]
    assert rec.table.column("t").to_pylist() == x_times[6::7].tolist()

    rec = hs.replay.record(kernel(timer_circuit(), backend), events, sampler=hs.replay.when("big"))
    assert rec.sampled > 0
    assert all(v > 2.0 for v in rec.table.column("x").to_pylist())


def test_every_n_counts_across_chunks() -> None:
    events = random_xy(3, 1500)
    whole = hs.replay.record(kernel(timer_circuit(), "cpp"), events, sampler=hs.replay.every_n(5, "x"))
    chunked = hs.replay.record(
        kernel(timer_circuit(), "cpp"), events.to_batches(max_chunksize=13), sampler=hs.replay.every_n(5, "x")
    )
    assert chunked.table.equals(whole.table)


def test_time_grid_samples_the_ticks(backend: str) -> None:
    events = random_xy(4, 2000)
    rec = hs.replay.record(kernel(timer_circuit(), backend), events, sampler=hs.replay.time_grid("grid"))
    t = np.array(rec.table.column("t").to_pylist())
    assert len(t) > 10
    assert (t % (S // 2) == 0).all() and (np.diff(t) == S // 2).all()
    assert rec.table.column("grid").to_pylist() == [float(i) for i in range(1, len(t) + 1)]


def test_sampler_errors() -> None:
    k = kernel(timer_circuit(), "python")
    with pytest.raises(SamplerError, match="every_n: unknown trigger 'trade'; the circuit's triggers are"):
        hs.replay.record(k, CRAFTED, sampler=hs.replay.every_n(3))
    with pytest.raises(SamplerError, match="n must be an integer >= 1, got 0"):
        hs.replay.every_n(0)
    with pytest.raises(SamplerError, match="when: unknown output 'nope'"):
        hs.replay.record(k, CRAFTED, sampler=hs.replay.when("nope"))
    with pytest.raises(SamplerError, match="time_grid: output 'x' is a 'input' node; record an hs.ops.every"):
        hs.replay.record(k, CRAFTED, sampler=hs.replay.time_grid("x"))
    with pytest.raises(SamplerError, match="record: unknown output 'z'"):
        hs.replay.record(k, CRAFTED, outputs=["z"])


# ----- labels -------------------------------------------------------------------------------------------
def label_circuit() -> hs.Circuit:
    c = hs.Circuit("labels")
    x, z = c.input("x"), c.input("z")
    c.trigger("x", x)
    c.trigger("z", z)
    c.output("y", x)  # invalid until the first x; z rows leave it unchanged
    c.output("z", z)
    return c


def brute_force(t: list[int], y: list[float | None], h: float, kind: str) -> tuple[list[float | None], int, int]:
    """Labels for every row the slow way: scan all rows for the last one at or before t + h."""
    h_ns = round(h * 1e9)
    out: list[float | None] = []
    no_horizon = invalid = 0
    for i, ti in enumerate(t):
        if h_ns == 0:
            future = y[i]
        elif ti + h_ns > t[-1]:
            out.append(None)
            no_horizon += 1
            continue
        else:
            future = None
            for r in range(len(t)):
                if t[r] <= ti + h_ns:
                    future = y[r]
        now = y[i]
        value: float | None
        if kind == "value":
            value = future
        elif future is None or now is None:
            value = None
        elif kind == "difference":
            value = future - now
        elif kind == "return":
            value = None if now == 0.0 else future / now - 1.0
        else:
            value = math.log(future / now) if future / now > 0 else None
        if value is None:
            invalid += 1
        out.append(value)
    return out, no_horizon, invalid


step_strategy = st.lists(
    st.tuples(
        st.sampled_from([0, 0, 1, 3, 250_000_000, 999_999_999, 1_000_000_000, 1_700_000_000]),
        st.sampled_from(["x", "x", "z"]),
        st.sampled_from([0.0, 1.0, 2.5, -1.5, 100.0]),
    ),
    min_size=1,
    max_size=60,
)


@given(
    step_strategy,
    st.sampled_from([0.0, 0.25, 1.0, 1.7, 3.0]),
    st.sampled_from(["value", "difference", "return", "log_return"]),
)
def test_labels_match_brute_force_on_irregular_times(steps: list, horizon: float, kind: str) -> None:
    t = np.cumsum([s[0] for s in steps]).astype(np.int64).tolist()
    rows = [(at, s[1], s[2]) for at, s in zip(t, steps, strict=True)]
    events = pa.table(
        {
            "t": pa.array(t, pa.int64()),
            "trigger": [r[1] for r in rows],
            "x": pa.array([r[2] if r[1] == "x" else None for r in rows], pa.float64()),
            "z": pa.array([r[2] if r[1] == "z" else None for r in rows], pa.float64()),
        }
    )
    k = kernel(label_circuit(), "cpp")
    y = k.replay(events).column("y").to_pylist()
    want, no_horizon, invalid = brute_force(t, y, horizon, kind)
    k.reset()
    rec = hs.replay.record(k, events.to_batches(max_chunksize=7), labels=[hs.replay.Label("y", horizon, kind)])
    name = hs.replay.label_name("y", kind, horizon)
    assert rec.dropped == {"no_horizon": no_horizon, "invalid_label": invalid}
    kept = [v for v in want if v is not None]
    got = rec.table.column(name).to_pylist()
    if kind == "log_return":
        assert got == pytest.approx(kept, rel=1e-15, abs=1e-300)
    else:
        assert got == kept
    assert rec.table.num_rows == len(kept) == rec.sampled - no_horizon - invalid


def test_several_horizons_drop_a_row_once() -> None:
    events = one_input_events([(0, "x", 1.0), (S, "x", 2.0), (2 * S, "x", 4.0), (3 * S, "x", 8.0)], XY)
    rec = hs.replay.record(
        kernel(timer_circuit(), "cpp"), events, labels=[("x", (1.0, 2.0), "difference")], outputs=["x"]
    )
    assert rec.labels == ["label_x_difference_1s", "label_x_difference_2s"]
    assert rec.table.column_names == ["t", "source", "x", *rec.labels]
    assert rec.table.column("label_x_difference_1s").to_pylist() == [1.0, 2.0]
    assert rec.table.column("label_x_difference_2s").to_pylist() == [3.0, 6.0]
    assert rec.dropped == {"no_horizon": 2, "invalid_label": 0}  # t=2 s lacks 2 s, t=3 s lacks both


def test_horizon_lands_exactly_on_an_event() -> None:
    """An event at exactly t + h counts (all rows at that time applied), one ns later does not."""
    events = one_input_events([(0, "x", 1.0), (S, "x", 2.0), (S, "x", 3.0), (S + 1, "x", 9.0), (5 * S, "y", 0.0)], XY)
    rec = hs.replay.record(kernel(timer_circuit(), "python"), events, labels=[("x", 1.0, "value")], outputs=[])
    assert rec.table.column("label_x_value_1s").to_pylist()[0] == 3.0


def test_label_errors() -> None:
    k = kernel(timer_circuit(), "python")
    with pytest.raises(LabelError, match="label: unknown output 'mid'"):
        hs.replay.record(k, CRAFTED, labels=[("mid", 1.0)])
    with pytest.raises(LabelError, match="horizon -1.0 must be a finite number of seconds >= 0"):
        hs.replay.Label("x", -1.0)
    with pytest.raises(LabelError, match="kind 'pct' is not one of value, difference, return, log_return"):
        hs.replay.Label("x", 1.0, "pct")
    with pytest.raises(LabelError, match="labels repeat the columns"):
        hs.replay.record(k, CRAFTED, labels=[("x", 1.0), ("x", (1.0, 2.0))])
    with pytest.raises(LabelError, match="a label is a Label or a tuple"):
        hs.replay.record(k, CRAFTED, labels=["x"])


def test_market_labels_on_synthetic_stream() -> None:
    c = hs.Circuit("mid_labels")
    md = hs.lib.market(c)
    c.output("mid", md.mid)
    c.output("flow", ops.decay_sum(md.signed_amount, halflife=1.0))
    events = hs.streams.synthetic(30_000, seed=5)
    rec = hs.replay.record(
        hs.compile(c), events, sampler=hs.replay.every_n(10), labels=[("mid", (1.0, 10.0), "return")]
    )
    assert rec.dropped["no_horizon"] > 0 and rec.dropped["invalid_label"] == 0
    ret = rec.table.column("label_mid_return_10s").to_numpy()
    assert np.isfinite(ret).all() and np.abs(ret).max() < 0.05

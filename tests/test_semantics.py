"""Circuit semantics as the README's "Circuit semantics" states them: validity, edge-triggered outputs, observed
inputs, timers, parameters."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pytest
from tables import scalar_events

import harness as hs
from harness import ops
from harness.circuit.operator import Operator, Param, StepContext

S = 1_000_000_000  # one second in ns


def market() -> tuple[hs.Circuit, dict[str, Any]]:
    c = hs.Circuit("m")
    bid, ask, size = c.input("bid"), c.input("ask"), c.input("size")
    book = c.trigger("book", bid, ask)
    trade = c.trigger("trade", size)
    return c, {"bid": bid, "ask": ask, "size": size, "book": book, "trade": trade, "mid": (bid + ask) / 2.0}


INPUTS = ("bid", "ask", "size")
ROWS = [
    (1 * S, "trade", {"size": 2.0}),
    (2 * S, "book", {"bid": 99.0, "ask": 101.0}),
    (3 * S, "trade", {"size": -1.0}),
    (4 * S, "book", {"bid": 100.0, "ask": 102.0}),
    (5 * S, "trade", {"size": 3.0}),
]


def test_validity_invalid_inputs_give_null_never_zero(backend: str) -> None:
    c, m = market()
    c.output("mid", m["mid"])
    c.output("notional", m["size"] * m["mid"])
    c.output("ew", ops.ewma(m["mid"], 1.0))
    r = hs.compile(c, backend=backend).replay(scalar_events(ROWS, INPUTS))
    assert r.column("mid").to_pylist() == [None, 100.0, 100.0, 101.0, 101.0]
    # row 0: the trade arrives before any book: mid invalid, so the product is invalid (null, not 0)
    assert r.column("notional").to_pylist() == [None, 200.0, -100.0, -101.0, 303.0]
    assert r.column("ew").to_pylist()[0] is None
    assert r.column("notional").null_count == 1


def test_select_validity_follows_the_chosen_branch(backend: str) -> None:
    c, m = market()
    c.output("s", ops.select(m["size"] > 0.0, m["size"], m["mid"]))
    r = hs.compile(c, backend=backend).replay(scalar_events(ROWS, INPUTS))
    # row 0: size > 0 picks size (valid) although mid is invalid; rows 2-3: size < 0 picks mid
    assert r.column("s").to_pylist() == [2.0, 2.0, 100.0, 101.0, 3.0]


def test_edge_triggered_outputs_are_valid_only_in_their_event(backend: str) -> None:
    c, m = market()
    c.output("trade_flag", m["trade"].event)
    c.output("trade_size", m["size"] * m["trade"].event)  # edge propagates through stateless ops
    c.output("last_size", m["size"] * 1.0)  # a level output keeps its value
    c.output("n_trades", ops.count(m["trade"]))
    r = hs.compile(c, backend=backend).replay(scalar_events(ROWS, INPUTS))
    assert r.column("trade_flag").to_pylist() == [1.0, None, 1.0, None, 1.0]
    assert r.column("trade_size").to_pylist() == [2.0, None, -1.0, None, 3.0]
    assert r.column("last_size").to_pylist() == [2.0, 2.0, -1.0, -1.0, 3.0]
    assert r.column("n_trades").to_pylist() == [1.0, 1.0, 2.0, 2.0, 3.0]
    plan = c.plan()
    assert c.outputs["trade_size"] in plan.edge and c.outputs["last_size"] not in plan.edge


def test_observed_inputs_are_read_but_do_not_trigger(backend: str) -> None:
    c, m = market()
    signal = m["size"] * hs.observe(m["mid"])
    c.output("signal", signal)
    plan = c.plan()
    assert signal not in plan.triggers["book"].steps
    assert signal in plan.triggers["trade"].steps
    assert plan.is_stored(m["mid"])  # read by trade events, computed by book events
    r = hs.compile(c, backend=backend).replay(scalar_events(ROWS, INPUTS))
    # book events do not update it (level output keeps the last trade's value)
    assert r.column("signal").to_pylist() == [None, None, -100.0, -100.0, 303.0]


def test_ewma_of_an_observed_input_needs_a_trigger(backend: str) -> None:
    c, m = market()
    c.output("x", ops.ewma(m["size"] + hs.observe(m["mid"]), 1.0))
    k = hs.compile(c, backend=backend)
    k.replay(scalar_events(ROWS, INPUTS))
    assert k.value("x") is not None


class Trace(Operator):
    """Test operator: appends (time, tag) to a shared list each time its input is valid."""

    kind, arity, stateful = "trace", 1, True
    params_spec = {"tag": Param(rule="any", check=lambda v: True)}
    log: list[tuple[int, float]] = []

    def ref_init(self, p: Mapping[str, float]) -> tuple[Any, float | None]:
        return {}, None

    def ref_step(
        self, state: Any, ctx: StepContext, p: Mapping[str, float], xs: Sequence[float | None]
    ) -> float | None:
        if xs[0] is not None:
            Trace.log.append((ctx.t, p["tag"]))
        return xs[0]


def timer_circuit(traced: bool = True) -> hs.Circuit:
    """Two timeouts on x (1 s, 0.25 s) and two on y due at the same time; `traced` adds Trace operators."""
    c = hs.Circuit("timers")
    x, y = c.input("x"), c.input("y")
    c.trigger("x", x)
    c.trigger("y", y)
    late = ops.timeout(x, 1.0)
    early = ops.timeout(x, 0.25)
    tie_a = ops.timeout(y, 0.5)
    tie_b = ops.timeout(y * 2.0, 0.5)
    if traced:  # Trace is a Python-only test operator
        c.output("late", Trace(tag=1.0)(late))
        c.output("early", Trace(tag=2.0)(early))
        c.output("tie_a", Trace(tag=3.0)(tie_a))
        c.output("tie_b", Trace(tag=4.0)(tie_b))
    c.output("ties", ops.count(tie_a) * 10.0 + ops.count(tie_b))
    c.output("late_count", ops.count(late))
    c.output("late_edge", late)
    c.output("y_seen", y + hs.observe(ops.count(early)))
    return c


def test_timers_fire_in_time_order_then_plan_order() -> None:
    Trace.log = []
    c = timer_circuit()
    k = hs.compile(c, backend="python")
    k.call("x", t=0, x=1.0)  # schedules late at 1 s and early at 0.25 s
    k.call("y", t=S // 10, y=1.0)  # schedules tie_a and tie_b, both at 0.6 s
    k.advance(2 * S)
    assert Trace.log == [(S // 4, 2.0), (6 * S // 10, 3.0), (6 * S // 10, 4.0), (S, 1.0)]
    timers = [tp.node for tp in c.plan().timers]
    order = c.plan().order
    assert [order.index(n) for n in timers] == sorted(order.index(n) for n in timers)


def test_timer_due_before_an_event_fires_first() -> None:
    Trace.log = []
    k = hs.compile(timer_circuit(), backend="python")
    k.call("x", t=0, x=1.0)
    k.call("y", t=S // 4 - 1, y=10.0)  # 1 ns before the early timer: not fired yet
    assert k.value("y_seen") == 10.0
    k.call("y", t=S // 4, y=10.0)  # at exactly its time: the timer fires first, the event sees it
    assert k.value("y_seen") == 11.0
    assert Trace.log[0] == (S // 4, 2.0)


def test_timer_outputs_are_edge_and_rescheduling_replaces(backend: str) -> None:
    k = hs.compile(timer_circuit(traced=False), backend=backend)
    k.call("x", t=0, x=1.0)
    k.call("x", t=S // 2, x=1.0)  # restarts both countdowns: late now due at 1.5 s
    k.advance(S + S // 4)
    assert k.value("late_count") == 0.0
    k.advance(S + S // 2)
    assert k.value("late_count") == 1.0
    assert k.value("late_edge") == 1.0  # valid in the timer's own event ...
    k.call("y", t=2 * S, y=0.0)
    assert k.value("late_edge") is None  # ... and invalid in the next one
    k.advance(2 * S + S // 2)  # both y timeouts are due at 2.5 s: both fire
    assert k.value("ties") == 11.0


def test_every_ticks_on_a_time_grid(backend: str) -> None:
    c = hs.Circuit("grid")
    x = c.input("x")
    c.trigger("x", x)
    tick = ops.every(x, 0.5)
    c.output("ticks", ops.count(tick))
    c.output("x_at_tick", x * tick)
    k = hs.compile(c, backend=backend)
    k.call("x", t=S // 10, x=3.0)  # first update at 0.1 s: ticks at 0.5, 1.0, 1.5 ...
    k.advance(S // 2)
    assert (k.value("ticks"), k.value("x_at_tick")) == (1.0, 3.0)
    k.call("x", t=S + S // 5, x=4.0)  # the 1.0 s tick fires before this event
    assert (k.value("ticks"), k.value("x_at_tick")) == (2.0, None)
    k.advance(2 * S)
    assert k.value("ticks") == 4.0


def test_static_nodes_follow_set_params_without_events(backend: str) -> None:
    c = hs.Circuit("p")
    x = c.input("x")
    c.trigger("x", x)
    w = c.parameter("w", init=0.0)
    c.output("ew", ops.exp(w))
    c.output("y", x * ops.exp(w))
    k = hs.compile(c, backend=backend)
    assert k.value("ew") == 1.0 and k.value("y") is None
    k.call("x", t=0, x=2.0)
    assert k.value("y") == 2.0
    k.set_params({"w": math.log(3.0)})
    assert k.params == {"w": math.log(3.0)}
    assert k.value("ew") == pytest.approx(3.0)
    assert k.value("y") == 2.0  # already computed: unchanged until x's next event
    k.call("x", t=1, x=2.0)
    assert k.value("y") == pytest.approx(6.0)


def test_tunable_halflife_changes_at_run_time_and_reset_starts_over(backend: str) -> None:
    c = hs.Circuit("hl")
    x = c.input("x")
    c.trigger("x", x)
    hl = c.parameter("hl", init=1.0, lower=0.01)
    c.output("e", ops.ewma(x, halflife=hl))
    k = hs.compile(c, backend=backend)
    k.call("x", t=0, x=0.0)
    k.call("x", t=S, x=1.0)
    assert k.value("e") == 0.5
    k.reset()
    k.set_params({"hl": 0.5})
    k.call("x", t=0, x=0.0)
    k.call("x", t=S, x=1.0)
    assert k.value("e") == 0.75
    with pytest.raises(hs.ParamError, match=r"parameter 'hl': value 0.0 is outside \[lower=0.01"):
        k.set_params({"hl": 0.0})


def test_replay_accepts_batches_and_carries_state(backend: str) -> None:
    c, m = market()
    c.output("ew", ops.ewma(m["mid"], 2.0))
    c.output("ps", ops.decay_sum(m["size"], 1.0))
    table = scalar_events(ROWS, INPUTS)
    whole = hs.compile(c, backend=backend).replay(table)
    k = hs.compile(c, backend=backend)
    parts = [k.replay(b) for b in table.to_batches(max_chunksize=2)]
    assert pa.concat_tables(parts).equals(whole)
    assert hs.compile(c, backend=backend).replay(iter(table.to_batches(max_chunksize=1))).equals(whole)
    empty = hs.compile(c, backend=backend).replay(table.slice(0, 0))
    assert empty.num_rows == 0 and empty.column_names == ["t", "ew", "ps"]


def test_dead_nodes_are_not_planned() -> None:
    c, m = market()
    unused = ops.ewma(m["size"], 3.0)
    c.output("mid", m["mid"])
    plan = c.plan()
    assert unused not in plan.order
    assert plan.triggers["trade"].steps == ()


class OneShot(Operator):
    """Test operator: a positive sample arms a timer 1 s later, a negative one cancels it."""

    kind, arity, stateful, timer, edge = "one_shot", 1, True, True, True

    def ref_init(self, p: Mapping[str, float]) -> tuple[Any, float | None]:
        return {}, None

    def ref_step(
        self, state: Any, ctx: StepContext, p: Mapping[str, float], xs: Sequence[float | None]
    ) -> float | None:
        if xs[0] is not None:
            if xs[0] > 0:
                ctx.schedule(ctx.t + S)
            else:
                ctx.cancel()
        return None

    def ref_timer(self, state: Any, ctx: StepContext, p: Mapping[str, float]) -> float | None:
        return 1.0


def test_operators_can_cancel_their_timer_and_must_schedule_in_the_future() -> None:
    c = hs.Circuit("cancel")
    x = c.input("x")
    c.trigger("x", x)
    c.output("fired", ops.count(OneShot()(x)))
    k = hs.compile(c, backend="python")
    k.call("x", t=0, x=1.0)
    k.call("x", t=S // 2, x=-1.0)  # cancels the pending timer
    k.advance(3 * S)
    assert k.value("fired") == 0.0
    k.call("x", t=3 * S, x=1.0)
    k.advance(5 * S)
    assert k.value("fired") == 1.0
    with pytest.raises(RuntimeError, match="strictly after the current time"):
        StepContext(10, lambda at: None).schedule(10)

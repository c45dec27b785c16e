"""Call plans: what runs per trigger and timer, in which order, and what is stored vs ephemeral."""

from __future__ import annotations

import harness as hs
from harness import ops


def test_plan_orders_steps_topologically_and_marks_ephemeral_locals() -> None:
    c = hs.Circuit("p")
    bid, ask, size = c.input("bid"), c.input("ask"), c.input("size")
    c.trigger("book", bid, ask)
    c.trigger("trade", size)
    mid = (bid + ask) / 2.0
    spread = ask - bid
    e = ops.ewma(mid, 1.0)
    c.output("dev", (mid - e) / spread)
    c.output("flow", size * hs.observe(mid))
    plan = c.plan()
    book = plan.triggers["book"]
    names = [n.kind for n in book.steps]
    assert names.index("ewma") > names.index("div")  # mid before its ewma
    assert book.steps[-1] is c.outputs["dev"]
    assert plan.triggers["trade"].steps == (c.outputs["flow"],)
    assert plan.triggers["trade"].step_names == [c.outputs["flow"].name]
    half_sum = mid.inputs[0]
    assert not plan.is_stored(half_sum)  # bid + ask only feeds mid in the same event: a local
    assert not plan.is_stored(spread)
    assert plan.is_stored(mid)  # observed by trades
    assert plan.is_stored(e)  # stateful
    assert not any(plan.is_stored(x) for x in (bid, ask, size))  # read only in their own events: locals
    assert plan.triggers["book"].inputs == (bid, ask)


def test_static_nodes_and_parameter_users() -> None:
    c = hs.Circuit("s")
    x = c.input("x")
    c.trigger("x", x)
    w = c.parameter("w", init=0.1)
    hl = c.parameter("hl", init=1.0, lower=0.01)
    scale = ops.exp(w) * 2.0
    c.output("y", ops.ewma(x * scale, halflife=hl))
    plan = c.plan()
    assert plan.static == (scale.inputs[0] if scale.inputs[0].kind == "exp" else scale.inputs[1], scale)
    assert all(plan.is_stored(n) for n in plan.static)
    assert scale not in plan.triggers["x"].steps
    assert [(n.kind, p) for n, p in plan.param_users["hl"]] == [("ewma", "halflife")]
    assert plan.param_users["w"] == ()


def test_timer_plans_hold_the_timer_node_and_its_dependents() -> None:
    c = hs.Circuit("t")
    x, y = c.input("x"), c.input("y")
    c.trigger("x", x)
    c.trigger("y", y)
    to = ops.timeout(x, 1.0)
    n = ops.count(to)
    c.output("n", n + hs.observe(y))
    c.output("yy", y * 2.0)
    plan = c.plan()
    (tp,) = plan.timers
    assert tp.node is to and tp.name == to.name
    assert tp.steps == (n, c.outputs["n"])
    assert plan.triggers["x"].steps == (to, n, c.outputs["n"])
    assert plan.triggers["y"].steps == (c.outputs["yy"],)
    assert to in plan.edge and n not in plan.edge


def test_event_nodes_are_set_by_their_trigger() -> None:
    c = hs.Circuit("ev")
    x = c.input("x")
    tx = c.trigger("x", x)
    c.trigger("clock")
    c.output("n", ops.count(tx))
    plan = c.plan()
    assert plan.triggers["x"].inputs == (x, tx.event)
    assert plan.triggers["clock"].inputs == () and plan.triggers["clock"].steps == ()
    assert tx.event is tx.event

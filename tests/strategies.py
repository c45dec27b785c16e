"""Hypothesis strategies for random circuits (every hs.ops operator, several triggers, observed inputs,
parameters, timers) and random events tables with irregular timestamps, for property and differential tests."""

from __future__ import annotations

import math

import pyarrow as pa
from hypothesis import strategies as st

import harness as hs
from harness import ops

UNARY = ["neg", "abs", "exp", "log", "sqrt", "tanh", "sigmoid", "relu", "delta", "count", "clamp"]
BINARY = ["add", "sub", "mul", "div", "min", "max", "lt", "le", "gt", "ge", "eq", "ne"]
STATEFUL = ["ewma", "decay_sum"]
TIMERS = ["timeout", "every"]

values = st.one_of(
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, 2.0, 100.0, -3.25, 1e-300, 1e300]),
    st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False),
    st.sampled_from([math.inf, -math.inf, math.nan]),
)
finite_values = st.floats(-50.0, 50.0, allow_nan=False, allow_infinity=False)


@st.composite
def circuits(draw: st.DrawFn, *, max_inputs: int = 4, max_nodes: int = 14, timers: bool = True) -> hs.Circuit:
    """A random valid circuit with 1-3 triggers and 1-4 outputs."""
    c = hs.Circuit("random")
    n_inputs = draw(st.integers(1, max_inputs))
    inputs = [c.input(f"x{i}") for i in range(n_inputs)]
    n_triggers = draw(st.integers(1, 3))
    members: dict[int, list[hs.Node]] = {j: [] for j in range(n_triggers)}
    for x in inputs:
        for j in sorted(draw(st.sets(st.integers(0, n_triggers - 1), min_size=1, max_size=n_triggers))):
            members[j].append(x)
    triggers = [c.trigger(f"T{j}", *members[j]) for j in range(n_triggers)]
    params = [c.parameter(f"w{i}", init=draw(st.floats(-2.0, 2.0))) for i in range(draw(st.integers(0, 2)))]
    halflife_params = [c.parameter("hl", init=draw(st.floats(0.05, 5.0)), lower=0.01)] if draw(st.booleans()) else []

    pool: list[hs.Node] = list(inputs)
    if draw(st.booleans()):
        pool.append(triggers[draw(st.integers(0, n_triggers - 1))].event)
    kinds = UNARY + BINARY + STATEFUL + (TIMERS if timers else []) + ["select", "linear"]
    for _ in range(draw(st.integers(1, max_nodes))):
        kind = draw(st.sampled_from(kinds))
        a = draw(st.sampled_from(pool))
        node = _build(draw, kind, a, pool, params, halflife_params)
        if isinstance(node, hs.Node) and node.kind != "const":
            pool.append(node)
    candidates = [n for n in pool if n.kind != "input"] or pool
    chosen = draw(st.lists(st.sampled_from(candidates), min_size=1, max_size=4, unique_by=id))
    for i, node in enumerate(chosen):
        c.output(f"o{i}", node)
    if draw(st.booleans()):
        c.output("raw", inputs[0])
    if params and draw(st.booleans()):
        c.output("static", ops.exp(params[0]) * 0.5)
    return c


def _second(draw: st.DrawFn, pool: list[hs.Node], params: list[hs.Node]) -> object:
    choice = draw(st.integers(0, 9))
    if choice <= 1:
        return draw(finite_values)
    if choice == 2 and params:
        return draw(st.sampled_from(params))
    node = draw(st.sampled_from(pool))
    return hs.observe(node) if choice == 3 else node


def _build(draw: st.DrawFn, kind: str, a: hs.Node, pool: list[hs.Node], params: list[hs.Node], hls: list[hs.Node]):
    if kind in ("neg", "abs", "exp", "log", "sqrt", "tanh", "sigmoid", "relu"):
        return getattr(ops, kind)(a)
    if kind == "delta":
        return ops.delta(a)
    if kind == "count":
        return ops.count(a)
    if kind == "clamp":
        lo = draw(st.floats(-5.0, 5.0))
        return ops.clamp(a, lo, lo + draw(st.floats(0.0, 5.0)))
    if kind in BINARY:
        b = _second(draw, pool, params)
        return getattr(ops, kind)(a, b) if draw(st.booleans()) else _swap(kind, a, b)
    if kind in STATEFUL:
        hl = draw(st.sampled_from(hls)) if hls and draw(st.booleans()) else draw(st.floats(0.05, 5.0))
        return getattr(ops, kind)(a, hl)
    if kind == "timeout":
        return ops.timeout(a, draw(st.floats(0.001, 3.0)))
    if kind == "every":
        return ops.every(a, draw(st.floats(0.25, 3.0)))
    if kind == "select":
        return ops.select(a, draw(st.sampled_from(pool)), _second(draw, pool, params))
    if kind == "linear":
        xs = [a, *draw(st.lists(st.sampled_from(pool), min_size=0, max_size=3))]
        weights = [draw(st.sampled_from(params)) if params and draw(st.booleans()) else draw(finite_values) for _ in xs]
        return ops.linear(xs, weights, bias=draw(finite_values))
    raise AssertionError(kind)


def _swap(kind: str, a: hs.Node, b: object) -> hs.Node:
    """Build with the operator syntax where one exists, first operand first."""
    sym = {"add": "__add__", "sub": "__sub__", "mul": "__mul__", "div": "__truediv__", "lt": "__lt__",
           "le": "__le__", "gt": "__gt__", "ge": "__ge__"}  # fmt: skip
    if kind in sym:
        return getattr(a, sym[kind])(b)
    return getattr(ops, kind)(a, b)


@st.composite
def events_for(draw: st.DrawFn, circuit: hs.Circuit, *, max_rows: int = 40, finite: bool = False) -> pa.Table:
    """A random events table for `circuit`: irregular (sometimes equal) timestamps, nulls off-trigger."""
    plan = circuit.plan()
    names = list(plan.triggers)
    n = draw(st.integers(0, max_rows))
    gaps = draw(
        st.lists(
            st.one_of(st.just(0), st.integers(1, 1_000), st.integers(1_000_000, 2_000_000_000)),
            min_size=n,
            max_size=n,
        )
    )
    t, total = [], draw(st.integers(0, 10**12))
    for g in gaps:
        total += g
        t.append(total)
    trig = [draw(st.sampled_from(names)) for _ in range(n)]
    columns: dict[str, list[float | None]] = {name: [None] * n for name in circuit.inputs}
    vals = finite_values if finite else values
    for r, name in enumerate(trig):
        for node in plan.triggers[name].inputs:
            if node.kind == "input":
                columns[node.name][r] = draw(vals)
    data = {"t": pa.array(t, pa.int64()), "trigger": pa.array(trig, pa.string())}
    data.update({k: pa.array(v, pa.float64()) for k, v in columns.items()})
    return pa.table(data)


def replay_by_calls(kernel: hs.Kernel, events: pa.Table) -> dict[str, list[float | None]]:
    """Feed `events` one `call` at a time and collect each output after every event."""
    out: dict[str, list[float | None]] = {name: [] for name in kernel.outputs}
    rows = events.to_pylist()
    for row in rows:
        trig = row["trigger"]
        inputs = {name: row[name] for name in kernel.trigger_inputs[trig]}
        kernel.call(trig, t=row["t"], **inputs)
        for name in kernel.outputs:
            out[name].append(kernel.value(name))
    return out


def same(a: float | None, b: float | None) -> bool:
    """Equal as recorded values: both invalid, both nan, or equal bits (0.0 and -0.0 differ)."""
    if a is None or b is None:
        return a is None and b is None
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)

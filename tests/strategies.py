"""Hypothesis strategies for random circuits (every hs.ops operator, several triggers, observed inputs,
parameters, timers) and random events tables with irregular timestamps, for property and differential tests.

The operators come from the registry (`hs.ops.OPERATORS`): a new operator joins the random circuits by itself.
Its parameters are drawn from their `Param.typical` range (a positive tunable one sometimes a learnable
parameter); JOINT draws the parameters of operators with a rule across them.
"""

from __future__ import annotations

import math

import pyarrow as pa
from hypothesis import strategies as st

import harness as hs
from harness import ops
from harness.circuit.node import SYNTAX
from harness.circuit.operator import Operator, positive

OPERATORS: list[type[Operator]] = list(ops.OPERATORS.values())


def _clamp_bounds(draw: st.DrawFn) -> dict[str, float]:
    lo = draw(st.floats(-5.0, 5.0))
    return {"lo": lo, "hi": lo + draw(st.floats(0.0, 5.0))}


JOINT = {"clamp": _clamp_bounds}  # kind -> draw of all its parameters, where one rule ties them (lo <= hi)

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
    kinds: list[type[Operator] | str] = [op for op in OPERATORS if timers or not op.timer]
    kinds.append("linear")
    for _ in range(draw(st.integers(1, max_nodes))):
        kind = draw(st.sampled_from(kinds))
        a = draw(st.sampled_from(pool))
        if kind == "linear":
            node = _linear(draw, a, pool, params)
        else:
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


def _build(
    draw: st.DrawFn, op: type[Operator], a: hs.Node, pool: list[hs.Node], params: list[hs.Node], hls: list[hs.Node]
) -> hs.Node:
    """`op` on `a` and further inputs from the pool (numbers, parameters, observed reads), through its hs.ops
    function or, where it has one, its Python syntax."""
    inputs = [a, *(_second(draw, pool, params) for _ in op.arg_names()[1:])]
    if op.tree:
        inputs += draw(st.lists(st.sampled_from(pool), max_size=2))  # triggering: every pair of the tree runs
    values = JOINT[op.kind](draw) if op.kind in JOINT else {k: _param(draw, op, k, hls) for k in op.params_spec}
    if op.symbol is not None and not values and len(inputs) == op.arity and draw(st.booleans()):
        return _syntax(op, inputs)
    return getattr(ops, op.kind)(*inputs, **values)


def _param(draw: st.DrawFn, op: type[Operator], name: str, hls: list[hs.Node]) -> object:
    decl = op.params_spec[name]
    if decl.typical is None:
        raise AssertionError(f"{op.kind}: parameter {name} needs Param(typical=...) or a JOINT entry to be drawn")
    if decl.tunable and decl.check is positive and hls and draw(st.booleans()):
        return draw(st.sampled_from(hls))
    return draw(st.floats(*decl.typical))


def _syntax(op: type[Operator], inputs: list[object]) -> hs.Node:
    """Build with the operator syntax, first operand first (`a + b`, `-a`, `abs(a)`)."""
    (method, *_) = SYNTAX[(op.symbol, op.arity)]
    return getattr(inputs[0], method)(*inputs[1:])


def _linear(draw: st.DrawFn, a: hs.Node, pool: list[hs.Node], params: list[hs.Node]) -> hs.Node:
    xs = [a, *draw(st.lists(st.sampled_from(pool), min_size=0, max_size=3))]
    weights = [draw(st.sampled_from(params)) if params and draw(st.booleans()) else draw(finite_values) for _ in xs]
    return ops.linear(xs, weights, bias=draw(finite_values))


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

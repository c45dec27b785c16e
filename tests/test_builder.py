"""Circuit builder: operator syntax, operator-definition API, hash-consing, folding, naming, hashing."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import pytest

import harness as hs
from harness import ops
from harness.circuit.operator import Operator, Param, positive


def make() -> tuple[hs.Circuit, hs.Node, hs.Node]:
    c = hs.Circuit("b")
    a, b = c.input("a"), c.input("b")
    c.trigger("ab", a, b)
    return c, a, b


def test_operator_overloading_builds_the_right_kinds() -> None:
    c, a, b = make()
    assert (a + b).kind == "add"
    assert (a - b).kind == "sub"
    assert (a * b).kind == "mul"
    assert (a / b).kind == "div"
    assert (-a).kind == "neg"
    assert abs(a).kind == "abs"
    assert (a < b).kind == "lt" and (a <= b).kind == "le"
    assert (a > b).kind == "gt" and (a >= b).kind == "ge"
    r = 2.0 - a
    assert r.kind == "sub" and r.inputs[0].kind == "const" and r.inputs[1] is a
    assert (1 / a).inputs[0].op.params["value"] == 1.0


def test_comparisons_return_zero_or_one(backend: str) -> None:
    c, a, b = make()
    for name, node in {
        "lt": a < b,
        "le": a <= b,
        "gt": a > b,
        "ge": a >= b,
        "eq": ops.eq(a, b),
        "ne": ops.ne(a, b),
    }.items():
        c.output(name, node)
    k = hs.compile(c, backend=backend)
    k.call("ab", t=0, a=1.0, b=2.0)
    assert k.values() == {"lt": 1.0, "le": 1.0, "gt": 0.0, "ge": 0.0, "eq": 0.0, "ne": 1.0}
    k.call("ab", t=1, a=2.0, b=2.0)
    assert k.values() == {"lt": 0.0, "le": 1.0, "gt": 0.0, "ge": 1.0, "eq": 1.0, "ne": 0.0}
    k.call("ab", t=2, a=math.nan, b=2.0)
    assert k.values() == {"lt": 0.0, "le": 0.0, "gt": 0.0, "ge": 0.0, "eq": 0.0, "ne": 1.0}


def test_node_has_no_truth_value_and_eq_is_identity() -> None:
    c, a, b = make()
    with pytest.raises(TypeError, match="no truth value"):
        bool(a < b)
    assert a == a and a != b  # identity, so nodes work in sets and dicts
    assert len({a, b, a}) == 2


def test_hash_consing_merges_identical_nodes_symmetric_aware() -> None:
    c, a, b = make()
    assert a + b is b + a
    assert a * b is b * a
    assert ops.eq(a, b) is ops.eq(b, a)
    assert a - b is a - b
    assert a - b is not b - a
    assert a / b is not b / a
    assert ops.min(a, b) is not ops.min(b, a)  # not symmetric for 0.0 vs -0.0
    assert ops.ewma(a, 1.0) is ops.ewma(a, 1.0)
    assert ops.ewma(a, 1.0) is not ops.ewma(a, 2.0)
    assert a + hs.observe(b) is not a + b
    n = len(c.nodes)
    _ = (a + b) * (b + a)
    assert len(c.nodes) == n + 1  # only the product is new


def test_learnable_parameters_are_never_merged() -> None:
    c, a, b = make()
    w1 = c.parameter("w1", init=0.5)
    w2 = c.parameter("w2", init=0.5)
    assert w1 is not w2
    assert a * w1 is not a * w2
    with pytest.raises(hs.CircuitError, match="'w1' is already used"):
        c.parameter("w1", init=0.5)


def test_constant_folding_of_stateless_operators() -> None:
    c, a, b = make()
    k = c.constant(2.0) * 3.0 + ops.exp(c.constant(0.0))
    assert k.kind == "const" and k.op.params["value"] == 7.0
    assert c.constant(1.0) is c.constant(1)
    assert c.constant(0.0) is not c.constant(-0.0)
    w = c.parameter("w", init=2.0)
    assert (w * 3.0).kind == "mul"  # parameters are runtime values, never folded
    assert ops.ewma(a, 1.0).kind == "ewma"


def test_operator_definition_api_double_call_and_validation() -> None:
    c, a, b = make()
    e = ops.Ewma(halflife=1.5)(a)
    assert e is ops.ewma(a, halflife=1.5)
    assert e.op.describe() == "ewma(halflife=1.5)"
    with pytest.raises(hs.CircuitError, match=r"ewma: takes 1 input\(s\), got 2"):
        ops.Ewma(halflife=1.0)(a, b)
    with pytest.raises(hs.CircuitError, match="ewma: missing required parameter 'halflife'"):
        ops.Ewma()
    with pytest.raises(hs.CircuitError, match="ewma: unknown parameter 'half_life'"):
        ops.Ewma(half_life=1.0)
    with pytest.raises(hs.CircuitError, match="clamp: parameter lo=2.0 must be <= hi=1.0"):
        ops.clamp(a, 2.0, 1.0)
    with pytest.raises(hs.CircuitError, match="parameter seconds=0.0 is out of range"):
        ops.timeout(a, 0.0)


def test_user_defined_operator_through_the_api(backend: str) -> None:
    class Scale(Operator):
        """x * factor, a user-defined stateless operator."""

        kind, arity = "scale", 1
        params_spec = {"factor": Param(rule="> 0 and finite", check=positive, tunable=True)}

        def f(self, p, x):  # type: ignore[no-untyped-def]
            return x * p["factor"]

        def cpp(self, xs, p):  # type: ignore[no-untyped-def]
            return f"({xs[0]} * {p['factor']})"

    c, a, b = make()
    f = c.parameter("f", init=3.0)
    c.output("y", Scale(factor=f)(a))
    with pytest.raises(hs.CircuitError, match=r"scale: parameter factor=-1.0 is out of range: must be > 0"):
        Scale(factor=-1.0)
    k = hs.compile(c, backend=backend)
    k.call("ab", t=0, a=2.0, b=0.0)
    assert k.value("y") == 6.0
    with pytest.raises(hs.ParamError, match=r"factor=-2.0 \(from parameter 'f'\) is out of range"):
        k.set_params({"f": -2.0})


def test_tunable_parameter_only_where_declared() -> None:
    c, a, b = make()
    w = c.parameter("w", init=1.0)
    assert ops.ewma(a, halflife=w).param_nodes == {"halflife": w}
    with pytest.raises(hs.CircuitError, match="parameter seconds is not tunable"):
        ops.timeout(a, w)
    with pytest.raises(hs.CircuitError, match="must be a number or a learnable parameter"):
        ops.ewma(a, halflife=a)
    neg = c.parameter("neg", init=-1.0)
    with pytest.raises(hs.CircuitError, match=r"halflife=-1.0 \(from parameter 'neg'\) is out of range"):
        ops.ewma(a, halflife=neg)


def test_tree_sum_and_linear(backend: str) -> None:
    c, a, b = make()
    x = c.input("x")
    c.trigger("x", x)
    s = ops.tree_sum([a, b, x, 1.0])
    # balanced: (a + b) + (x + 1)
    assert s.kind == "add" and all(n.kind == "add" for n in s.inputs)
    assert ops.tree_sum([a]) is a
    lin = ops.linear([a, b], [2.0, 3.0], bias=1.0)
    c.output("s", s)
    c.output("lin", lin)
    c.output("lin0", ops.linear([a], [2.0]))
    k = hs.compile(c, backend=backend)
    k.call("ab", t=0, a=1.0, b=10.0)
    k.call("x", t=1, x=100.0)
    assert k.values() == {"s": 112.0, "lin": 33.0, "lin0": 2.0}
    with pytest.raises(hs.CircuitError, match="linear: 2 inputs but 1 weights"):
        ops.linear([a, b], [1.0])
    with pytest.raises(hs.CircuitError, match="needs at least one input"):
        ops.tree_sum([])


def test_min_max_variadic_trees(backend: str) -> None:
    c, a, b = make()
    c.output("lo", ops.min(a, b, 0.5))
    c.output("hi", ops.max(a, b, 0.5))
    k = hs.compile(c, backend=backend)
    k.call("ab", t=0, a=3.0, b=-1.0)
    assert k.values() == {"lo": -1.0, "hi": 3.0}


BUILD_SCRIPT = textwrap.dedent(
    """
    import harness as hs
    from harness import ops
    c = hs.Circuit("det")
    a, b, x = c.input("a"), c.input("b"), c.input("x")
    c.trigger("ab", a, b); c.trigger("x", x)
    w = c.parameter("w", init=0.3)
    e = ops.ewma(a * w + b, halflife=2.0)
    c.output("o", ops.tanh(e - hs.observe(x)) + ops.timeout(x, 1.0))
    print(sorted(n.name for n in c.nodes))
    print(c.structure_hash())
    print(c.draw())
    """
)


def test_names_and_hashes_are_deterministic_across_processes() -> None:
    outs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        res = subprocess.run([sys.executable, "-c", BUILD_SCRIPT], capture_output=True, text=True, env=env, check=True)
        outs.append(res.stdout)
    assert outs[0] == outs[1]
    assert "ewma_" in outs[0] and "counter" not in outs[0]


def test_structure_hash_changes_with_structure_only() -> None:
    def build(hl: float, out: str = "o") -> hs.Circuit:
        c = hs.Circuit("h")
        a = c.input("a")
        c.trigger("a", a)
        c.output(out, ops.ewma(a, hl))
        return c

    assert build(1.0).structure_hash() == build(1.0).structure_hash()
    assert build(1.0).structure_hash() != build(2.0).structure_hash()
    assert build(1.0).structure_hash() != build(1.0, "p").structure_hash()


def test_nodes_of_two_circuits_do_not_mix() -> None:
    c1, a1, _ = make()
    c2 = hs.Circuit("other")
    x = c2.input("x")
    with pytest.raises(hs.CircuitError, match=r"belongs to circuit 'other', not 'b'"):
        _ = a1 + x
    with pytest.raises(hs.CircuitError, match="needs at least one circuit node"):
        ops.exp(1.0)
    with pytest.raises(hs.CircuitError, match="input 1 must be a circuit node or a number, got str"):
        _ = a1 + "x"


def test_parameter_bounds_are_checked_by_set_params(backend: str) -> None:
    c, a, b = make()
    w = c.parameter("w", init=1.0, lower=0.1, upper=5.0)
    c.output("y", a * w)
    k = hs.compile(c, backend=backend)
    with pytest.raises(hs.ParamError, match=r"parameter 'w': value -2.0 is outside \[lower=0.1, upper=5.0\]"):
        k.set_params({"w": -2.0})
    with pytest.raises(hs.ParamError, match="value nan must be finite"):
        k.set_params({"w": math.nan})
    with pytest.raises(hs.ParamError, match="has no parameter 'v' \\(parameters: w\\)"):
        k.set_params({"v": 1.0})
    with pytest.raises(hs.ParamError, match="value must be a number"):
        k.set_params({"w": "1"})
    assert k.params == {"w": 1.0}  # nothing was set by the failed calls
    with pytest.raises(hs.CircuitError, match=r"parameter 'w2': init=9.0 is outside \[lower=0.0, upper=1.0\]"):
        c.parameter("w2", init=9.0, lower=0.0, upper=1.0)

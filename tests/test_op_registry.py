"""The operator registry: each operator class registers itself, and the hs.ops functions, the node syntax and the
README's operator table are made from it (the property tests and the numeric-twin tests read it too)."""

from __future__ import annotations

import inspect

import pytest
from conftest import ROOT

import harness as hs
from harness import ops
from harness.circuit.node import SYNTAX
from harness.circuit.operator import REGISTRY, Operator
from harness.ops import docs
from harness.ops.arith import Stateless

# every hs.ops function as it was written out by hand before the registry, with its arguments
SIGNATURES = {
    "add": "(a, b)", "sub": "(a, b)", "mul": "(a, b)", "div": "(a, b)", "neg": "(x)", "abs": "(x)", "exp": "(x)",
    "log": "(x)", "sqrt": "(x)", "tanh": "(x)", "sigmoid": "(x)", "relu": "(x)", "min": "(a, b, *more)",
    "max": "(a, b, *more)", "clamp": "(x, lo, hi)", "select": "(cond, a, b)", "lt": "(a, b)", "le": "(a, b)",
    "gt": "(a, b)", "ge": "(a, b)", "eq": "(a, b)", "ne": "(a, b)", "ewma": "(x, halflife)",
    "decay_sum": "(x, halflife)", "delta": "(x)", "count": "(x)", "timeout": "(x, seconds)",
    "every": "(x, period)", "tree_sum": "(xs)", "linear": "(xs, weights, bias=0.0)", "observe": "(node)",
}  # fmt: skip
CLASSES = ["Abs", "Add", "Clamp", "Count", "DecaySum", "Delta", "Div", "Eq", "Every", "Ewma", "Exp", "Ge", "Gt", "Le",
           "Log", "Lt", "Max", "Min", "Mul", "Ne", "Neg", "Operator", "Param", "Relu", "Select", "Sigmoid", "Sqrt",
           "StepContext", "Sub", "Tanh", "Timeout"]  # fmt: skip


def arguments(fn: object) -> str:
    return "(" + ", ".join(docs._arg(p) for p in inspect.signature(fn).parameters.values()) + ")"  # type: ignore[arg-type]


def circuit() -> tuple[hs.Circuit, hs.Node, hs.Node]:
    c = hs.Circuit("reg")
    x, y = c.input("x"), c.input("y")
    c.trigger("x", x)
    c.trigger("y", y)
    return c, x, y


def test_every_public_name_of_hs_ops_keeps_its_signature() -> None:
    for name, args in SIGNATURES.items():
        assert name in ops.__all__ and arguments(getattr(ops, name)) == args, name
    assert set(CLASSES) <= set(ops.__all__)
    assert all(isinstance(getattr(ops, name), type) for name in CLASSES)


def test_each_operator_class_of_harness_ops_makes_its_function() -> None:
    _, x, y = circuit()
    assert ops.OPERATORS and all(REGISTRY[k] is op for k, op in ops.OPERATORS.items())
    for kind, op in ops.OPERATORS.items():
        fn = getattr(ops, kind)
        assert fn.__name__ == kind and fn.operator is op and getattr(ops, op.__name__) is op
        assert fn.__doc__.startswith(inspect.cleandoc(op.__doc__))
        inputs = [x, y, x][: len(op.arg_names())]
        params = {k: 0.5 for k in op.params_spec}
        assert fn(*inputs, **params).kind == kind
        assert fn(*inputs, *params.values()).kind == kind  # parameters may be given by position too


def test_python_syntax_builds_the_operator_that_claims_it() -> None:
    _, x, y = circuit()
    claimed = {(op.symbol, op.arity): op for op in REGISTRY.values() if op.symbol is not None}
    assert set(claimed) == set(SYNTAX)
    for (symbol, arity), names in SYNTAX.items():
        kind = claimed[(symbol, arity)].kind
        if arity == 1:
            assert getattr(x, names[0])().kind == kind
            assert getattr(hs.observe(x), names[0])().kind == kind
        else:
            assert getattr(x, names[0])(y).inputs == (x, y) and getattr(x, names[0])(y).kind == kind
    assert (1.0 - x).kind == "sub" and (1.0 - x).inputs[1] is x  # reflected: the number comes first
    assert (x > 2.0).kind == "gt"  # Python turns 2.0 < x into x > 2.0


def test_tree_operators_take_two_or_more_values() -> None:
    _, x, y = circuit()
    node = ops.min(x, y, 3.0, x * 2.0)
    assert node.kind == "min" and [n.kind for n in node.inputs] == ["min", "min"]
    with pytest.raises(TypeError):
        ops.max(x)


def test_count_takes_a_trigger_or_a_node() -> None:
    c, x, _ = circuit()
    assert ops.count(c.triggers["x"]).inputs == (c.triggers["x"].event,)
    assert ops.count(x).inputs == (x,)


def test_a_harness_kind_cannot_be_taken_by_another_class() -> None:
    with pytest.raises(hs.CircuitError, match="kind 'add' is taken by harness.ops.arith.Add"):

        class MyAdd(Operator):
            kind, arity = "add", 2

    assert REGISTRY["add"] is ops.Add


def test_a_user_kind_may_be_defined_again() -> None:
    def define() -> type[Operator]:
        class Twice(Stateless):
            kind = "registry_test_twice"

            def f(self, p, x):  # type: ignore[no-untyped-def]
                return x

        return Twice

    first, second = define(), define()
    assert first is not second and REGISTRY["registry_test_twice"] is second
    assert "registry_test_twice" not in ops.OPERATORS  # hs.ops holds the operators of harness/ops only


def test_a_syntax_belongs_to_one_operator() -> None:
    with pytest.raises(hs.CircuitError, match=r"the syntax '\+' already builds add nodes"):

        class Plus(Operator):
            kind, arity, symbol = "registry_test_plus", 2, "+"

    with pytest.raises(hs.CircuitError, match=r"no Python syntax '\*\*'"):

        class Power(Operator):
            kind, arity, symbol = "registry_test_power", 2, "**"

    assert "registry_test_plus" not in REGISTRY and "registry_test_power" not in REGISTRY
    _, x, y = circuit()
    assert (x + y).kind == "add"


def test_the_readme_operator_table_is_the_generated_one() -> None:
    text = (ROOT / "README.md").read_text()
    assert docs.operator_table() in text
    assert docs.readme_with_table(text) == text, "the README's operator table is stale: run python -m harness.ops.docs"


def test_the_table_has_a_row_per_operator_and_helper() -> None:
    rows = docs.operator_table().splitlines()[2:]
    assert len(rows) == len(ops.OPERATORS) + len(ops.HELPERS)
    assert rows[0].startswith("| `add(a, b)` | `a + b` | stateless, differentiable |")
    assert any(r.startswith("| `abs(x)` | `abs(x)` |") and "\\|x\\|" in r for r in rows)

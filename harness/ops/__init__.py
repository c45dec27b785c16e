"""Generic operators (`hs.ops`): one function per operator, plus the operator classes for `Op(params)(x)`.

Every function takes circuit nodes (or numbers, which become constants) and returns a new node.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.circuit.builder import Trigger
from harness.circuit.node import Node, Observed, observe
from harness.circuit.operator import Operator, Param, StepContext, find_circuit
from harness.errors import CircuitError
from harness.ops.arith import (
    Abs,
    Add,
    Clamp,
    Div,
    Eq,
    Exp,
    Ge,
    Gt,
    Le,
    Log,
    Lt,
    Max,
    Min,
    Mul,
    Ne,
    Neg,
    Relu,
    Select,
    Sigmoid,
    Sqrt,
    Sub,
    Tanh,
)
from harness.ops.stateful import Count, DecaySum, Delta, Ewma
from harness.ops.timers import Every, Timeout

Value = Node | Observed | float
Tunable = float | Node  # a number, or a learnable parameter (c.parameter) where the operator allows it

__all__ = [
    "Abs", "Add", "Clamp", "Count", "DecaySum", "Delta", "Div", "Eq", "Every", "Ewma", "Exp", "Ge", "Gt",
    "Le", "Log", "Lt", "Max", "Min", "Mul", "Ne", "Neg", "Operator", "Param", "Relu", "Select", "Sigmoid",
    "Sqrt", "StepContext", "Sub", "Tanh", "Timeout",
    "abs", "add", "clamp", "count", "decay_sum", "delta", "div", "eq", "every", "ewma", "exp", "ge", "gt",
    "le", "linear", "log", "lt", "max", "min", "mul", "ne", "neg", "observe", "relu", "select", "sigmoid",
    "sqrt", "sub", "tanh", "timeout", "tree_sum",
]  # fmt: skip


def add(a: Value, b: Value) -> Node:
    """a + b"""
    return Add()(a, b)


def sub(a: Value, b: Value) -> Node:
    """a - b"""
    return Sub()(a, b)


def mul(a: Value, b: Value) -> Node:
    """a * b"""
    return Mul()(a, b)


def div(a: Value, b: Value) -> Node:
    """a / b (IEEE: ±inf or nan for b = 0)"""
    return Div()(a, b)


def neg(x: Value) -> Node:
    """-x"""
    return Neg()(x)


def abs(x: Value) -> Node:
    """|x|"""
    return Abs()(x)


def exp(x: Value) -> Node:
    """e**x"""
    return Exp()(x)


def log(x: Value) -> Node:
    """Natural log (-inf at 0, nan below)."""
    return Log()(x)


def sqrt(x: Value) -> Node:
    """Square root (nan below 0)."""
    return Sqrt()(x)


def tanh(x: Value) -> Node:
    """Hyperbolic tangent."""
    return Tanh()(x)


def sigmoid(x: Value) -> Node:
    """Logistic function."""
    return Sigmoid()(x)


def relu(x: Value) -> Node:
    """max(x, 0)"""
    return Relu()(x)


def min(a: Value, b: Value, *more: Value) -> Node:
    """Minimum of two or more values (a balanced tree of pairwise minima; nan if any is nan)."""
    return _tree(Min, [a, b, *more])


def max(a: Value, b: Value, *more: Value) -> Node:
    """Maximum of two or more values (a balanced tree of pairwise maxima; nan if any is nan)."""
    return _tree(Max, [a, b, *more])


def clamp(x: Value, lo: Tunable, hi: Tunable) -> Node:
    """x limited to [lo, hi]."""
    return Clamp(lo=lo, hi=hi)(x)


def select(cond: Value, a: Value, b: Value) -> Node:
    """a where cond != 0, else b."""
    return Select()(cond, a, b)


def lt(a: Value, b: Value) -> Node:
    """1.0 where a < b else 0.0"""
    return Lt()(a, b)


def le(a: Value, b: Value) -> Node:
    """1.0 where a <= b else 0.0"""
    return Le()(a, b)


def gt(a: Value, b: Value) -> Node:
    """1.0 where a > b else 0.0"""
    return Gt()(a, b)


def ge(a: Value, b: Value) -> Node:
    """1.0 where a >= b else 0.0"""
    return Ge()(a, b)


def eq(a: Value, b: Value) -> Node:
    """1.0 where a == b else 0.0 (`==` on nodes keeps Python's identity meaning)."""
    return Eq()(a, b)


def ne(a: Value, b: Value) -> Node:
    """1.0 where a != b else 0.0"""
    return Ne()(a, b)


def ewma(x: Value, halflife: Tunable) -> Node:
    """Time-decayed EWMA of x with the given half-life in seconds."""
    return Ewma(halflife=halflife)(x)


def decay_sum(x: Value, halflife: Tunable) -> Node:
    """Running sum of x decayed by 2^(-dt/halflife)."""
    return DecaySum(halflife=halflife)(x)


def delta(x: Value) -> Node:
    """Change of x since its previous valid value."""
    return Delta()(x)


def count(x: Value | Trigger) -> Node:
    """Number of events of a trigger (pass the Trigger) or of valid updates of a node."""
    if isinstance(x, Trigger):
        x = x.event
    return Count()(x)


def timeout(x: Value, seconds: float) -> Node:
    """Edge 1.0 when `seconds` pass after x's last update without a newer one (timer)."""
    return Timeout(seconds=seconds)(x)


def every(x: Value, period: float) -> Node:
    """Edge ticks on a grid of `period` seconds, starting after x's first update (timer)."""
    return Every(period=period)(x)


def tree_sum(xs: Sequence[Value]) -> Node:
    """Sum of `xs` as a balanced binary tree of additions (depth log2 n)."""
    return _tree(Add, list(xs))


def linear(xs: Sequence[Value], weights: Sequence[Tunable | Value], bias: Tunable | Value = 0.0) -> Node:
    """sum_i weights[i] * xs[i] + bias; weights and bias may be numbers or nodes (e.g. parameters).

    A bias of the number 0 adds nothing.
    """
    xs, weights = list(xs), list(weights)
    if len(xs) != len(weights):
        raise CircuitError(f"linear: {len(xs)} inputs but {len(weights)} weights; give one weight per input")
    if not xs:
        raise CircuitError("linear: needs at least one input")
    total = tree_sum([Mul()(w, x) for w, x in zip(weights, xs, strict=True)])
    if isinstance(bias, (int, float)) and not isinstance(bias, bool) and bias == 0:
        return total
    return Add()(total, bias)


def _tree(op: type[Operator], xs: list[Value]) -> Node:
    """Combine `xs` with the binary `op` as a balanced tree; numbers become constants of the circuit."""
    if not xs:
        raise CircuitError(f"{op.kind}: needs at least one input")
    circuit = find_circuit(op.kind, xs)
    items = [circuit.constant(x) if isinstance(x, (int, float)) else x for x in xs]
    out = _pairwise(op, items)
    if isinstance(out, Observed):
        raise CircuitError(f"{op.kind}: a single observed input has nothing to combine with")
    return out


def _pairwise(op: type[Operator], xs: list[Value]) -> Node | Observed:
    if len(xs) == 1:
        return xs[0]  # type: ignore[return-value]
    mid = len(xs) // 2
    return op()(_pairwise(op, xs[:mid]), _pairwise(op, xs[mid:]))

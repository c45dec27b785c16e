"""The `hs.ops` functions: one per operator class defined in harness/ops (its signature made of the class's
inputs and parameters, its docstring the class's), plus the helpers that combine several values.

`function_for(Clamp)` is `clamp(x, lo, hi)`, which does `Clamp(lo=lo, hi=hi)(x)`; an operator marked `tree`
(min, max) takes two or more values and combines them as a balanced tree.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from inspect import Parameter
from typing import Any

from harness.circuit.node import Node, Observed
from harness.circuit.operator import REQUIRED, Operator, find_circuit
from harness.errors import CircuitError
from harness.ops.arith import Add, Mul

Value = Node | Observed | float
Tunable = float | Node  # a number, or a learnable parameter (c.parameter) where the operator allows it


def function_for(op: type[Operator]) -> Callable[..., Node]:
    """The `hs.ops` function of `op`: named after its kind, with its inputs then its parameters as arguments."""
    sig = signature_for(op)
    names = op.arg_names()

    def function(*args: Any, **kwargs: Any) -> Node:
        given = sig.bind(*args, **kwargs).arguments
        inputs = [given[n] for n in names]
        if op.tree:
            return tree(op, [*inputs, *given.get("more", ())])
        return op.build(inputs, {k: given[k] for k in op.params_spec if k in given})

    function.__name__ = function.__qualname__ = op.kind
    function.__module__ = "harness.ops"
    function.__doc__ = doc_of(op)
    function.__signature__ = sig  # type: ignore[attr-defined]
    function.operator = op  # type: ignore[attr-defined]
    return function


def signature_for(op: type[Operator]) -> inspect.Signature:
    """(inputs..., [*more,] parameters...): inputs are Values, parameters numbers or, if tunable, parameter nodes."""
    if op.tree and (op.arity != 2 or op.params_spec):
        raise CircuitError(f"operator {op.kind}: a tree operator takes two inputs and no parameters")
    args = [Parameter(n, Parameter.POSITIONAL_OR_KEYWORD, annotation="Value") for n in op.arg_names()]
    if op.tree:
        args.append(Parameter("more", Parameter.VAR_POSITIONAL, annotation="Value"))
    for name, decl in op.params_spec.items():
        default = Parameter.empty if decl.default is REQUIRED else decl.default
        kind = Parameter.KEYWORD_ONLY if op.tree else Parameter.POSITIONAL_OR_KEYWORD
        args.append(Parameter(name, kind, default=default, annotation="Tunable" if decl.tunable else "float"))
    return inspect.Signature(args, return_annotation="Node")


def doc_of(op: type[Operator]) -> str:
    """The class docstring, saying for a tree operator that it takes two or more values."""
    text = inspect.cleandoc(op.__doc__ or op.kind)
    if op.tree:
        text += f"\n\nTakes two or more values: a balanced tree of pairwise {op.kind} (depth log2 n)."
    return text


def tree(op: type[Operator], xs: list[Value]) -> Node:
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


def tree_sum(xs: Sequence[Value]) -> Node:
    """Sum of `xs` as a balanced binary tree of additions (depth log2 n)."""
    return tree(Add, list(xs))


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


HELPERS: tuple[Callable[..., Node], ...] = (tree_sum, linear)  # hs.ops functions that are not one operator

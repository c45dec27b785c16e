"""One node's step as C++ lines: its comment, then its operator's code (from the operator class)."""

from __future__ import annotations

from harness.circuit.node import Node
from harness.codegen.emit.context import Context
from harness.errors import CircuitError


def step(ctx: Context, node: Node, local: set[Node], t: str = "t") -> list[str]:
    """Lines that compute `node` inside a function; a value read only there becomes a local (added to `local`)."""
    if node in ctx.vector.deferred:
        return [f"// {ctx.describe(node)}  [vector math: applied to each block of recorded rows]"]
    try:
        if node.op.stateful:
            return _stateful(ctx, node, local, t)
        return _stateless(ctx, node, local)
    except NotImplementedError:
        raise CircuitError(
            f"operator {node.kind!r} (node {node.name}) has no C++ form; compile with backend='python' "
            "or give the operator class cpp()/cpp_step() methods"
        ) from None


def _operands(ctx: Context, node: Node, local: set[Node]) -> tuple[list[str], list[str]]:
    """The operator's inputs as C++ (values, or operator states when it reads them) and their validities."""
    refs = [ctx.ref(m, local) for m in node.inputs]
    xs = [f"s.o{ctx.pos[m]}" for m in node.inputs] if node.op.reads_state else [r[0] for r in refs]
    return xs, [r[1] for r in refs]


def _stateful(ctx: Context, node: Node, local: set[Node], t: str) -> list[str]:
    """A stateful operator steps its state `s.o<i>` (a timer also sets its slot `s.due[w]`)."""
    i = ctx.pos[node]
    xs, oks = _operands(ctx, node, local)
    p = ctx.param_exprs(node)
    comment = f"// {ctx.describe(node)}"
    due = f"s.due[{ctx.timer_slot[node]}]" if node.op.timer else ""
    code = node.op.cpp_step(f"s.o{i}", t, xs, oks, p, due)
    if node.op.cpp_state is None:
        raise NotImplementedError
    if node in ctx.vector.pre:
        weighted = node.op.cpp_step_weighted(f"s.o{i}", t, xs, oks, f"*pre.w{i}++")
        return [
            comment + "  [vector math: weight precomputed per block]",
            f"if constexpr (UsePre) {weighted} else {code}",
        ]
    if node.op.can_fail:
        return [comment, code, f"if (s.err.code != 0 && s.err.node < 0) s.err.node = {i};"]
    return [comment, code]


def _stateless(ctx: Context, node: Node, local: set[Node]) -> list[str]:
    """A stateless operator's value and validity: stored in the state, or a local of the function."""
    i = ctx.pos[node]
    xs, oks = _operands(ctx, node, local)
    p = ctx.param_exprs(node)
    value, ok = node.op.cpp(xs, p), node.op.cpp_valid(xs, oks, p)
    if node.op.can_fail:
        raise CircuitError(f"operator {node.kind!r}: a stateless operator cannot fail in C++")
    if ctx.is_stored(node):
        return [f"// {ctx.describe(node)}", f"s.k{i} = {ok};", f"s.v{i} = {value};"]
    local.add(node)
    return [f"// {ctx.describe(node)}  [local]", f"const bool k{i} = {ok};", f"const double v{i} = {value};"]

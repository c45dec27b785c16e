"""The circuit's code: one straight-line function per trigger and per timer, running the plan's steps."""

from __future__ import annotations

from harness.circuit.leaves import is_list_input
from harness.circuit.node import Node
from harness.codegen.emit.context import Context
from harness.codegen.emit.nodes import step
from harness.names import cpp_label


def emit_timers(ctx: Context) -> list[str]:
    """timer_<i>: what runs when the timer of node i fires (the runtime begins the event and frees its slot)."""
    lines: list[str] = []
    for w, tp in enumerate(ctx.plan.timers):
        i = ctx.pos[tp.node]
        local: set[Node] = set()
        lines += [
            f"// timer {w}: n{i} {cpp_label(tp.node.name)}",
            f"void timer_{i}(State& s, [[maybe_unused]] std::int64_t t) {{",
            f"    {tp.node.op.cpp_timer(f's.o{i}', 't', ctx.param_exprs(tp.node), f's.due[{w}]')}",
        ]
        for node in tp.steps:
            lines += ["    " + ln for ln in step(ctx, node, local)]
        lines += ["}", ""]
    return lines


def emit_triggers(ctx: Context) -> list[str]:
    """trigger_<j>: one event of trigger j, its inputs as arguments (scalars as double, lists as hs::ListView)."""
    lines: list[str] = []
    for j, name in enumerate(ctx.triggers):
        args = ctx.trigger_args(name)
        local: set[Node] = set()
        lines += _signature(ctx, j, name, args)
        lines += _set_inputs(ctx, name, args, local)
        for node in ctx.plan.triggers[name].steps:
            lines += ["    " + ln for ln in step(ctx, node, local)]
        lines += ["}", ""]
    return lines


def _signature(ctx: Context, j: int, name: str, args: list[Node]) -> list[str]:
    """The comment and signature of trigger j's function (a template over UsePre with vector-math decays)."""
    params = "".join(f", hs::ListView in{a}" if is_list_input(n) else f", double in{a}" for a, n in enumerate(args))
    sets = ", ".join(cpp_label(n.name) for n in args) or "nothing"
    lines = [f"// trigger {j} {cpp_label(name)}: sets {sets}"]
    if ctx.vector.pre:
        lines.append("template <bool UsePre>")
        lines.append(
            f"inline void trigger_{j}(State& s, [[maybe_unused]] Pre& pre, [[maybe_unused]] std::int64_t t{params}) {{"
        )
    else:
        lines.append(f"inline void trigger_{j}(State& s, [[maybe_unused]] std::int64_t t{params}) {{")
    return lines


def _set_inputs(ctx: Context, name: str, args: list[Node], local: set[Node]) -> list[str]:
    """The trigger's inputs and its event node (1.0): into the state when stored, else as locals."""
    values = [(node, f"in{a}") for a, node in enumerate(args)]
    values += [(node, "1.0") for node in ctx.plan.triggers[name].inputs if node.kind == "event"]
    lines = []
    for node, value in values:
        i = ctx.pos[node]
        if ctx.is_stored(node):
            lines += [f"    s.v{i} = {value};  // {ctx.describe(node)}", f"    s.k{i} = true;"]
        else:
            typ = "hs::ListView" if is_list_input(node) else "double"
            lines += [
                f"    const {typ} v{i} = {value};  // {ctx.describe(node)}  [local]",
                f"    const bool k{i} = true;",
            ]
            local.add(node)
    return lines

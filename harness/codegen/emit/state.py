"""The circuit's `State` struct (parameters, stored values, operator states, timer slots) and, with vector
math decays, the `Pre` struct of a block's precomputed decay weights."""

from __future__ import annotations

from harness.circuit.leaves import is_list_input
from harness.codegen.emit.context import Context
from harness.names import cpp_label, cpp_name


def emit_state(ctx: Context) -> list[str]:
    """struct State: what the runtime needs (p, err, due) and one member per stored node or operator state."""
    lines = ["struct State {", f"    double p[{max(1, len(ctx.params))}];  // learnable parameters"]
    lines += [f"    // p[{j}] = {cpp_name(name)}" for j, name in enumerate(ctx.params)]
    lines.append("    hs::OpError err;  // the first operator error of the current event")
    if ctx.plan.timers:
        slots = ", ".join("hs::NO_TIMER" for _ in ctx.plan.timers)
        lines.append(f"    std::int64_t due[{len(ctx.plan.timers)}] = {{{slots}}};  // timer slots, in plan order")
    for node in ctx.plan.order:
        i = ctx.pos[node]
        if node.kind in ("const", "param") or is_list_input(node):
            continue
        if node.op.stateful:
            slot = f" [timer slot due[{ctx.timer_slot[node]}]]" if node.op.timer else ""
            lines.append(f"    {node.op.cpp_state} o{i};  // {ctx.describe(node)}{slot}")
        elif ctx.is_stored(node):
            lines.append(f"    double v{i} = 0.0;  // {ctx.describe(node)}")
            lines.append(f"    bool k{i} = false;")
    return [*lines, "};", ""]


def emit_pre(ctx: Context) -> list[str]:
    """vector_math: each decay's weights for the rows of the current block, and a cursor to the next one."""
    if not ctx.vector.pre:
        return []
    lines = ["// vector math: the precomputed decay weights of the current block, one buffer and cursor per decay"]
    lines.append("struct Pre {")
    for node in ctx.vector.pre:
        i = ctx.pos[node]
        lines.append(f"    double buf{i}[64];  // n{i} {cpp_label(node.name)}")
        lines.append(f"    const double* w{i} = nullptr;")
    return [*lines, "};", ""]

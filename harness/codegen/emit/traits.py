"""The traits struct `Circuit`: the little glue the runtime templates of `cpp/harness/kernel.hpp` need.

Sizes and flags, the static nodes, the edge resets, the switches from a trigger code or timer to its
function, the outputs read from the state, which input columns each trigger needs, and with vector math
the block pre-pass and post-pass. The C interface table is `hs::kernel::api<Circuit>()`.
"""

from __future__ import annotations

from harness.circuit.leaves import is_list_input
from harness.codegen.emit.context import Context
from harness.codegen.emit.nodes import step
from harness.names import cpp_label

INDENT = "    "


def emit_traits(ctx: Context) -> list[str]:
    """struct Circuit (the traits of hs::kernel) and the kernel's C interface table HS_API."""
    parts = [
        _constants(ctx),
        _apply_params(ctx),
        _begin_event(ctx),
        _dispatch(ctx),
        _fire_timer(ctx),
        _outputs(ctx),
        _column_needs(ctx),
        _prepass(ctx),
        _after_block(ctx),
    ]
    body = [INDENT + ln if ln else ln for part in parts for ln in part]
    while body and not body[-1]:
        body.pop()
    return [
        "// what the runtime (harness/kernel.hpp) needs to know of this circuit",
        "struct Circuit {",
        *body,
        "};",
        "",
        "constexpr hs_kernel_api HS_API = hs::kernel::api<Circuit>();",
        "",
    ]


def _constants(ctx: Context) -> list[str]:
    """Types, sizes and flags."""
    plan = ctx.plan
    guarded = ctx.can_fail or bool(plan.timers and any(n.op.can_fail for tp in plan.timers for n in tp.steps))
    sizes = [
        ("n_inputs", len(ctx.inputs)),
        ("n_triggers", len(ctx.triggers)),
        ("n_outputs", len(ctx.outputs)),
        ("n_params", len(ctx.params)),
        ("n_timers", len(plan.timers)),
    ]
    flags = [("can_fail", ctx.can_fail), ("guarded", guarded), ("block_outputs", bool(ctx.vector.deferred))]
    return [
        "using state_type = State;",
        f"using pre_type = {'Pre' if ctx.vector.pre else 'hs::kernel::NoPre'};",
        *[f"static constexpr int {name} = {n};" for name, n in sizes],
        *[f"static constexpr bool {name} = {'true' if on else 'false'};" for name, on in flags],
        "",
    ]


def _apply_params(ctx: Context) -> list[str]:
    """Nodes computed from constants and parameters only."""
    comment = "// nodes computed from constants and parameters only: at start and on every set_params"
    if not ctx.plan.static:
        return [comment, "static void apply_params(State&) {}", ""]
    lines = [comment, "static void apply_params(State& s) {"]
    for node in ctx.plan.static:
        lines += [INDENT + ln for ln in step(ctx, node, set())]
    return [*lines, "}", ""]


def _begin_event(ctx: Context) -> list[str]:
    """Edge-triggered values invalid again at the start of each event."""
    resets = []
    for node in ctx.plan.edge:
        i = ctx.pos[node]
        if node.op.stateful:
            resets.append(f"    s.o{i}.ok = false;  // n{i} {cpp_label(node.name)}")
        elif ctx.is_stored(node):
            resets.append(f"    s.k{i} = false;  // n{i} {cpp_label(node.name)}")
    comment = "// edge-triggered values are invalid in every event but the one that produces them"
    if not resets:
        return [comment, "static void begin_event(State&) {}", ""]
    return [comment, "static void begin_event(State& s) {", *resets, "}", ""]


def _dispatch(ctx: Context) -> list[str]:
    """The switch from a trigger code to its function; inputs come from a replay row or a call's arguments."""
    pre = "pre_type& pre" if ctx.vector.pre else "pre_type&"
    in_ = "const In& in" if any(ctx.trigger_args(name) for name in ctx.triggers) else "const In&"
    lines = [
        "// the function of trigger `code`, its inputs read from `in` by (input column, argument slot)",
        "template <bool UsePre, typename In>",
        f"static HS_INLINE void dispatch(State& s, {pre}, std::int32_t code, std::int64_t t, {in_}) {{",
        "    switch (code) {",
    ]
    call = "trigger_{j}<UsePre>(s, pre, t" if ctx.vector.pre else "trigger_{j}(s, t"
    for j, name in enumerate(ctx.triggers):
        args, slots = [], {False: 0, True: 0}
        for node in ctx.trigger_args(name):
            is_list = is_list_input(node)
            reader = "list" if is_list else "number"
            args.append(f", in.{reader}({ctx.input_index[node]}, {slots[is_list]})")
            slots[is_list] += 1
        lines.append(f"        case {j}: {call.format(j=j)}{''.join(args)}); break;  // {cpp_label(name)}")
    return [*lines, "        default: break;", "    }", "}", ""]


def _fire_timer(ctx: Context) -> list[str]:
    """The switch from a timer slot to its function."""
    if not ctx.plan.timers:
        return []
    lines = [
        "// the function of timer w (its slot is s.due[w])",
        "static HS_INLINE void fire_timer(State& s, int w, std::int64_t t) {",
    ]
    lines.append("    switch (w) {")
    for w, tp in enumerate(ctx.plan.timers):
        i = ctx.pos[tp.node]
        lines.append(f"        case {w}: timer_{i}(s, t); break;  // n{i} {cpp_label(tp.node.name)}")
    return [*lines, "        default: break;", "    }", "}", ""]


def _outputs(ctx: Context) -> list[str]:
    """Each output's value and validity read from the state (Block: as a replay row records it)."""
    lines = [
        "// the outputs after an event (Block: as recorded per row, before after_block's vector math)",
        "template <bool Block>",
        "static HS_INLINE void outputs(const State& s, double* v, bool* k) {"
        if ctx.outputs
        else "static HS_INLINE void outputs(const State&, double*, bool*) {",
    ]
    for j, name in enumerate(ctx.outputs):
        value, ok, recorded = ctx.output_read(name)
        if recorded is not None:
            value = f"Block ? {recorded} : {value}"
        lines.append(f"    v[{j}] = {value};  // {cpp_label(name)}")
        lines.append(f"    k[{j}] = {ok};")
    return [*lines, "}", ""]


def _column_needs(ctx: Context) -> list[str]:
    """Which rows of a block need each input column: those of the triggers that set it."""
    comment = "// the rows of a block that need input column c: those of the triggers that set it"
    if not ctx.inputs:
        return [comment, "static HS_INLINE void column_needs(const std::uint64_t*, std::uint64_t*) {}", ""]
    lines = [comment, "static HS_INLINE void column_needs(const std::uint64_t* rows_of, std::uint64_t* need) {"]
    for c, node in enumerate(ctx.inputs):
        need = " | ".join(f"rows_of[{j}]" for j in ctx.column_users(c)) or "0"
        lines.append(f"    need[{c}] = {need};  // {cpp_label(node.name)}")
    return [*lines, "}", ""]


def _prepass(ctx: Context) -> list[str]:
    """vector_math: the decay weights of every row of a block, one vector exp2 per decay."""
    if not ctx.vector.pre:
        return []
    lines = [
        "// vector math: the decay weights 2^(-dt/halflife) of the block's rows, one vector exp2 per decay",
        "static HS_INLINE void prepass(const State& s, Pre& pre, const std::uint64_t* rows_of, const std::int64_t* t,",
        "                              std::int64_t m) {",
    ]
    for node, codes in ctx.vector.pre.items():
        i = ctx.pos[node]
        hl = ctx.param_exprs(node)[node.op.vector_weight]
        match = " || ".join(f"((rows_of[{c}] >> k) & 1)" for c in codes)
        lines += [
            f"    {{  // n{i} {cpp_label(node.name)}",
            f"        std::int64_t last = s.o{i}.t;",
            "        std::int64_t cnt = 0;",
            "        for (std::int64_t k = 0; k < m; ++k) {",
            f"            if ({match}) {{",
            "                const std::int64_t now = t[k];",
            f"                pre.buf{i}[cnt++] = -(hs::elapsed_ns(now, last) / 1e9) / {hl};",
            "                last = now;",
            "            }",
            "        }",
            f"        hs::vec::exp2(pre.buf{i}, cnt);",
            f"        pre.w{i} = pre.buf{i};",
            "    }",
        ]
    return [*lines, "}", ""]


def _after_block(ctx: Context) -> list[str]:
    """vector_math: the deferred output functions applied to the block's recorded values."""
    if not ctx.vector.deferred:
        return []
    lines = [
        "// vector math: each deferred output's function over the block's recorded rows",
        "static void after_block(double* const* out, std::int64_t b, std::int64_t m) {",
    ]
    for j, name in enumerate(ctx.outputs):
        y = ctx.plan.outputs[name]
        if y in ctx.vector.deferred:
            lines.append(f"    double* const out{j} = out[{j}];  // {cpp_label(name)}")
            lines.append(f"    {y.op.vector_cpp}(out{j} + b, m);")
    return [*lines, "}", ""]

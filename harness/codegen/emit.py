"""C++ emission from a circuit's call plan: one struct of state, one straight-line function per trigger and
per timer, the replay loop, and the C interface (`cpp/harness/kernel_abi.h`) that harness._native runs.

Identifiers in the output are positional (`v12`, `k12` = value and validity of plan node 12, `o12` its
operator state, `due12` its timer slot); every node gets a comment with its name and operator. Names and
numbers reach the source only through `harness.codegen.literals`. The same circuit always gives the same
bytes (no timestamps, no counters, plan order only).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.circuit.builder import Circuit
from harness.circuit.leaves import is_list_input
from harness.circuit.node import Node
from harness.codegen.literals import cpp_double, cpp_int, cpp_name
from harness.errors import CircuitError

GENERATOR_VERSION = "1"
VECTOR_MATH_LEVELS = ("outputs", "all")
_HEADER = re.compile(r"harness/[a-z_]+\.hpp")


def vector_math_level(value: bool | str | None) -> str | None:
    """Normalise the `vector_math` option: False/None -> None, True -> "outputs", or "outputs"/"all"."""
    if value is None or value is False:
        return None
    if value is True:
        return "outputs"
    if value in VECTOR_MATH_LEVELS:
        return str(value)
    raise CircuitError(f"vector_math={value!r} is not one of False, True, {', '.join(map(repr, VECTOR_MATH_LEVELS))}")


@dataclass(frozen=True)
class KernelSource:
    """Generated C++ for one circuit plus the index layout the runtime uses to talk to it."""

    circuit: str
    body: str  # everything but the module entry point (which names the module after the content hash)
    inputs: tuple[str, ...]  # column order of replay
    triggers: tuple[str, ...]  # trigger codes
    outputs: tuple[str, ...]
    params: tuple[str, ...]
    vector_math: str | None = None

    def module_source(self, module: str) -> str:
        """The complete translation unit for a module called `module`."""
        name = cpp_name(module, "module name")
        doc = f'"harness kernel for circuit {cpp_name(self.circuit)}"'
        return f"{self.body}\nHS_DEFINE_KERNEL_MODULE({name}, HS_API, {doc})\n"


def generate(circuit: Circuit, *, vector_math: bool | str | None = None) -> KernelSource:
    """Generate the kernel source of `circuit` (validated first).

    With `vector_math`, replay evaluates some transcendental functions a block of rows at a time with
    vector math (see `_Emitter.plan_vector_math`) instead of bit for bit like the reference.
    """
    return _Emitter(circuit, vector_math_level(vector_math)).emit()


class _Emitter:
    def __init__(self, circuit: Circuit, vector_math: str | None = None) -> None:
        self.circuit = circuit
        self.plan = plan = circuit.plan()
        self.pos: dict[Node, int] = {n: i for i, n in enumerate(plan.order)}
        self.inputs = [n for n in plan.order if n.kind == "input"]
        self.input_index = {n: i for i, n in enumerate(self.inputs)}
        self.params = list(plan.parameters)
        self.param_index = {name: j for j, name in enumerate(self.params)}
        self.triggers = list(plan.triggers)
        self.outputs = list(plan.outputs)
        self.vector = vector_math
        self.deferred: dict[Node, Node] = {}  # output node -> its input; the function runs per block
        self.pre: dict[Node, list[int]] = {}  # decay node -> trigger codes it runs in; weights per block
        if vector_math:
            self.plan_vector_math()
        self.stored = (set(plan.stored) | set(self.deferred.values())) - set(self.deferred)
        self.can_fail = any(n.op.can_fail for n in plan.order)

    def is_stored(self, node: Node) -> bool:
        """Stored in `State` (the plan's rule, plus the inputs of deferred output functions)."""
        return node in self.stored

    def plan_vector_math(self) -> None:
        """Choose what vector_math evaluates a block at a time.

        - "outputs" (and "all"): an output `y = f(x)` (f with a vector form: tanh, exp, log) that nothing
          else reads is not computed per event: replay records x, then applies f to the block of recorded
          values. Since y changes exactly when x does, that is the same value; `value()` applies the
          scalar f to the stored x. Outputs differ from the exact kernel by a few ulp (~1e-15 relative).
        - "all" also: a decay (ewma, decay_sum) that runs only in trigger events, and whose input is valid
          whenever it runs, samples at exactly the rows of those triggers. A pre-pass computes its weights
          2^(-dt/halflife) for the block with vector exp2; the row loop then runs the recurrence. The
          weights differ by a few ulp, which circuits that subtract an average from its own input (an
          ill-conditioned difference) amplify: ~1e-11 relative on the l1_pressure benchmark.
        """
        plan = self.plan
        readers: dict[Node, int] = dict.fromkeys(plan.order, 0)
        for node in plan.order:
            for m in node.inputs:
                readers[m] += 1
        for y in plan.outputs.values():
            if (
                y.op.vector_cpp
                and readers[y] == 0
                and y not in self.circuit.stored
                and y not in plan.static
                and len(y.inputs) == 1
                and not y.observed[0]
                and y.inputs[0].kind not in ("const", "param")
            ):
                self.deferred[y] = y.inputs[0]
        if self.vector != "all":
            return
        in_timers = {n for tp in plan.timers for n in (tp.node, *tp.steps)}
        for node in plan.order:
            if not node.op.vector_weight or node in in_timers or node.observed[0]:
                continue
            codes = [j for j, name in enumerate(self.triggers) if node in plan.triggers[name].steps]
            if codes and all(self.always_valid(node.inputs[0], self.triggers[j]) for j in codes):
                self.pre[node] = codes

    def always_valid(self, node: Node, trigger: str) -> bool:
        """Whether `node` is surely valid when it runs in events of `trigger` (a static, safe answer)."""
        tp = self.plan.triggers[trigger]
        if node.kind in ("const", "param"):
            return True
        if node.kind in ("input", "event"):
            return node in tp.inputs
        if node.kind == "count":
            return True
        if node.op.stateful or node.op.timer or node.kind == "select" or any(node.observed):
            return False
        return all(self.always_valid(m, trigger) for m in node.inputs)

    # ----- naming ------------------------------------------------------------------------------------
    def describe(self, node: Node) -> str:
        """A one-line, sanitised description of a node for a comment."""
        i = self.pos[node]
        parts = []
        if node.kind == "input":
            return f"n{i} {cpp_name(node.name)} = input{'[list]' if is_list_input(node) else ''}()"
        for k, v in node.op.params.items():
            value = (
                f"param {cpp_name(v.name)}"
                if isinstance(v, Node)
                else cpp_name(v)
                if isinstance(v, str)  # a string parameter is one of its declared choices
                else (cpp_int(v) if isinstance(v, int) else cpp_double(v))
            )
            parts.append(f"{cpp_name(k)}={value}")
        args = ", ".join(
            ("observe " if obs else "") + (cpp_double(m.op.params["value"]) if m.kind == "const" else f"n{self.pos[m]}")
            for m, obs in zip(node.inputs, node.observed, strict=True)
        )
        conf = f"[{', '.join(parts)}]" if parts else ""
        return f"n{i} {cpp_name(node.name)} = {cpp_name(node.kind)}{conf}({args})"

    def ref(self, node: Node, local: set[Node]) -> tuple[str, str]:
        """C++ expressions of (value, validity) of `node` as seen from inside a function."""
        i = self.pos[node]
        if node.kind == "const":
            return cpp_double(node.op.params["value"]), "true"
        if node.kind == "param":
            return f"s.p[{self.param_index[node.name]}]", "true"
        if node in local:
            return f"v{i}", f"k{i}"
        if node.op.stateful:
            return f"s.o{i}.v", f"s.o{i}.ok"
        return f"s.v{i}", f"s.k{i}"

    def param_exprs(self, node: Node) -> dict[str, str]:
        """C++ expressions of the numeric parameters of `node` (choice parameters are read by the operator)."""
        out = {}
        for k, v in node.op.params.items():
            if isinstance(v, Node):
                out[k] = f"s.p[{self.param_index[v.name]}]"
            elif isinstance(v, str):
                continue
            elif isinstance(v, int):
                out[k] = cpp_int(v)
            else:
                out[k] = cpp_double(v)
        return out

    def step(self, node: Node, local: set[Node], t: str = "t") -> list[str]:
        i = self.pos[node]
        if node in self.deferred:
            return [f"// {self.describe(node)}  [vector math: applied to each block of recorded rows]"]
        refs = [self.ref(m, local) for m in node.inputs]
        xs = [f"s.o{self.pos[m]}" for m in node.inputs] if node.op.reads_state else [r[0] for r in refs]
        oks = [r[1] for r in refs]
        p = self.param_exprs(node)
        stored = self.is_stored(node)
        comment = f"// {self.describe(node)}{'' if stored else '  [local]'}"
        try:
            if node.op.stateful:
                due = f"s.due{i}" if node.op.timer else ""
                code = node.op.cpp_step(f"s.o{i}", t, xs, oks, p, due)
                if node.op.cpp_state is None:
                    raise NotImplementedError
                if node in self.pre:
                    weighted = node.op.cpp_step_weighted(f"s.o{i}", t, xs, oks, f"*pre.w{i}++")
                    return [
                        comment + "  [vector math: weight precomputed per block]",
                        f"if constexpr (UsePre) {weighted} else {code}",
                    ]
                if node.op.can_fail:
                    return [comment, code, f"if (s.err.code != 0 && s.err.node < 0) s.err.node = {i};"]
                return [comment, code]
            value, ok = node.op.cpp(xs, p), node.op.cpp_valid(xs, oks, p)
            if node.op.can_fail:
                raise CircuitError(f"operator {node.kind!r}: a stateless operator cannot fail in C++")
        except NotImplementedError:
            raise CircuitError(
                f"operator {node.kind!r} (node {node.name}) has no C++ form; compile with backend='python' "
                "or give the operator class cpp()/cpp_step() methods"
            ) from None
        if stored:
            return [comment, f"s.k{i} = {ok};", f"s.v{i} = {value};"]
        local.add(node)
        return [comment, f"const bool k{i} = {ok};", f"const double v{i} = {value};"]

    # ----- whole source ------------------------------------------------------------------------------
    def emit(self) -> KernelSource:
        c = cpp_name(self.circuit.name, "circuit name")
        lines: list[str] = [
            f"// harness kernel for circuit {c}: generated by harness.codegen (generator {GENERATOR_VERSION}).",
            "// Do not edit: regenerate from the circuit. One function per trigger and per timer, in plan order.",
            *(
                ["// vector math: block-wise exp2/tanh/exp/log through libmvec (results within ~1e-15 relative)."]
                if self.vector
                else []
            ),
            f"// structure {self.circuit.structure_hash()}",
            "#include <algorithm>",
            "#include <cstdint>",
            "#include <cstring>",
            "#include <limits>",
            "#include <new>",
            "",
            '#include "harness/kernel_abi.h"',
            '#include "harness/module.hpp"',
            '#include "harness/numeric.hpp"',
            '#include "harness/ops.hpp"',
            '#include "harness/replay.hpp"',
            *(['#include "harness/vecmath.hpp"'] if self.vector else []),
            *[f'#include "{h}"' for h in self.includes()],
            "",
            "#define HS_INF (std::numeric_limits<double>::infinity())",
            "#define HS_NAN (std::numeric_limits<double>::quiet_NaN())",
            "",
            "namespace {",
            "",
            *self.emit_state(),
            *self.emit_pre(),
            *self.emit_static(),
            *self.emit_begin_event(),
            *self.emit_record(),
            *self.emit_timers(),
            *self.emit_triggers(),
            *self.emit_interface(),
            "}  // namespace",
            "",
        ]
        return KernelSource(
            vector_math=self.vector,
            circuit=self.circuit.name,
            body="\n".join(lines),
            inputs=tuple(cpp_name(n.name) for n in self.inputs),
            triggers=tuple(cpp_name(t) for t in self.triggers),
            outputs=tuple(cpp_name(o) for o in self.outputs),
            params=tuple(cpp_name(p) for p in self.params),
        )

    def includes(self) -> list[str]:
        """Runtime headers the circuit's operators need beyond the common ones (e.g. the order book)."""
        headers = {h for node in self.plan.order for h in node.op.cpp_includes}
        for h in headers:
            if not _HEADER.fullmatch(h):
                raise CircuitError(f"code generation refused the include {h!r}")
        return sorted(headers)

    def emit_state(self) -> list[str]:
        plan = self.plan
        lines = ["struct State {", f"    double p[{max(1, len(self.params))}];  // learnable parameters"]
        for j, name in enumerate(self.params):
            lines.append(f"    // p[{j}] = {cpp_name(name)}")
        lines.append("    hs::OpError err;  // the first operator error of the current event")
        for node in plan.order:
            i = self.pos[node]
            if node.kind in ("const", "param") or is_list_input(node):
                continue
            if node.op.stateful:
                lines.append(f"    {node.op.cpp_state} o{i};  // {self.describe(node)}")
                if node.op.timer:
                    lines.append(f"    std::int64_t due{i} = hs::NO_TIMER;")
            elif self.is_stored(node):
                lines.append(f"    double v{i} = 0.0;  // {self.describe(node)}")
                lines.append(f"    bool k{i} = false;")
        lines += ["};", ""]
        return lines

    def emit_pre(self) -> list[str]:
        """vector_math: cursors into the block's precomputed decay weights, one per decay."""
        if not self.pre:
            return []
        lines = ["// vector math: the next precomputed decay weight of each decay in the current block", "struct Pre {"]
        lines += [
            f"    const double* w{self.pos[n]} = nullptr;  // n{self.pos[n]} {cpp_name(n.name)}" for n in self.pre
        ]
        return [*lines, "};", ""]

    def emit_static(self) -> list[str]:
        lines = [
            "// nodes computed from constants and parameters only: at start and on every set_params",
            "void apply_params(State& s) {",
        ]
        for node in self.plan.static:
            lines += ["    " + ln for ln in self.step(node, set())]
        lines += ["    (void)s;", "}", ""]
        return lines

    def emit_begin_event(self) -> list[str]:
        lines = [
            "// edge-triggered values are invalid in every event but the one that produces them",
            "inline void begin_event(State& s) {",
        ]
        for node in self.plan.edge:
            i = self.pos[node]
            if node.op.stateful:
                lines.append(f"    s.o{i}.ok = false;")
            elif self.is_stored(node):
                lines.append(f"    s.k{i} = false;")
        lines += ["    (void)s;", "}", ""]
        return lines

    def emit_timers(self) -> list[str]:
        lines: list[str] = []
        for tp in self.plan.timers:
            i = self.pos[tp.node]
            local: set[Node] = set()
            lines.append(f"// timer of n{i} {cpp_name(tp.node.name)}")
            lines.append(f"void timer_{i}(State& s, std::int64_t t) {{")
            lines.append("    begin_event(s);")
            lines.append(f"    {tp.node.op.cpp_timer(f's.o{i}', 't', self.param_exprs(tp.node), f's.due{i}')}")
            for node in tp.steps:
                lines += ["    " + ln for ln in self.step(node, local)]
            lines += ["    (void)t;", "}", ""]
        lines += [
            "// fire every timer due at or before t: earliest first, ties in plan order. With a row sink, record",
            "// a row after each firing. Returns 0, HS_ERR_OPERATOR (s.err says which) or HS_ERR_MEMORY.",
            "template <bool Rows>",
            "inline std::int32_t fire_due(State& s, std::int64_t t, hs_rows* rows) {",
        ]
        if self.plan.timers:
            lines.append("    if (t == hs::NO_TIMER) t = hs::NO_TIMER - 1;  // INT64_MAX: an empty slot, never due")
            lines.append("    for (;;) {")
            lines.append("        int which = -1;")
            lines.append("        std::int64_t best = 0;")
            for w, tp in enumerate(self.plan.timers):
                i = self.pos[tp.node]
                lines.append(
                    f"        if (s.due{i} <= t && (which < 0 || s.due{i} < best)) {{ which = {w}; best = s.due{i}; }}"
                )
            lines.append("        switch (which) {")
            for w, tp in enumerate(self.plan.timers):
                i = self.pos[tp.node]
                lines.append(f"            case {w}: s.due{i} = hs::NO_TIMER; timer_{i}(s, best); break;")
            lines.append("            default: return HS_ERR_NONE;")
            lines.append("        }")
            lines.append("        if (s.err.code != 0) return HS_ERR_OPERATOR;")
            lines.append("        if constexpr (Rows) {")
            lines.append("            if (!record_row(s, rows, best, -(which + 1))) return HS_ERR_MEMORY;")
            lines.append("        }")
            lines.append("    }")
        else:
            lines += ["    (void)s;", "    (void)t;", "    (void)rows;", "    return HS_ERR_NONE;"]
        lines += ["}", ""]
        return lines

    def trigger_args(self, name: str) -> list[Node]:
        return [n for n in self.plan.triggers[name].inputs if n.kind == "input"]

    def emit_triggers(self) -> list[str]:
        lines: list[str] = []
        for j, name in enumerate(self.triggers):
            tp = self.plan.triggers[name]
            args = self.trigger_args(name)
            params = "".join(
                f", hs::ListView in{a}" if is_list_input(n) else f", double in{a}" for a, n in enumerate(args)
            )
            lines.append(
                f"// trigger {j} {cpp_name(name)}: sets {', '.join(cpp_name(n.name) for n in args) or 'nothing'}"
            )
            if self.pre:
                lines.append("template <bool UsePre>")
                lines.append(f"inline void trigger_{j}(State& s, Pre& pre, std::int64_t t{params}) {{")
            else:
                lines.append(f"inline void trigger_{j}(State& s, std::int64_t t{params}) {{")
            local: set[Node] = set()
            for a, node in enumerate(args):
                i = self.pos[node]
                if self.is_stored(node):
                    lines.append(f"    s.v{i} = in{a};  // {self.describe(node)}")
                    lines.append(f"    s.k{i} = true;")
                else:
                    typ = "hs::ListView" if is_list_input(node) else "double"
                    lines.append(f"    const {typ} v{i} = in{a};  // {self.describe(node)}  [local]")
                    lines.append(f"    const bool k{i} = true;")
                    local.add(node)
            for node in tp.inputs:
                if node.kind == "event":
                    i = self.pos[node]
                    if self.is_stored(node):
                        lines += [f"    s.v{i} = 1.0;  // {self.describe(node)}", f"    s.k{i} = true;"]
                    else:
                        lines += [
                            f"    const double v{i} = 1.0;  // {self.describe(node)}  [local]",
                            f"    const bool k{i} = true;",
                        ]
                        local.add(node)
            for node in tp.steps:
                lines += ["    " + ln for ln in self.step(node, local)]
            lines += ["    (void)t;", *(["    (void)pre;"] if self.pre else []), "}", ""]
        return lines

    def call_trigger(self, j: int, use_pre: bool) -> str:
        """The call of trigger function j (with the block's precomputed weights when `use_pre`)."""
        if not self.pre:
            return f"trigger_{j}(s, now"
        return f"trigger_{j}<{'true' if use_pre else 'false'}>(s, pre, now"

    def dispatch(self) -> list[str]:
        """switch over trigger codes for `call`: scalar inputs from `in`, list inputs from `lists`/`sizes`."""
        lines = ["switch (trig) {"]
        for j, name in enumerate(self.triggers):
            args, si, li = [], 0, 0
            for node in self.trigger_args(name):
                if is_list_input(node):
                    args.append(f"hs::ListView{{lists[{li}], sizes[{li}]}}")
                    li += 1
                else:
                    args.append(f"in[{si}]")
                    si += 1
            call_args = "".join(f", {a}" for a in args)
            lines.append(f"    case {j}: {self.call_trigger(j, False)}{call_args}); break;")
        lines += ["    default: break;", "}"]
        return lines

    def replay_dispatch(self) -> list[str]:
        """switch over the (already checked) trigger code of row r inside the replay loop."""
        lines = ["switch (code) {"]
        for j, name in enumerate(self.triggers):
            vals = []
            for n in self.trigger_args(name):
                c = self.input_index[n]
                if is_list_input(n):
                    vals.append(f"hs::ListView{{col{c} + off{c}[r], off{c}[r + 1] - off{c}[r]}}")
                else:
                    vals.append(f"col{c}[r]")
            lines.append(f"    case {j}: {self.call_trigger(j, True)}{''.join(', ' + v for v in vals)}); break;")
        lines += ["    default: break;", "}"]
        return lines

    def column_users(self, c: int) -> list[int]:
        """Codes of the triggers that set input column c."""
        node = self.inputs[c]
        return [j for j, name in enumerate(self.triggers) if node in self.trigger_args(name)]

    def emit_replay(self, outs: list[tuple[str, str]]) -> list[str]:
        """The replay loop: blocks of 64 rows, each checked with bit masks, then run without checks.

        A template over the width of trigger codes, dictionary remapping, and recording into a row sink
        (a row after every event and timer firing) instead of one row per event. The checks (time order,
        known trigger, a trigger's input columns present and not null) report the first broken rule in
        row order, and within a row in the order time, trigger, columns: the order of `check_rows`.
        """
        n_in, n_trig = len(self.inputs), len(self.triggers)
        timers = bool(self.plan.timers)
        lines = [
            "template <typename Code, bool Remap, bool Rows>",
            "std::int64_t replay_loop(State& s, std::int64_t n, const std::int64_t* t, std::int64_t prev,",
            "                         const Code* codes, const std::int32_t* remap, std::int64_t remap_size,",
            "                         const double* const* columns, const std::int32_t* const* list_offsets,",
            "                         const std::uint8_t* const* valid, const std::int64_t* valid_offset,",
            "                         double* const* out, std::uint8_t* const* bits, hs_rows* rows, hs_replay_error* err) {",
        ]
        for i, node in enumerate(self.inputs):
            lines.append(f"    const double* const col{i} = columns[{i}];  // {cpp_name(node.name)}")
            if is_list_input(node):
                lines.append(f"    const std::int32_t* const off{i} = list_offsets[{i}];")
        for j, name in enumerate(self.outputs):
            lines.append(f"    double* const out{j} = Rows ? nullptr : out[{j}];  // {cpp_name(name)}")
            lines.append(f"    std::uint8_t* const bits{j} = Rows ? nullptr : bits[{j}];")
        for node in self.pre:
            lines.append(f"    double w{self.pos[node]}[64];  // decay weights of n{self.pos[node]} for this block")
        lines += [
            *(["    Pre pre{};"] if self.pre else []),
            "    for (std::int64_t b = 0; b < n; b += 64) {",
            "        const std::int64_t m = std::min<std::int64_t>(64, n - b);",
            "        // check the block: one bit per row for each rule",
            "        const std::uint64_t down = hs::time_decreases(t + b, m, prev);",
            "        prev = t[b + m - 1];",
            f"        std::uint64_t rows_of[{max(1, n_trig)}];",
            "        std::uint64_t unknown;",
            f"        hs::trigger_masks<{max(1, n_trig)}, Code, Remap>(codes + b, m, remap, remap_size, rows_of, unknown);",
        ]
        for c in range(n_in):
            users = self.column_users(c)
            need = " | ".join(f"rows_of[{j}]" for j in users) or "std::uint64_t{0}"
            lines += [
                f"        const std::uint64_t need{c} = {need};",
                f"        const std::uint64_t bad{c} = col{c} == nullptr ? need{c}",
                f"            : (valid[{c}] != nullptr ? need{c} & ~hs::load_bits(valid[{c}], valid_offset[{c}] + b, m) : 0);",
            ]
        any_bad = " | ".join(["down", "unknown", *[f"bad{c}" for c in range(n_in)]])
        lines += [
            f"        const std::uint64_t broken = {any_bad};",
            "        if (broken != 0) {",
            "            const int k = __builtin_ctzll(broken);",
            "            const std::uint64_t bit = std::uint64_t{1} << k;",
            "            if (down & bit) return fail(err, b + k, HS_ERR_TIME, -1);",
            "            if (unknown & bit) return fail(err, b + k, HS_ERR_TRIGGER, -1);",
            *[
                f"            if (bad{c} & bit) return fail(err, b + k, col{c} == nullptr ? HS_ERR_COLUMN : HS_ERR_NULL, {c});"
                for c in range(n_in)
            ],
            "        }",
            *self.emit_prepass(),
            "        // run the block",
            *[f"        std::uint64_t acc{j} = 0;" for j in range(len(self.outputs))],
            "        for (std::int64_t k = 0; k < m; ++k) {",
            "            const std::int64_t r = b + k;",
            "            const std::int64_t now = t[r];",
            "            const std::int32_t code = Remap ? remap[codes[r]] : static_cast<std::int32_t>(codes[r]);",
            *(
                [
                    "            if (const std::int32_t status = fire_due<Rows>(s, now, rows); status != HS_ERR_NONE) {",
                    "                return status == HS_ERR_OPERATOR ? fail_op(err, r, s.err) : fail(err, r, status, -1);",
                    "            }",
                ]
                if timers
                else []
            ),
            "            begin_event(s);",
            *["            " + ln for ln in self.replay_dispatch()],
            *(["            if (s.err.code != 0) return fail_op(err, r, s.err);"] if self.can_fail else []),
            "            if constexpr (Rows) {",
            "                if (!record_row(s, rows, now, code)) return fail(err, r, HS_ERR_MEMORY, -1);",
            "            } else {",
            *["    " + self.record(j, v, k) for j, (v, k) in enumerate(outs)],
            "            }",
            "        }",
            "        if constexpr (!Rows) {",
            *[
                f"            std::memcpy(bits{j} + (b >> 3), &acc{j}, static_cast<std::size_t>((m + 7) >> 3));"
                for j in range(len(self.outputs))
            ],
            *[
                f"            {self.plan.outputs[name].op.vector_cpp}(out{j} + b, m);  // {cpp_name(name)}: vector math"
                for j, name in enumerate(self.outputs)
                if self.plan.outputs[name] in self.deferred
            ],
            "        }",
            "    }",
            "    (void)columns;",
            "    (void)list_offsets;",
            "    (void)out;",
            "    (void)bits;",
            "    (void)rows;",
            "    (void)remap;",
            "    (void)valid;",
            "    return n;",
            "}",
            "",
            "std::int64_t k_replay(void* st, std::int64_t n, const std::int64_t* t, std::int64_t last_t,",
            "                      const void* codes, std::int32_t code_bytes, const std::int32_t* remap,",
            "                      std::int64_t remap_size, const double* const* columns,",
            "                      const std::int32_t* const* list_offsets, const std::uint8_t* const* valid,",
            "                      const std::int64_t* valid_offset, double* const* out, std::uint8_t* const* bits,",
            "                      hs_rows* rows, hs_replay_error* err) {",
            "    State& s = *static_cast<State*>(st);",
            "    const State saved = s;  // a failed batch changes nothing: restore this",
            "    std::int64_t done;",
            "#define HS_LOOP(T, R) (rows != nullptr ? replay_loop<T, R, true>(s, n, t, last_t, static_cast<const T*>(codes), \\",
            "        remap, remap_size, columns, list_offsets, valid, valid_offset, out, bits, rows, err) \\",
            "    : replay_loop<T, R, false>(s, n, t, last_t, static_cast<const T*>(codes), remap, remap_size, columns, \\",
            "        list_offsets, valid, valid_offset, out, bits, rows, err))",
            "    switch (code_bytes * 2 + (remap != nullptr ? 1 : 0)) {",
            "        case 2: done = HS_LOOP(std::int8_t, false); break;",
            "        case 3: done = HS_LOOP(std::int8_t, true); break;",
            "        case 4: done = HS_LOOP(std::int16_t, false); break;",
            "        case 5: done = HS_LOOP(std::int16_t, true); break;",
            "        case 9: done = HS_LOOP(std::int32_t, true); break;",
            "        default: done = HS_LOOP(std::int32_t, false); break;",
            "    }",
            "#undef HS_LOOP",
            "    if (done != n) s = saved;",
            "    s.err = hs::OpError{};",
            "    return done;",
            "}",
            "",
        ]
        return lines

    def emit_prepass(self) -> list[str]:
        """vector_math: the decay weights of every row of the block, one vector exp2 per decay."""
        lines: list[str] = []
        for node, codes in self.pre.items():
            i = self.pos[node]
            hl = self.param_exprs(node)[node.op.vector_weight]
            match = " || ".join(f"((rows_of[{c}] >> k) & 1)" for c in codes)
            lines += [
                f"        {{  // weights 2^(-dt/halflife) of n{i} {cpp_name(node.name)}",
                f"            std::int64_t last = s.o{i}.t;",
                "            std::int64_t cnt = 0;",
                "            for (std::int64_t k = 0; k < m; ++k) {",
                f"                if ({match}) {{",
                "                    const std::int64_t now = t[b + k];",
                f"                    w{i}[cnt++] = -(hs::elapsed_ns(now, last) / 1e9) / {hl};",
                "                    last = now;",
                "                }",
                "            }",
                f"            hs::vec::exp2(w{i}, cnt);",
                f"            pre.w{i} = w{i};",
                "        }",
            ]
        return lines

    @staticmethod
    def record(j: int, value: str, ok: str) -> str:
        """Store output j of row r: its value, and its validity bit into a 64-row register word."""
        return f"            out{j}[r] = {value};\n            acc{j} |= static_cast<std::uint64_t>(({ok}) ? 1u : 0u) << k;"

    def output_reads(self) -> list[tuple[str, str]]:
        """(value, validity) of each output read from the state (deferred outputs: the scalar function)."""
        reads = []
        for name in self.outputs:
            y = self.plan.outputs[name]
            v, k = self.ref(self.deferred.get(y, y), set())
            reads.append((y.op.cpp([v], self.param_exprs(y)), k) if y in self.deferred else (v, k))
        return reads

    def emit_record(self) -> list[str]:
        """record_row: append the current outputs to a row sink (replay with timer rows)."""
        lines = [
            "inline std::int64_t fail(hs_replay_error* err, std::int64_t r, std::int32_t kind, std::int32_t column) {",
            "    err->row = r;",
            "    err->kind = kind;",
            "    err->column = column;",
            "    return r;",
            "}",
            "",
            "inline std::int64_t fail_op(hs_replay_error* err, std::int64_t r, const hs::OpError& e) {",
            "    err->code = e.code;",
            "    err->a = e.a;",
            "    err->b = e.b;",
            "    return fail(err, r, HS_ERR_OPERATOR, e.node);",
            "}",
            "",
            "// append the current outputs as a row at time t (source: trigger code, or -(k+1) for timer k)",
            "inline bool record_row(const State& s, hs_rows* rows, std::int64_t t, std::int32_t source) {",
            "    if (rows->n == rows->cap && !rows->grow(rows)) return false;",
            "    const std::int64_t i = rows->n++;",
            "    rows->t[i] = t;",
            "    rows->source[i] = source;",
        ]
        for j, (v, k) in enumerate(self.output_reads()):
            lines.append(f"    rows->values[{j}][i] = {v};")
            lines.append(f"    rows->valid[{j}][i] = ({k}) ? 1 : 0;")
        lines += ["    (void)s;", "    return true;", "}", ""]
        return lines

    def emit_interface(self) -> list[str]:
        n_in, n_trig, n_out, n_par = len(self.inputs), len(self.triggers), len(self.outputs), len(self.params)
        outs = [
            self.ref(self.deferred.get(self.plan.outputs[name], self.plan.outputs[name]), set())
            for name in self.outputs
        ]
        guarded = self.can_fail or bool(
            self.plan.timers and any(n.op.can_fail for tp in self.plan.timers for n in tp.steps)
        )
        lines = [
            "void k_init(void* st, const double* params) {",
            "    State* s = new (st) State();",
            *[f"    s->p[{j}] = params[{j}];" for j in range(n_par)],
            "    (void)params;",
            "    apply_params(*s);",
            "}",
            "",
            "void k_destroy(void* st) { static_cast<State*>(st)->~State(); }",
            "",
            "void k_set_params(void* st, const double* params) {",
            "    State& s = *static_cast<State*>(st);",
            *[f"    s.p[{j}] = params[{j}];" for j in range(n_par)],
            "    (void)params;",
            "    apply_params(s);",
            "}",
            "",
            "std::int32_t k_call(void* st, std::int32_t trig, std::int64_t now, const double* in,",
            "                    const double* const* lists, const std::int64_t* sizes, hs_replay_error* err) {",
            "    State& s = *static_cast<State*>(st);",
            *(["    const State saved = s;  // an operator error changes nothing: restore this"] if guarded else []),
            *(["    Pre pre{};"] if self.pre else []),
            "    std::int32_t status = fire_due<false>(s, now, nullptr);",
            "    if (status == HS_ERR_NONE) {",
            "        begin_event(s);",
            *["        " + ln for ln in self.dispatch()],
            "        if (s.err.code != 0) status = HS_ERR_OPERATOR;",
            "    }",
            "    if (status != HS_ERR_NONE) {",
            "        fail_op(err, 0, s.err);",
            *(["        s = saved;"] if guarded else []),
            "    }",
            "    s.err = hs::OpError{};",
            "    (void)in;",
            "    (void)lists;",
            "    (void)sizes;",
            "    return status;",
            "}",
            "",
            "std::int32_t k_advance(void* st, std::int64_t t, hs_replay_error* err) {",
            "    State& s = *static_cast<State*>(st);",
            *(["    const State saved = s;"] if guarded else []),
            "    const std::int32_t status = fire_due<false>(s, t, nullptr);",
            "    if (status != HS_ERR_NONE) {",
            "        fail_op(err, 0, s.err);",
            *(["        s = saved;"] if guarded else []),
            "    }",
            "    s.err = hs::OpError{};",
            "    return status;",
            "}",
            "",
            "void k_read(const void* st, double* values, std::uint8_t* valid) {",
            "    const State& s = *static_cast<const State*>(st);",
            *[
                f"    values[{j}] = {v};  // {cpp_name(name)}\n    valid[{j}] = ({k}) ? 1 : 0;"
                for j, ((v, k), name) in enumerate(zip(self.output_reads(), self.outputs, strict=True))
            ],
            "    (void)s;",
            "}",
            "",
            *self.emit_replay(outs),
            "const hs_kernel_api HS_API = {",
            "    HS_KERNEL_ABI,",
            f"    {n_in}, {n_trig}, {n_out}, {n_par},",
            "    sizeof(State), alignof(State),",
            "    &k_init, &k_destroy, &k_set_params, &k_call, &k_advance, &k_read, &k_replay,",
            "};",
            "",
        ]
        return lines

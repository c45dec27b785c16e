"""What every part of the emitter needs to know of a circuit: positions, names and C++ references of nodes.

Identifiers in the output are positional (`v12`, `k12` = value and validity of plan node 12, `o12` its
operator state, `s.due[w]` the slot of timer w); every node's comment names it as the user does. Names and
numbers reach the source only through `harness.names` (the sanitiser).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.circuit.builder import Circuit
from harness.circuit.leaves import is_list_input
from harness.circuit.node import Node
from harness.circuit.plan import CircuitPlan
from harness.codegen.emit.vector import VectorPlan
from harness.names import cpp_double, cpp_int, cpp_label, cpp_name


@dataclass
class Context:
    """A circuit's plan as the emitter sees it (built once per `generate`)."""

    circuit: Circuit
    plan: CircuitPlan
    vector: VectorPlan
    pos: dict[Node, int] = field(init=False)
    inputs: list[Node] = field(init=False)
    input_index: dict[Node, int] = field(init=False)
    params: list[str] = field(init=False)
    param_index: dict[str, int] = field(init=False)
    triggers: list[str] = field(init=False)
    outputs: list[str] = field(init=False)
    output_names: dict[Node, list[str]] = field(init=False)
    timer_slot: dict[Node, int] = field(init=False)
    stored: set[Node] = field(init=False)

    def __post_init__(self) -> None:
        plan = self.plan
        self.pos = {n: i for i, n in enumerate(plan.order)}
        self.inputs = [n for n in plan.order if n.kind == "input"]
        self.input_index = {n: i for i, n in enumerate(self.inputs)}
        self.params = list(plan.parameters)
        self.param_index = {name: j for j, name in enumerate(self.params)}
        self.triggers = list(plan.triggers)
        self.outputs = list(plan.outputs)
        self.output_names = {}
        for name, node in plan.outputs.items():
            self.output_names.setdefault(node, []).append(cpp_label(name))
        self.timer_slot = {tp.node: w for w, tp in enumerate(plan.timers)}
        deferred = self.vector.deferred
        self.stored = (set(plan.stored) | set(deferred.values())) - set(deferred)

    @property
    def can_fail(self) -> bool:
        """Whether any operator of the circuit can raise an error in an event."""
        return any(n.op.can_fail for n in self.plan.order)

    def is_stored(self, node: Node) -> bool:
        """Stored in `State` (the plan's rule, plus the inputs of deferred output functions)."""
        return node in self.stored

    def trigger_args(self, name: str) -> list[Node]:
        """The inputs trigger `name` sets, in the order of its function's arguments."""
        return [n for n in self.plan.triggers[name].inputs if n.kind == "input"]

    def column_users(self, c: int) -> list[int]:
        """Codes of the triggers that set input column c."""
        node = self.inputs[c]
        return [j for j, name in enumerate(self.triggers) if node in self.trigger_args(name)]

    # ----- naming ------------------------------------------------------------------------------------
    def describe(self, node: Node) -> str:
        """A one-line, sanitised description of a node for a comment: position, name, operator, outputs."""
        i = self.pos[node]
        outputs = self.output_names.get(node)
        named = f" (output {', '.join(outputs)})" if outputs else ""
        if node.kind == "input":
            return f"n{i} {cpp_label(node.name)} = input{'[list]' if is_list_input(node) else ''}(){named}"
        parts = [f"{cpp_name(k)}={self.describe_param(v)}" for k, v in node.op.params.items()]
        args = ", ".join(
            ("observe " if obs else "") + (cpp_double(m.op.params["value"]) if m.kind == "const" else f"n{self.pos[m]}")
            for m, obs in zip(node.inputs, node.observed, strict=True)
        )
        conf = f"[{', '.join(parts)}]" if parts else ""
        return f"n{i} {cpp_label(node.name)} = {cpp_name(node.kind)}{conf}({args}){named}"

    @staticmethod
    def describe_param(v: object) -> str:
        """An operator parameter in a comment: a learnable parameter by name, a choice, or a number."""
        if isinstance(v, Node):
            return f"param {cpp_label(v.name)}"
        if isinstance(v, str):  # a string parameter is one of its declared choices
            return cpp_name(v)
        return cpp_int(v) if isinstance(v, int) else cpp_double(v)  # type: ignore[arg-type]

    # ----- references --------------------------------------------------------------------------------
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

    def output_read(self, name: str) -> tuple[str, str, str | None]:
        """(value, validity, value as recorded per row of a block) of output `name` read from the state.

        The third is None unless vector math applies the output's function to blocks of recorded rows: then
        a row records the function's input, and the value is the scalar function of it.
        """
        y = self.plan.outputs[name]
        x = self.vector.deferred.get(y)
        if x is None:
            v, k = self.ref(y, set())
            return v, k, None
        v, k = self.ref(x, set())
        return y.op.cpp([v], self.param_exprs(y)), k, v

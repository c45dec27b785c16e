"""The Circuit builder: declares inputs, triggers, parameters and outputs, and hash-conses operator nodes."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.circuit.leaves import ConstOp, EventOp, ForwardOp, InputOp, ParamOp, is_list_input
from harness.circuit.node import Node, Observed
from harness.circuit.operator import Operator, float_key
from harness.errors import CircuitError
from harness.names import RESERVED, check_name

if TYPE_CHECKING:
    from harness.circuit.plan import CircuitPlan


@dataclass(eq=False)
class Trigger:
    """One kind of event: it sets a fixed set of inputs, and its call plan updates what depends on them."""

    circuit: Circuit
    name: str
    inputs: tuple[Node, ...]
    _event: Node | None = field(default=None, repr=False)

    @property
    def event(self) -> Node:
        """A node that is 1.0 during each event of this trigger and invalid otherwise (edge-triggered)."""
        if self._event is None:
            self._event = self.circuit._leaf(EventOp(), f"event_{self.name}", f"event:{self.name}")
        return self._event

    def __repr__(self) -> str:
        return f"<Trigger {self.name}({', '.join(n.name for n in self.inputs)})>"


class Circuit:
    """A dataflow graph of operators over event-driven inputs (README: "Circuit semantics", "Events tables")."""

    def __init__(self, name: str) -> None:
        self.name = check_name(name, "circuit")
        self.nodes: list[Node] = []
        self.inputs: dict[str, Node] = {}
        self.parameters: dict[str, Node] = {}
        self.triggers: dict[str, Trigger] = {}
        self.outputs: dict[str, Node] = {}
        self.forwards: dict[str, Node] = {}
        self.stored: list[Node] = []
        self.statistics: dict[str, tuple[Node, str]] = {}  # parameter -> (the node it summarises, mean|std)
        self._by_hash: dict[str, Node] = {}
        self._by_name: dict[str, Node] = {}
        self._plan: CircuitPlan | None = None

    def __repr__(self) -> str:
        return (
            f"<Circuit {self.name}: {len(self.nodes)} nodes, inputs {list(self.inputs)}, "
            f"triggers {list(self.triggers)}, outputs {list(self.outputs)}>"
        )

    # ----- declarations -----------------------------------------------------------------------------
    def input(self, name: str, *, list: bool = False) -> Node:
        """Declare a float64 input (`list=True`: a list of float64 per event, e.g. the level updates of
        one order-book message); some trigger must set it. A name may be qualified by a market: `perp.price`."""
        check_name(name, "input", reserved=RESERVED, qualified=True)
        node = self._leaf(InputOp(list=int(bool(list))), name, f"input:{name}")
        self.inputs[name] = node
        return node

    def parameter(self, name: str, init: float, *, lower: float | None = None, upper: float | None = None) -> Node:
        """Declare a learnable scalar (a runtime value of the kernel), optionally bounded."""
        check_name(name, "parameter", reserved=RESERVED)
        bounds: dict[str, float] = {}
        if lower is not None:
            bounds["lower"] = lower
        if upper is not None:
            bounds["upper"] = upper
        try:
            op = ParamOp(init=init, **bounds)
        except CircuitError as e:
            raise CircuitError(f"parameter {name!r}: {str(e).removeprefix('param: ')}") from None
        node = self._leaf(op, name, f"param:{name}")
        self.parameters[name] = node
        return node

    def statistic(self, name: str, of: Node, kind: str) -> Node:
        """A parameter that a fit sets from the training rows, not by gradient: the mean or the standard
        deviation of `of` there (frozen train statistics, e.g. for a normaliser). Until then: 0 and 1."""
        if kind not in ("mean", "std"):
            raise CircuitError(f"statistic {name!r}: kind {kind!r} must be 'mean' or 'std'")
        target = self._as_node(f"statistic {name!r}", of)
        node = self.parameter(name, init=0.0 if kind == "mean" else 1.0, lower=None if kind == "mean" else 0.0)
        self.statistics[name] = (target, kind)
        return node

    def constant(self, value: float) -> Node:
        """A constant node (identical constants are one node)."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CircuitError(f"constant must be a number, got {value!r}")
        value = float(value)
        key = f"const:{float_key(value)}"  # NaNs of different bits are different constants
        digest = _sha(key)
        if digest in self._by_hash:
            return self._by_hash[digest]
        return self._leaf(ConstOp(value=value), f"const_{digest[:10]}", key)

    def trigger(self, name: str, *inputs: Node | str) -> Trigger:
        """Declare a trigger (a kind of event) that sets `inputs` (nodes or input names); its name may be
        qualified by a market (`perp.trade`)."""
        check_name(name, "trigger", qualified=True)
        if name in self.triggers:
            raise CircuitError(f"circuit {self.name!r}: trigger {name!r} is already declared")
        nodes: list[Node] = []
        for x in inputs:
            node = self._resolve_input(name, x)
            if node in nodes:
                raise CircuitError(f"trigger {name!r}: input {node.name!r} is listed twice")
            nodes.append(node)
        trig = Trigger(self, name, tuple(nodes))
        self.triggers[name] = trig
        self._changed()
        return trig

    def output(self, name: str, node: Node | float) -> Node:
        """Record `node` under `name`: a column of replay results and a value readable with k.value."""
        check_name(name, "output", reserved=RESERVED, qualified=True)
        if name in self.outputs:
            raise CircuitError(
                f"circuit {self.name!r}: output name {name!r} is already used (by node {self.outputs[name].name}); "
                "output names must be unique"
            )
        target = self._as_node(f"output {name!r}", node)
        if is_list_input(target):
            raise CircuitError(f"output {name!r}: {target.name!r} is a list input; record a number derived from it")
        self.outputs[name] = target
        self._changed()
        return target

    def store(self, node: Node) -> Node:
        """Force `node` into the kernel's stored state (normally only what is read later is stored)."""
        target = self._as_node("store", node)
        if target not in self.stored:
            self.stored.append(target)
            self._changed()
        return target

    def forward(self, name: str) -> Node:
        """Declare a node now and define it later with `bind` (for building circuits out of order)."""
        check_name(name, "forward", reserved=RESERVED)
        node = self._leaf(ForwardOp(), name, f"forward:{name}")
        node.inputs = ()
        self.forwards[name] = node
        return node

    def bind(self, forward: Node, node: Node | float) -> None:
        """Define a forward-declared node as `node`."""
        if not isinstance(forward, Node) or forward.kind != "forward" or forward.circuit is not self:
            raise CircuitError(f"bind: {forward!r} is not a forward node of circuit {self.name!r}")
        if forward.inputs:
            raise CircuitError(f"bind: forward {forward.name!r} is already bound")
        target = self._as_node(f"bind {forward.name!r}", node)
        forward.inputs = (target,)
        forward.observed = (False,)
        self._changed()

    def with_outputs(self, outputs: dict[str, Node]) -> Circuit:
        """A circuit with this one's structure that also records `outputs` (e.g. the leaves a fit needs).

        The nodes are shared, not copied: build further nodes on the original circuit. This circuit is left
        unchanged, so its kernel hash and plans stay what they were.
        """
        derived = Circuit.__new__(Circuit)
        derived.__dict__.update(self.__dict__)
        derived.nodes, derived.stored = list(self.nodes), list(self.stored)
        derived.inputs, derived.parameters = dict(self.inputs), dict(self.parameters)
        derived.triggers, derived.forwards = dict(self.triggers), dict(self.forwards)
        derived.outputs = dict(self.outputs)
        derived._by_hash, derived._by_name = dict(self._by_hash), dict(self._by_name)
        derived._plan = None
        for name, node in outputs.items():
            check_name(name, "output", reserved=RESERVED, qualified=True)
            if name in derived.outputs:
                raise CircuitError(f"circuit {self.name!r}: output name {name!r} is already used")
            if not isinstance(node, Node) or node.circuit is not self or is_list_input(node):
                raise CircuitError(f"output {name!r}: expected a non-list node of circuit {self.name!r}, got {node!r}")
            derived.outputs[name] = node
        return derived

    # ----- graph queries ------------------------------------------------------------------------
    def plan(self) -> CircuitPlan:
        """Validate and return the call plan (cached until the circuit changes)."""
        if self._plan is None:
            from harness.circuit.plan import build_plan

            self._plan = build_plan(self)
        return self._plan

    def validate(self) -> None:
        """Raise CircuitError if the circuit cannot be compiled (see `harness.circuit.plan`)."""
        self.plan()

    def draw(self, path: str | Path | None = None, *, trigger: str | None = None) -> str:
        """Graphviz DOT of the circuit, or of one trigger's call plan; writes .dot or .svg when `path` given."""
        from harness.circuit.draw import draw

        return draw(self, path, trigger=trigger)

    def structure_hash(self) -> str:
        """sha256 of the circuit's structure (nodes, triggers, outputs, stores): equal circuits, equal hash."""
        plan = self.plan()
        h = hashlib.sha256(f"circuit:{self.name}\n".encode())
        for node in plan.order:
            h.update(f"node {node.name} {node.struct_hash}\n".encode())
        for trig in self.triggers.values():
            h.update(f"trigger {trig.name} {[n.name for n in trig.inputs]}\n".encode())
        for oname, node in self.outputs.items():
            h.update(f"output {oname} {node.name}\n".encode())
        for node in self.stored:
            h.update(f"store {node.name}\n".encode())
        return h.hexdigest()

    # ----- node construction ----------------------------------------------------------------------
    def apply(self, op: Operator, inputs: Iterable[Any]) -> Node:
        """Add `op` applied to `inputs` (nodes, observed nodes or numbers); returns the (shared) node."""
        nodes: list[Node] = []
        observed: list[bool] = []
        for i, x in enumerate(inputs):
            obs = isinstance(x, Observed)
            if obs:
                x = x.node
            if isinstance(x, Node):
                if x.circuit is not self:
                    raise CircuitError(
                        f"{op.kind}: input {i} ({x.name}) belongs to circuit {x.circuit.name!r}, not {self.name!r}"
                    )
                nodes.append(x)
            elif isinstance(x, (int, float)) and not isinstance(x, bool):
                nodes.append(self.constant(x))
            else:
                raise CircuitError(
                    f"{op.kind}: input {i} must be a circuit node or a number, got {type(x).__name__} {x!r}"
                )
            observed.append(obs)
        op.check_arity(len(nodes))
        for i, (n, obs) in enumerate(zip(nodes, observed, strict=True)):
            if is_list_input(n) != (i in op.list_inputs) or (obs and is_list_input(n)):
                if is_list_input(n):
                    raise CircuitError(
                        f"{op.kind}: input {i} ({n.name}) is a list input; only operators that take lists "
                        "(such as hs.lib.book) read list inputs, and they may not observe them"
                    )
                raise CircuitError(
                    f"{op.kind}: input {i} must be a list input (c.input(name, list=True)), got {n.name}"
                )
            if op.reads_state and not n.op.stateful:
                raise CircuitError(f"{op.kind}: input {i} must be a stateful node, got {n.name} ({n.kind})")
        for pname, pnode in op.params.items():
            if isinstance(pnode, Node) and pnode.circuit is not self:
                raise CircuitError(
                    f"{op.kind}: parameter {pname} ({pnode.name}) belongs to circuit {pnode.circuit.name!r}"
                )

        foldable = not (op.stateful or op.timer or op.edge) and not any(isinstance(v, Node) for v in op.params.values())
        if foldable and all(n.kind == "const" for n in nodes):
            value = op.ref(op.params, [n.op.params["value"] for n in nodes])
            if value is not None:
                return self.constant(value)

        pairs = list(zip(nodes, observed, strict=True))
        if op.symmetric:
            pairs.sort(key=lambda p: (p[0].struct_hash, p[1]))
        key = f"{op.kind}({op.param_key()})[" + ",".join(("~" if o else "") + n.struct_hash for n, o in pairs) + "]"
        digest = _sha(key)
        existing = self._by_hash.get(digest)
        if existing is not None:
            return existing
        name = f"{op.kind}_{digest[:10]}"
        if name in self._by_name:
            name = f"{op.kind}_{digest}"
        node = Node(self, len(self.nodes), op, tuple(p[0] for p in pairs), tuple(p[1] for p in pairs), name, digest)
        self._add(node)
        return node

    def _leaf(self, op: Operator, name: str, key: str) -> Node:
        if name in self._by_name:
            other = self._by_name[name]
            raise CircuitError(
                f"circuit {self.name!r}: name {name!r} is already used by a {other.kind} node; names must be unique"
            )
        node = Node(self, len(self.nodes), op, (), (), name, _sha(key))
        self._add(node)
        return node

    def _add(self, node: Node) -> None:
        self.nodes.append(node)
        self._by_hash[node.struct_hash] = node
        self._by_name[node.name] = node
        self._changed()

    def _changed(self) -> None:
        self._plan = None

    def _as_node(self, what: str, x: Node | float) -> Node:
        if isinstance(x, Observed):
            raise CircuitError(f"{what}: observe() marks an operator input; pass the node itself")
        if isinstance(x, Node):
            if x.circuit is not self:
                raise CircuitError(f"{what}: node {x.name} belongs to circuit {x.circuit.name!r}, not {self.name!r}")
            return x
        if isinstance(x, (int, float)) and not isinstance(x, bool):
            return self.constant(x)
        raise CircuitError(f"{what}: expected a circuit node or a number, got {type(x).__name__} {x!r}")

    def _resolve_input(self, trigger: str, x: Node | str) -> Node:
        if isinstance(x, str):
            if x not in self.inputs:
                known = ", ".join(self.inputs) or "none"
                raise CircuitError(f"trigger {trigger!r}: unknown input {x!r} (inputs: {known})")
            return self.inputs[x]
        if isinstance(x, Node):
            if x.circuit is not self:
                raise CircuitError(
                    f"trigger {trigger!r}: input {x.name!r} belongs to circuit {x.circuit.name!r}, not {self.name!r}"
                )
            if x.kind != "input":
                raise CircuitError(
                    f"trigger {trigger!r}: {x.name!r} is a {x.kind} node, not an input; "
                    "triggers set inputs declared with c.input(name)"
                )
            return x
        raise CircuitError(f"trigger {trigger!r}: expected an input node or name, got {type(x).__name__} {x!r}")


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()

"""Trace: the differentiable part of a circuit above one output, as a small graph that torch evaluates.

`trace(circuit, "pred")` walks upward from the output through differentiable operators to learnable
parameters, constants and *leaves*: nodes whose values the replay records (inputs, non-differentiable
operator outputs, and anything that does not depend on a learnable parameter). Every traced value lives in
a *domain*, the set of replayed rows where it is evaluated:

- `rows`: the sampled training rows. A stateless node whose inputs all trigger it has, at any row, the
  value of its operator applied to its inputs' values at that row, so it is evaluated right there.
- `steps of P` for a *producer* P: a differentiable decay (`ewma`, `decay_sum`), whose recurrence runs
  over every valid sample of its input, or a stateless node with an observed input, which keeps the value
  of its last run. P and its inputs are evaluated at the rows where P runs with valid inputs; consumers
  *import* P's value from the last such row at or before theirs (a forward fill).

Two producers share a domain when they run in the same events and their validity rests on the same leaves,
so their points are the same rows; that is what lets folding batch, say, 64 EWMAs of one input.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field

from harness.circuit.builder import Circuit
from harness.circuit.leaves import is_list_input
from harness.circuit.node import Node
from harness.circuit.operator import Operator, positive
from harness.errors import CircuitError

ROWS = 0  # the domain of the sampled rows is always domain 0
KINDS = ("leaf", "param", "stat", "const", "op", "decay", "import")


@dataclass(frozen=True)
class Domain:
    """Rows where traced values are evaluated: the sampled rows, or the steps of one or more producers."""

    index: int
    runs: tuple[str, ...]  # row sources (trigger names, `timer:<node>`) where the producers run; () for rows
    atoms: tuple[str, ...]  # names of the nodes whose validity decides the points; () for rows

    @property
    def is_rows(self) -> bool:
        """True for the sampled rows."""
        return self.index == ROWS

    def __str__(self) -> str:
        return (
            "rows" if self.is_rows else f"steps[{self.index}]({', '.join(self.runs)} | valid {', '.join(self.atoms)})"
        )


@dataclass(frozen=True)
class TNode:
    """One traced value.

    kind: leaf (recorded), param (learnable), stat (a train statistic, `Circuit.statistic`), const, op
    (stateless differentiable), decay (differentiable recurrence, its domain is its own steps), import (a
    producer's value forward-filled into this domain).
    """

    id: int
    kind: str
    node: Node
    domain: int
    inputs: tuple[int, ...] = ()
    params: tuple[tuple[str, int], ...] = ()  # operator parameter -> TNode id (a param or a const)
    source: int | None = None  # import: the producer TNode
    depth: int = 0
    scalar: bool = False  # computed from parameters and constants only (the same at every row)

    @property
    def op(self) -> Operator:
        """The circuit operator of this value."""
        return self.node.op


@dataclass
class Trace:
    """The traced graph of one target output (see the module docstring)."""

    circuit: Circuit
    target_output: str
    nodes: list[TNode]
    domains: list[Domain]
    target: int  # TNode id of the target (in the rows domain)
    params: list[str]  # learnable parameters reached, in circuit order
    frozen: list[str]  # learnable parameters of the circuit that the target does not reach
    leaf_outputs: dict[str, Node]  # output name -> node: what the replay must record
    positive_params: frozenset[str] = field(default_factory=frozenset)  # used where the value must be > 0
    statistics: dict[str, tuple[str, str]] = field(default_factory=dict)  # stat param -> (recorded output, kind)

    def domain_nodes(self, domain: int) -> list[TNode]:
        """The traced values evaluated in `domain`, inputs before their users."""
        return [n for n in self.nodes if n.domain == domain]

    def domain_order(self) -> list[int]:
        """Domains with producers before the domains that import from them (rows last)."""
        deps: dict[int, set[int]] = {d.index: set() for d in self.domains}
        for n in self.nodes:
            if n.kind == "import":
                deps[n.domain].add(self.nodes[n.source].domain)  # type: ignore[index]
        order: list[int] = []
        while len(order) < len(deps):
            ready = sorted(d for d, ds in deps.items() if d not in order and ds <= set(order))
            order.extend(ready[:1])
        return order

    def leaf_output(self, tnode: TNode) -> str:
        """The recorded output that holds a leaf's values."""
        for name, node in self.leaf_outputs.items():
            if node is tnode.node:
                return name
        raise KeyError(tnode.node.name)

    def recording_circuit(self) -> Circuit:
        """The circuit plus outputs for the leaves it does not record already (same nodes, same plans)."""
        extra = {k: v for k, v in self.leaf_outputs.items() if k not in self.circuit.outputs}
        return self.circuit.with_outputs(extra) if extra else self.circuit

    def describe(self) -> str:
        """A readable listing: domains, then traced values by domain."""
        lines = [f"trace of {self.circuit.name}.{self.target_output}: params {self.params or 'none'}"]
        if self.frozen:
            lines.append(f"  not reached (kept as they are): {self.frozen}")
        for d in self.domains:
            lines.append(f"  domain {d}")
            for n in self.domain_nodes(d.index):
                ins = ", ".join(self.nodes[i].node.name for i in n.inputs)
                extra = f" <- {self.nodes[n.source].node.name}" if n.source is not None else ""
                lines.append(f"    {n.kind:6s} {n.node.name} ({n.op.describe()}) [{ins}]{extra}")
        return "\n".join(lines)


def trace(circuit: Circuit, target: str, *, stop: Iterable[Node | str] = ()) -> Trace:
    """Trace output `target` of `circuit` down to parameters and recorded leaves.

    `stop`: nodes (or output names) where tracing ends: they are recorded as leaves even when they depend
    on learnable parameters (which are then not fitted through them).
    """
    if not isinstance(circuit, Circuit):
        raise TypeError(f"trace() takes a harness Circuit, got {type(circuit).__name__}")
    plan = circuit.plan()
    if target not in circuit.outputs:
        raise CircuitError(
            f"trace: circuit {circuit.name!r} has no output {target!r} (outputs: {', '.join(circuit.outputs)})"
        )
    stops = {_resolve_stop(circuit, s) for s in stop}
    return _Tracer(circuit, plan, stops).run(target)


def _resolve_stop(circuit: Circuit, s: Node | str) -> Node:
    if isinstance(s, str):
        if s not in circuit.outputs:
            raise CircuitError(f"trace: stop {s!r} is not an output of circuit {circuit.name!r}; pass the node")
        return circuit.outputs[s]
    if not isinstance(s, Node) or s.circuit is not circuit:
        raise CircuitError(f"trace: stop {s!r} is not a node of circuit {circuit.name!r}")
    return s


def _is_decay(op: Operator) -> bool:
    return op.stateful and op.differentiable and type(op).torch_coeffs is not Operator.torch_coeffs


def _is_stateless_diff(op: Operator) -> bool:
    return (
        op.differentiable
        and not op.stateful
        and not op.timer
        and not op.list_inputs
        and type(op).torch_f is not Operator.torch_f
    )


class _Tracer:
    def __init__(self, circuit: Circuit, plan, stops: set[Node]) -> None:  # type: ignore[no-untyped-def]
        self.circuit, self.plan, self.stops = circuit, plan, stops
        self.nodes: list[TNode] = []
        self.domains: list[Domain] = [Domain(ROWS, (), ())]
        self.domain_keys: dict[tuple, int] = {}
        self.memo: dict[tuple[Node, int], int] = {}
        self.producers: dict[Node, int] = {}
        self.shared: dict[Node, int] = {}  # params and consts: one TNode each, whatever the domain
        self.dep_memo: dict[Node, frozenset[Node]] = {}
        self.atom_memo: dict[Node, frozenset[Node]] = {}
        self.positive: set[str] = set()
        self.runs = _runs(plan)

    # ----- graph facts (iterative: a circuit may be thousands of nodes deep) ----------------------------------
    def params_of(self, node: Node) -> frozenset[Node]:
        """The parameters `node` depends on (learnable ones and statistics; through inputs and tunable operator
        parameters)."""

        def combine(n: Node) -> frozenset[Node]:
            if n.kind == "param":
                return frozenset({n})
            return frozenset().union(*(self.dep_memo[m] for m in _param_deps(n)))

        return _post_order(node, lambda n: () if n.kind == "param" else _param_deps(n), self.dep_memo, combine)

    def is_leaf(self, node: Node) -> bool:
        return node.kind not in ("param", "const") and (node in self.stops or not self.params_of(node))

    def atoms(self, node: Node) -> frozenset[Node]:
        """The nodes whose validity decides `node`'s: leaves and producers below it."""

        def below(n: Node) -> tuple[Node, ...]:
            if n.kind in ("param", "const") or self.is_leaf(n) or _is_decay(n.op) or any(n.observed):
                return ()
            return (n.inputs[0],) if n.kind == "forward" else tuple(n.inputs)

        def combine(n: Node) -> frozenset[Node]:
            if n.kind in ("param", "const"):
                return frozenset()
            if not below(n):
                return frozenset({n})
            return frozenset().union(*(self.atom_memo[m] for m in below(n)))

        return _post_order(node, below, self.atom_memo, combine)

    # ----- building ------------------------------------------------------------------------------------
    def run(self, target: str) -> Trace:
        target_node = self.circuit.outputs[target]
        root = self.build(target_node, ROWS)
        reached = {n.node.name for n in self.nodes if n.kind == "param"}
        stats = {n.node.name for n in self.nodes if n.kind == "stat"}
        params = [name for name in self.circuit.parameters if name in reached]
        frozen = [name for name in self.circuit.parameters if name not in reached | stats]
        leaf_outputs = self._leaf_outputs()
        statistics: dict[str, tuple[str, str]] = {}
        for name in sorted(stats):
            source, kind = self.circuit.statistics[name]
            out = next((k for k, v in {**self.circuit.outputs, **leaf_outputs}.items() if v is source), None)
            if out is None:
                out = f"fit_stat_{source.name.replace('.', '_')}"[:120]
                leaf_outputs[out] = source
            statistics[name] = (out, kind)
        return Trace(
            circuit=self.circuit,
            target_output=target,
            nodes=self.nodes,
            domains=self.domains,
            target=root,
            params=params,
            frozen=frozen,
            leaf_outputs=leaf_outputs,
            positive_params=frozenset(self.positive),
            statistics=statistics,
        )

    def add(self, kind: str, node: Node, domain: int, **kw) -> int:  # type: ignore[no-untyped-def]
        tid = len(self.nodes)
        self.nodes.append(TNode(tid, kind, node, domain, **kw))
        return tid

    def build(self, node: Node, domain: int) -> int:
        """The TNode id of `node` evaluated in `domain`, building what it needs (inputs first).

        The builders are generators that yield the sub-builds they need and receive their ids: `_drive`
        runs them on an explicit stack, so no depth of circuit reaches Python's recursion limit.
        """
        return _drive(self._build_memo(node, domain))

    def _build_memo(self, node: Node, domain: int) -> Build:
        if node.kind in ("param", "const"):
            return self.shared_leaf(node)
        key = (node, domain)
        if key in self.memo:
            return self.memo[key]
        tid = yield self._build(node, domain)
        self.memo[key] = tid
        return tid

    def shared_leaf(self, node: Node) -> int:
        if node not in self.shared:
            kind = "stat" if node.kind == "param" and node.name in self.circuit.statistics else node.kind
            self.shared[node] = self.add(kind, node, -1, scalar=True)
        return self.shared[node]

    def _build(self, node: Node, domain: int) -> Build:
        if self.is_leaf(node):
            return self.add("leaf", node, domain)
        if node.kind == "forward":
            return (yield self._build_memo(node.inputs[0], domain))
        op = node.op
        if _is_decay(op) or (_is_stateless_diff(op) and any(node.observed)):
            producer = yield self._producer(node)
            return self.add("import", node, domain, source=producer)
        if _is_stateless_diff(op):
            inputs = []
            for m in node.inputs:
                inputs.append((yield self._build_memo(m, domain)))
            params = self.op_params(node)
            depth = 1 + max(self.nodes[i].depth for i in (*inputs, *(p for _, p in params)))
            scalar = all(self.nodes[i].scalar for i in inputs)
            return self.add("op", node, domain, inputs=tuple(inputs), params=params, depth=depth, scalar=scalar)
        names = sorted(p.name for p in self.params_of(node))
        raise CircuitError(
            f"trace: node {node.name} ({op.describe()}) depends on learnable parameters {names} but is not "
            "differentiable, so a fit cannot move it; stop the trace there (stop=[node]) to record it as it is, "
            "or build the signal from differentiable operators"
        )

    def op_params(self, node: Node) -> tuple[tuple[str, int], ...]:
        """Numeric operator parameters as traced values (constants, or learnable parameters)."""
        out = []
        for pname, value in node.op.params.items():
            if isinstance(value, Node):
                out.append((pname, self.shared_leaf(value)))
                if node.op.params_spec[pname].check is positive:
                    self.positive.add(value.name)
            elif isinstance(value, float):
                out.append((pname, self.shared_leaf(self.circuit.constant(value))))
        return tuple(out)

    def producer(self, node: Node) -> int:
        """The TNode of a decay or observed-input node, evaluated in the domain of its own steps."""
        return _drive(self._producer(node))

    def _producer(self, node: Node) -> Build:
        if node in self.producers:
            return self.producers[node]
        runs = tuple(sorted(self.runs.get(node, ())))
        atoms = frozenset().union(*(self.atoms(m) for m in node.inputs))
        key = (runs, tuple(sorted(a.name for a in atoms)))
        if key not in self.domain_keys:
            self.domain_keys[key] = len(self.domains)
            self.domains.append(Domain(len(self.domains), *key))
        dom = self.domain_keys[key]
        inputs = []
        for m in node.inputs:
            inputs.append((yield self._build_memo(m, dom)))
        params = self.op_params(node)
        depth = 1 + max(self.nodes[i].depth for i in (*inputs, *(p for _, p in params)))
        kind = "decay" if _is_decay(node.op) else "op"
        tid = self.add(kind, node, dom, inputs=tuple(inputs), params=params, depth=depth)
        self.producers[node] = tid
        self.memo[(node, dom)] = tid
        return tid

    def _leaf_outputs(self) -> dict[str, Node]:
        by_node = {node: name for name, node in self.circuit.outputs.items()}
        out: dict[str, Node] = {}
        taken = set(self.circuit.outputs)
        for n in self.nodes:
            if n.kind != "leaf" or n.node in out.values():
                continue
            if is_list_input(n.node):
                raise CircuitError(f"trace: {n.node.name} is a list input; it cannot be a leaf of a fit")
            name = by_node.get(n.node)
            if name is None:
                name = f"fit_leaf_{n.node.name.replace('.', '_')}"[:120]
                while name in taken:
                    name += "_"
            taken.add(name)
            out[name] = n.node
        return out


Build = Generator["Build", int, int]  # a builder: yields the sub-builds it needs, gets their TNode ids back


def _drive(build: Build) -> int:
    """Run a builder and the sub-builders it yields on an explicit stack; return its TNode id."""
    stack, value = [build], None
    while stack:
        try:
            sub = stack[-1].send(value)  # type: ignore[arg-type]
        except StopIteration as done:
            stack.pop()
            value = done.value
        else:
            stack.append(sub)
            value = None
    assert value is not None
    return value


def _param_deps(node: Node) -> tuple[Node, ...]:
    return (*node.inputs, *node.param_nodes.values())


def _post_order(
    root: Node,
    below: Callable[[Node], Iterable[Node]],
    memo: dict[Node, frozenset[Node]],
    combine: Callable[[Node], frozenset[Node]],
) -> frozenset[Node]:
    """memo[root], computing `combine` for every node under `root` not in `memo` yet, children first,
    with an explicit stack (no recursion)."""
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if node in memo:
            continue
        if expanded:
            memo[node] = combine(node)
        else:
            stack.append((node, True))
            stack.extend((m, False) for m in below(node) if m not in memo)
    return memo[root]


def _runs(plan) -> dict[Node, set[str]]:  # type: ignore[no-untyped-def]
    """For every planned node, the row sources (trigger names, `timer:<node>`) of the rows where it runs."""
    runs: dict[Node, set[str]] = {}
    for name, tp in plan.triggers.items():
        for n in (*tp.inputs, *tp.steps):
            runs.setdefault(n, set()).add(name)
    for tp in plan.timers:
        key = f"timer:{tp.node.name}"
        for n in (tp.node, *tp.steps):
            runs.setdefault(n, set()).add(key)
    return runs
